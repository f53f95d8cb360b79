"""Structural reparameterisation: fold BatchNorms and parallel branches of any model into single layers.

One generic pass (registered as ``reparam``) that works on modules it has never seen: each model is
traced with torch.fx, every node gets an affine expression over one source tensor, and the
expressions that contain a conv/linear layer plus BatchNorms, scales or parallel branches are folded
(Conv+BN, BN+Linear, Linear+BN, RepVGG / MobileOne / RepMixer branches, the distilled two-head
classifier). Blocks that can fold themselves plug in through :class:`Reparameterizable`. Every run
is checked on real images; what is left is reported with a reason.

    from vitopt.reparam import reparameterize
    result = reparameterize(model, images=batch)   # result.module, result.details
"""

from vitopt.reparam.api import ReparamResult, count_batch_norms, reparameterize
from vitopt.reparam.kinds import ALL_KINDS, FoldKind
from vitopt.reparam.known_blocks import Reparameterizable
from vitopt.reparam.pass_ import ReparamOptions, ReparamPass

__all__ = [
    "ALL_KINDS",
    "FoldKind",
    "ReparamOptions",
    "ReparamPass",
    "ReparamResult",
    "Reparameterizable",
    "count_batch_norms",
    "reparameterize",
]
