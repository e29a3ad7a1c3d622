"""The comparison of JMDS with dense, model-only, data-only and phased baselines."""
