"""What a model expects as input and what its outputs mean; it travels with the model."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Input contract and label space of a vision classifier.

    ``input_size`` is (channels, height, width) for one image; batch size is chosen later.
    ``labels`` is the class name of each output index, where known.
    """

    name: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    labels: tuple[str, ...] | None = None
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or min(self.input_size) <= 0:
            raise ValueError(f"input_size must be (C, H, W) with positive sizes, got {self.input_size}")
        for name in ("mean", "std"):  # frozen: the broadcast value is set past __setattr__
            object.__setattr__(self, name, _per_channel(name, getattr(self, name), self.input_size[0]))
        if not all(0 < s < math.inf for s in self.std):
            raise ValueError(f"std must be positive (each channel is divided by it), got {self.std}")
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"mean must be finite, got {self.mean}")
        if self.labels is not None and len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} labels for {self.num_classes} classes")

    def with_overrides(self, **changes: Any) -> ModelSpec:
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def batch_shape(self, batch_size: int = 1) -> tuple[int, int, int, int]:
        return (batch_size, *self.input_size)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return out

    def to_json(self) -> str:
        """Stored inside artifacts, so an exported model can be evaluated without its source."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        data = json.loads(text)
        for key in ("input_size", "mean", "std", "labels"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def _per_channel(name: str, values, channels: int) -> tuple[float, ...]:
    """One value per input channel; a single value stands for every channel (grey-level statistics)."""
    values = tuple(values)
    if len(values) == 1:
        return values * channels
    if len(values) != channels:
        raise ValueError(f"{name} has {len(values)} values for {channels} input channel(s): "
                         "give one per channel or a single value for all")
    return values
