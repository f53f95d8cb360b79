"""The ``reparam`` model pass: structural reparameterisation as the first step of a recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vitopt.errors import InputError
from vitopt.passes import ModelPass, PassContext, PassOptions, PassResult, register_pass
from vitopt.reparam.api import reparameterize
from vitopt.reparam.kinds import ALL_KINDS, FoldKind


class ReparamOptions(PassOptions):
    strategy: Literal["auto", "generic", "native"] = "auto"
    include_kinds: list[FoldKind] = Field(default_factory=lambda: list(ALL_KINDS))
    verify_images: int = Field(16, ge=1)  # real calibration images the folded outputs are checked on
    verify_rtol: float = Field(1e-4, gt=0)
    verify_atol: float = Field(1e-4, gt=0)


@register_pass
class ReparamPass(ModelPass):
    """Fold BatchNorms and parallel branches into single layers; verify on real images."""

    name = "reparam"
    Options = ReparamOptions

    def run(self, module, *, context: PassContext) -> PassResult:
        options: ReparamOptions = self.options
        result = reparameterize(
            module, images=_images(context, options.verify_images), strategy=options.strategy,
            include_kinds=options.include_kinds, rtol=options.verify_rtol, atol=options.verify_atol,
        )  # fmt: skip
        return PassResult(module=result.module, details=result.details)


def _images(context: PassContext, n: int):
    if context.calibration is not None:
        return context.calibration[:n]
    if context.spec is None:
        raise InputError("the reparam pass needs real calibration images (PassContext.calibration) or a model spec")
    from vitopt.data import load_batch

    return load_batch(spec=context.spec, n=n)
