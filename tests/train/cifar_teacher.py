"""A teacher for ``vitopt distill``, loaded as ``tests/train/cifar_teacher.py:small_vit``.

``distill --teacher`` takes no ``--model-arg``, so a teacher trained as
``vitopt train vitopt/vit-cifar10 --model-arg depth=1 ...`` is rebuilt here with the same
constructor arguments and given its weights with ``--teacher-checkpoint``.
"""

import timm

from vitopt.zoo import zoo_entry

SMALL_KWARGS = {"depth": 1, "embed_dim": 48, "num_heads": 3}  # as tests/train/conftest.py


def small_vit(**kwargs):
    entry = zoo_entry("vitopt/vit-cifar10")
    return timm.create_model(entry.arch, pretrained=False, **{**entry.kwargs, **SMALL_KWARGS, **kwargs})
