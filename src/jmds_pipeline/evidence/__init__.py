"""Evidence engine: Laplace log evidence of a masked network on weighted data (design.md §2).

Public API::

    from jmds_pipeline.evidence import EvidenceConfig, EvidenceResult, estimate_evidence

Modules: ``config`` (types), ``likelihood`` (ℓ_i and Λ), ``curvature`` (``capture`` hooks,
``kfac``, ``diag``, ``full``), ``subsample`` (NTK subsample), ``prior`` (α by max evidence),
``laplace`` (log Z assembly), ``scores`` (Δ_j), ``engine`` (``estimate_evidence``).
"""

from .config import EvidenceConfig, EvidenceResult
from .engine import estimate_evidence

__all__ = ["EvidenceConfig", "EvidenceResult", "estimate_evidence"]
