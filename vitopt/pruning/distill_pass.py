"""The ``distill`` pass: a KD fine-tune of the current candidate against the unmodified model, so
a recipe can chain reparam -> prune -> distill -> export."""

from __future__ import annotations

from vitopt.passes import ModelPass, PassContext, PassResult, register_pass
from vitopt.pruning.finetune import FinetuneOptions, finetune, require_data


@register_pass
class DistillPass(ModelPass):
    name = "distill"
    Options = FinetuneOptions
    trains = True

    def run(self, module, *, context: PassContext) -> PassResult:
        require_data(context, pass_name=self.name)
        if self.options.epochs == 0:
            return PassResult(module, {"epochs": 0})
        work = context.work_dir / f"distill-{context.extras.get('pass_index', 0)}"
        summary = finetune(module, context=context, options=self.options, out_dir=work, epochs=self.options.epochs)
        return PassResult(module.eval(), {"epochs": self.options.epochs, "last_epoch": summary.get("last", {})})
