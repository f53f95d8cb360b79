"""Training settings: a validated, versioned pydantic model (saved with every checkpoint)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TRAIN_CONFIG_VERSION = 1


class TrainConfig(BaseModel):
    """Hyper-parameters of one run. ``batch_size`` is global: it is split across DDP ranks,
    so the same config trains the same way on one process or many."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = TRAIN_CONFIG_VERSION
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-5, ge=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    clip_grad: float | None = Field(1.0, gt=0)
    # distillation: loss = (1 - kd_alpha) * task + kd_alpha * (soft or hard) KD
    kd_alpha: float = Field(0.5, ge=0, le=1)
    kd_temperature: float = Field(4.0, gt=0)
    hard_distill: bool = False
    # augmentation: random crop (with padding when stored at input size) + horizontal flip
    crop_padding: int | None = Field(None, ge=0)  # default: input size / 8
    hflip: bool = True
    bf16: bool = False  # CPU autocast; fast where the CPU has AMX/avx512_bf16
    seed: int = 0
    checkpoint_minutes: float = Field(10.0, gt=0)  # also checkpoint mid-epoch this often
    eval_limit: int | None = Field(2000, ge=1)  # validation images per epoch
    # An epoch draws this many images (a fresh random subset each epoch) instead of all of them:
    # how pruning fits short fine-tunes of a fraction of an epoch between its steps.
    images_per_epoch: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _lr_order(self) -> TrainConfig:
        if self.min_lr > self.lr:
            raise ValueError("min_lr must not exceed lr")
        return self
