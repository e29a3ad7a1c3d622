"""Models users can ship: channel-pruned models made physically smaller (Torch-Pruning)
and saved with ``torch.export``; element-pruned models saved with CSR tensors."""

from jmds_pipeline.export.sparse import load_sparse, save_sparse
from jmds_pipeline.export.structured import (
    export_structured,
    load_structured,
    physically_prune,
)

__all__ = ["export_structured", "load_sparse", "load_structured", "physically_prune", "save_sparse"]
