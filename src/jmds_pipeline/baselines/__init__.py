"""Baselines at the same budgets as JMDS.

- :mod:`imp`: iterative magnitude pruning (mask update).
- :mod:`forgetting`: forgetting events (Toneva et al. 2019).
- :mod:`el2n`: EL2N and GraNd (Paul et al. 2021).
- :mod:`random_baselines`: random weight and sample scores.

All data-pruning scores here measure difficulty and keep the highest scores
(``sparsity.sample_selection.select_samples(..., keep="high")``), as in the papers.
"""
