"""Structural pruning of vision transformers: NViT's global Hessian-aware pruning to a measured
latency budget (the ``prune`` pass) and the slicing it shares with DIMAP's structured mode.

Layout: ``widths`` (what a pruned model looks like), ``families`` (which models can be pruned and
how their units map to weights: ``vit``), ``attention`` (the attention module for QK != V),
``saliency`` (unit scores), ``latency`` (measured per-block lookup tables), ``plan`` (which groups
go in a step), ``prune_pass`` / ``distill_pass`` (the recipe passes), ``saved`` (save and rebuild).
Nothing heavy is imported here.
"""
