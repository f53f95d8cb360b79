"""Task and distillation losses against hand-computed values on small tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vitopt.train import TrainConfig
from vitopt.train.losses import hard_kd, mean_kl, soft_kd, training_loss

STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
TEACHER = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.5, 4.0]])


def _softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _kl_by_hand(student, teacher, temperature: float) -> float:
    """sum_i p_t(i) log(p_t(i) / p_s(i)) at T, mean over rows, times T^2: in plain Python."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        p_s = _softmax([v / temperature for v in s_row])
        p_t = _softmax([v / temperature for v in t_row])
        total += sum(t * math.log(t / s) for s, t in zip(p_s, p_t, strict=True))
    return total / len(student) * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_kd_is_kl_teacher_to_student_times_t_squared(temperature):
    got = soft_kd(STUDENT, TEACHER, temperature=temperature)
    assert got.item() == pytest.approx(_kl_by_hand(STUDENT, TEACHER, temperature), rel=1e-5)
    # KL is not symmetric: the direction matters
    assert got.item() != pytest.approx(_kl_by_hand(TEACHER, STUDENT, temperature), rel=1e-3)


def test_soft_kd_is_zero_when_student_equals_teacher():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    assert soft_kd(logits, logits.clone(), temperature=3.0).item() == pytest.approx(0.0, abs=1e-6)
    # a constant shift of the logits leaves the softmax unchanged
    assert soft_kd(logits + 2.5, logits, temperature=3.0).item() == pytest.approx(0.0, abs=1e-5)
    assert mean_kl(logits, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_kd_gradient_scale_is_free_of_temperature():
    """The T^2 factor keeps the gradient's magnitude ~constant in T (Hinton et al.)."""
    norms = []
    for temperature in (2.0, 8.0):
        student = (STUDENT * 0.1).clone().requires_grad_(True)
        soft_kd(student, TEACHER * 0.1, temperature=temperature).backward()
        norms.append(student.grad.norm().item())
    assert norms[1] == pytest.approx(norms[0], rel=0.25)


def test_mean_kl_is_soft_kd_at_temperature_one():
    assert mean_kl(STUDENT, TEACHER).item() == pytest.approx(_kl_by_hand(STUDENT, TEACHER, 1.0), rel=1e-5)


def test_hard_kd_is_cross_entropy_on_teacher_argmax():
    expected = F.cross_entropy(STUDENT, torch.tensor([1, 2]))  # TEACHER's argmax per row
    assert hard_kd(STUDENT, TEACHER).item() == pytest.approx(expected.item(), rel=1e-6)
    by_hand = -sum(math.log(_softmax(row)[c]) for row, c in zip(STUDENT.tolist(), [1, 2], strict=True)) / 2
    assert hard_kd(STUDENT, TEACHER).item() == pytest.approx(by_hand, rel=1e-5)


def test_training_loss_without_teacher_is_label_smoothed_cross_entropy():
    targets = torch.tensor([0, 2])
    config = TrainConfig(label_smoothing=0.1)
    got = training_loss(STUDENT, targets=targets, teacher_logits=None, config=config)
    assert got.item() == pytest.approx(F.cross_entropy(STUDENT, targets, label_smoothing=0.1).item(), rel=1e-6)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("hard", [False, True])
def test_training_loss_mixes_task_and_kd_by_alpha(alpha, hard):
    targets = torch.tensor([0, 2])
    config = TrainConfig(kd_alpha=alpha, kd_temperature=2.0, label_smoothing=0.0, hard_distill=hard)
    task = F.cross_entropy(STUDENT, targets).item()
    kd = hard_kd(STUDENT, TEACHER).item() if hard else _kl_by_hand(STUDENT, TEACHER, 2.0)
    got = training_loss(STUDENT, targets=targets, teacher_logits=TEACHER, config=config)
    assert got.item() == pytest.approx((1 - alpha) * task + alpha * kd, rel=1e-5)


def test_training_loss_needs_labels_or_a_teacher():
    config = TrainConfig()
    with pytest.raises(ValueError, match="labels or a teacher"):
        training_loss(STUDENT, targets=None, teacher_logits=None, config=config)
    with pytest.raises(ValueError, match="labels or a teacher"):
        training_loss(STUDENT, targets=torch.tensor([-1, -1]), teacher_logits=None, config=config)


@pytest.mark.parametrize("hard", [False, True])
def test_unlabelled_targets_with_a_teacher_use_kd_only(hard):
    """Targets of -1 (unlabelled images) must not leak into a cross-entropy: KD alone, unscaled by alpha."""
    config = TrainConfig(kd_alpha=0.25, kd_temperature=3.0, hard_distill=hard)
    kd = hard_kd(STUDENT, TEACHER) if hard else soft_kd(STUDENT, TEACHER, temperature=3.0)
    for targets in (torch.tensor([-1, -1]), None):
        got = training_loss(STUDENT, targets=targets, teacher_logits=TEACHER, config=config)
        assert got.item() == pytest.approx(kd.item(), rel=1e-6)


def test_training_loss_backpropagates_to_the_student_only():
    student = STUDENT.clone().requires_grad_(True)
    teacher = TEACHER.clone().requires_grad_(True)
    config = TrainConfig(kd_alpha=0.5)
    training_loss(student, targets=torch.tensor([0, 2]), teacher_logits=teacher.detach(), config=config).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
