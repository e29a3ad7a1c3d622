"""Model and data sparsity: masks, schedules, and the selection rules of JMDS.

- :mod:`budget`: sparsity fraction → exact count; fraction validation.
- :mod:`masks`: create, apply and enforce weight masks; counts; per-layer summary; I/O.
- :mod:`schedules`: per-round targets (geometric, cubic).
- :mod:`weight_selection`: prune weights to a target or by the λ1 penalty.
- :mod:`sample_selection`: keep samples to a target (class-balanced, top-k, CCS) or by λ2.
"""
