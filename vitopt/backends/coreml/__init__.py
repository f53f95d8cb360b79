"""Core ML: ML-program export with graph rewrites, a Linux validator, the macOS runner and the probe."""
