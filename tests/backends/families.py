"""The model families every exporter is tested on, in configurations small enough for CI.

One row per family the issue names: (id, timm name, constructor kwargs, input size).
Random weights: parity and convertibility do not depend on training.
"""

from __future__ import annotations

import pytest

from vitopt.models import load_model

FAMILIES = [
    ("deit", "deit_tiny_patch16_224", {"img_size": 64, "depth": 2}, 64),
    ("swin", "swin_tiny_patch4_window7_224",
     {"img_size": 64, "window_size": 4, "embed_dim": 32, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8)}, 64),
    ("repvit", "repvit_m0_9", {}, 64),
    ("mobilevit", "mobilevit_xs", {}, 64),
    ("fastvit", "fastvit_t8", {}, 64),
    ("levit", "levit_128s", {"img_size": 128}, 128),
    ("efficientformer", "efficientformer_l1", {}, 224),  # its last stage's attention bias is fixed at 7x7
]  # fmt: skip
FAMILY_IDS = [row[0] for row in FAMILIES]


def load_family(name: str, kwargs: dict, size: int):
    return load_model(name=name, model_kwargs=dict(kwargs), spec_overrides={"input_size": (3, size, size)})


family_params = pytest.mark.parametrize(("family", "name", "kwargs", "size"), FAMILIES, ids=FAMILY_IDS)
