"""Forgetting events (Toneva et al., ICLR 2019, "An Empirical Study of Example Forgetting
during Deep Neural Network Learning").

Sample i undergoes a *forgetting event* at presentation t+1 if it was classified correctly
at presentation t and incorrectly at t+1 (acc_i^t > acc_i^{t+1}). Its score is the number
of such events. Samples that are never classified correctly are, in the paper's words,
forgotten "infinitely often": they rank above every learned sample. Here they get the
finite score E (the number of presentations recorded), which is strictly larger than any
possible count of forgetting events in E presentations (at most ⌊E/2⌋), so they rank
highest while the score stays a plain integer (safe for Parquet tables and strata).

Pruning convention (as in the paper): keep the samples with the **highest** scores (the
hardest, most forgettable ones) and drop the unforgettable ones, i.e.
``select_samples(scores, ..., keep="high")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from jmds_pipeline.training.losses import per_sample_correct


def forgetting_scores(correct_history: torch.Tensor) -> torch.Tensor:
    """Forgetting counts (N,) ``int64`` from a (E, N) ``bool`` history, E presentations.

    score_i = Σ_t [correct_i^t ∧ ¬correct_i^{t+1}] if sample i is ever correct, else E.
    """
    if correct_history.dim() != 2:
        raise ValueError(
            f"correct_history must be (E, N), got shape {tuple(correct_history.shape)}"
        )
    history = correct_history.detach().cpu().to(torch.bool)
    epochs = history.shape[0]
    forgets = (history[:-1] & ~history[1:]).sum(dim=0, dtype=torch.int64)
    learned = history.any(dim=0)
    return torch.where(learned, forgets, torch.full_like(forgets, epochs))


class ForgettingTracker:
    """Accumulates forgetting statistics online, with O(N) memory (no full history).

    Construct it with the training split's ids (``ids``, int64 (N,)); then, after every
    optimiser step, call :meth:`update` with the batch's ids and whether each sample was
    classified correctly (Toneva et al. record accuracy on each mini-batch presentation),
    or :meth:`update_rows` with row indices. :meth:`callback` gives a function that the
    training loop's ``on_batch`` hook can take directly. :meth:`scores` returns the same
    convention as :func:`forgetting_scores`: feeding a (E, N) history row by row gives the
    same scores.
    """

    def __init__(self, ids: torch.Tensor) -> None:
        if ids.dim() != 1:
            raise ValueError(f"ids must be 1-D (N,), got shape {tuple(ids.shape)}")
        ids = ids.detach().cpu().to(torch.int64)
        self._sorted_ids, self._order = torch.sort(ids)
        if bool((self._sorted_ids[1:] == self._sorted_ids[:-1]).any()):
            raise ValueError("ids are not unique")
        n = ids.numel()
        self.num_samples = n
        self.previous = torch.zeros(n, dtype=torch.bool)  # correct at the last presentation
        self.forgets = torch.zeros(n, dtype=torch.int64)
        self.learned = torch.zeros(n, dtype=torch.bool)
        self.presentations = torch.zeros(n, dtype=torch.int64)

    def rows_of(self, ids: torch.Tensor) -> torch.Tensor:
        """Row indices of ``ids`` in the split the tracker was built for."""
        ids = ids.detach().cpu().to(torch.int64).reshape(-1)
        position = torch.searchsorted(self._sorted_ids, ids).clamp_(max=self.num_samples - 1)
        found = self._sorted_ids[position] == ids
        if not bool(found.all()):
            unknown = ids[~found][:5].tolist()
            raise ValueError(f"ids {unknown} are not in the tracked split")
        return self._order[position]

    def update_rows(self, rows: torch.Tensor, correct: torch.Tensor) -> None:
        """Record one presentation of each row in ``rows`` with its correctness."""
        rows = rows.detach().cpu().to(torch.int64).reshape(-1)
        correct = correct.detach().cpu().to(torch.bool).reshape(-1)
        if rows.numel() != correct.numel():
            raise ValueError(f"{rows.numel()} rows but {correct.numel()} correctness flags")
        if rows.numel() == 0:
            return
        if bool((rows < 0).any() | (rows >= self.num_samples).any()):
            raise ValueError(f"rows must lie in [0, {self.num_samples})")
        if torch.unique(rows).numel() != rows.numel():
            raise ValueError("a row appears twice in one update; record presentations one by one")
        seen_before = self.presentations[rows] > 0
        forgot = seen_before & self.previous[rows] & ~correct
        self.forgets[rows] += forgot.to(torch.int64)
        self.learned[rows] |= correct
        self.previous[rows] = correct
        self.presentations[rows] += 1

    def update(self, ids: torch.Tensor, correct: torch.Tensor) -> None:
        """Record one presentation of each sample id in ``ids`` with its correctness."""
        self.update_rows(self.rows_of(ids), correct)

    def update_epoch(self, correct: torch.Tensor) -> None:
        """Record one presentation of every sample, ``correct`` aligned with the split rows."""
        self.update_rows(torch.arange(self.num_samples), correct)

    def callback(self) -> Callable[[dict[str, torch.Tensor], torch.Tensor], None]:
        """A ``(batch, logits) -> None`` hook for ``training.loop.train_model(on_batch=...)``."""

        def on_batch(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> None:
            self.update(batch["id"], per_sample_correct(logits, batch["y"].to(logits.device)))

        return on_batch

    def scores(self) -> torch.Tensor:
        """Forgetting counts (N,) ``int64``; never-learned samples (including samples never
        presented) get E = the largest number of presentations of any sample."""
        most = int(self.presentations.max()) if self.num_samples else 0
        return torch.where(self.learned, self.forgets,
                           torch.full_like(self.forgets, max(most, 1)))
