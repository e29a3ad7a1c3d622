"""Curvature backends: K-FAC (`kfac`), diagonal GGN (`diag`) and the exact GGN (`full`).

`capture` holds the forward hooks that record layer inputs/outputs and turn output
gradients into per-sample quantities; the backends only consume those.
"""
