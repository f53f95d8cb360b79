"""Task and distillation losses (DeiT / NViT): soft KD is KL(teacher || student) at T, times T^2."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitopt.train.config import TrainConfig


def soft_kd(student: torch.Tensor, teacher: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """KL(softmax(z_t/T) || softmax(z_s/T)) * T^2, batch mean. T^2 keeps gradients scale-free in T."""
    log_p_student = F.log_softmax(student.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hard_kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the teacher's argmax: needs no labels."""
    return F.cross_entropy(student.float(), teacher.argmax(dim=1))


def training_loss(
    logits: torch.Tensor,
    *,
    targets: torch.Tensor | None,
    teacher_logits: torch.Tensor | None,
    config: TrainConfig,
) -> torch.Tensor:
    """Task loss where labels exist, KD where a teacher exists, mixed by ``kd_alpha``."""
    task = None
    if targets is not None and (targets >= 0).all():
        task = F.cross_entropy(logits.float(), targets, label_smoothing=config.label_smoothing)
    if teacher_logits is None:
        if task is None:
            raise ValueError("training needs labels or a teacher")
        return task
    kd = hard_kd(logits, teacher_logits) if config.hard_distill else soft_kd(
        logits, teacher_logits, temperature=config.kd_temperature
    )
    return kd if task is None else (1 - config.kd_alpha) * task + config.kd_alpha * kd


def mean_kl(student: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean KL(reference || student) at T=1, for evaluation."""
    return soft_kd(student, reference, temperature=1.0)
