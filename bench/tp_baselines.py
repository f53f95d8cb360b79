"""Baselines for vitopt's ViT width pruning: torch-pruning's own timm ViT recipe (examples/transformers/
prune_timm_vit.py in VainF/Torch-Pruning) and keeping the first channels of every weight. Supports timm
VisionTransformer with plain Attention/Mlp (no qk/scale norm, gate, attention pooling). Every function works on a
deep copy, so one base model can feed several baselines."""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
import torch_pruning as tp
from timm.layers import Attention
from torch import nn

Batches = list[tuple[torch.Tensor, torch.Tensor]]


class FixedGroupHessianImportance(tp.importance.GroupHessianImportance):
    """tp's GroupHessianImportance, fixed: tp 1.6.0/1.6.1 tests ``name in self._accu_grad`` on a dict keyed by
    Parameter, so each sample overwrites the last and the score comes from one sample. Keying by the parameter
    restores the documented mean of squared per-sample gradients at the same cost."""

    def accumulate_grad(self, model: nn.Module) -> None:
        for param in model.parameters():
            if param.grad is not None:
                sq = param.grad.detach().pow(2)
                self._accu_grad[param] = self._accu_grad[param] + sq if param in self._accu_grad else sq
                self._counter[param] = self._counter.get(param, 0) + 1


IMPORTANCES = {  # the criteria of the tp timm example; group variants sum the score over coupled layers
    "taylor": tp.importance.GroupTaylorImportance,
    "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "hessian": FixedGroupHessianImportance,
}


def _unwrapped(model: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """cls/reg tokens and pos_embed on their embed dim, declared so tp need not guess (list of pairs, not dict)."""
    return [(p, p.dim() - 1) for p in model.parameters(recurse=False)]


def _attentions(model: nn.Module) -> list[Attention]:
    """The timm Attention modules, refusing variants whose extra per-head weights nothing here would resize."""
    attns = [m for m in model.modules() if isinstance(m, Attention)]
    for a in attns:
        if not isinstance(a.q_norm, nn.Identity) or not isinstance(a.norm, nn.Identity) or a.gate is not None:
            raise NotImplementedError("qk_norm / scale_norm / gated attention is not supported")
    return attns


def _set_heads(attn: Attention, num_heads: int, head_dim: int) -> None:
    """Make timm's forward match the new qkv width: it reshapes with num_heads, head_dim and attn_dim. Fused SDPA
    takes its scale from q's last dim, so ``scale`` (unfused path) must follow or the two paths disagree."""
    attn.num_heads, attn.head_dim, attn.attn_dim = num_heads, head_dim, num_heads * head_dim
    attn.scale = head_dim**-0.5


def _accumulate_taylor(model: nn.Module, batches: Batches) -> None:
    """Batch-mean cross-entropy gradients summed over the batches, as in the tp example."""
    model.zero_grad()
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()


def _accumulate_hessian(model: nn.Module, imp: FixedGroupHessianImportance, batches: Batches) -> None:
    """tp's documented protocol: one backward per sample, squared gradients accumulated by the importance."""
    imp.zero_grad()
    for x, y in batches:
        for loss in F.cross_entropy(model(x), y, reduction="none"):
            model.zero_grad()
            loss.backward(retain_graph=True)
            imp.accumulate_grad(model)


def _make_pruner(model, imp, ratio, example_inputs, round_to, head_ratio) -> tp.pruner.MetaPruner:
    """MetaPruner set up like the tp timm example: global ranking, classifier kept whole, heads declared on qkv.
    Head dims are pruned unless ``head_ratio`` > 0, then whole heads go instead (the example's --prune_num_heads)."""
    return tp.pruner.MetaPruner(
        model,
        example_inputs,
        importance=imp,
        global_pruning=True,
        pruning_ratio=ratio,
        ignored_layers=[model.head],
        num_heads={a.qkv: a.num_heads for a in _attentions(model)},
        prune_num_heads=head_ratio > 0,
        prune_head_dims=head_ratio == 0,
        head_pruning_ratio=head_ratio,
        round_to=round_to,
        unwrapped_parameters=_unwrapped(model),
    )


def prune_with_torch_pruning(
    model: nn.Module,
    *,
    importance: str,
    ratio: float,
    example_inputs: torch.Tensor,
    batches: Batches | None = None,
    round_to: int = 8,
    head_ratio: float = 0.0,
) -> nn.Module:
    """A copy of a timm ViT with ``ratio`` of all channels removed by tp's global ranking. The residual stream
    (patch_embed, tokens, norms, head input) is one coupled group, so the embed dim is pruned too, as in tp's
    example. Taylor and Hessian need ``batches`` of (images, labels)."""
    model = copy.deepcopy(model).eval()
    imp = IMPORTANCES[importance]()
    pruner = _make_pruner(model, imp, ratio, example_inputs, round_to, head_ratio)
    if importance == "hessian":
        _accumulate_hessian(model, imp, batches)
    elif importance == "taylor":
        _accumulate_taylor(model, batches)
    pruner.step()
    for attn in _attentions(model):
        heads = pruner.num_heads[attn.qkv]
        _set_heads(attn, heads, attn.qkv.out_features // (3 * heads))
    model.zero_grad(set_to_none=True)
    return model


def time_group_hessian(model: nn.Module, *, batches: Batches) -> float:
    """Seconds for tp's Hessian criterion to score every prunable group of ``model`` from ``batches``: forward,
    per-sample backward and accumulation, then the importance of all groups (what MetaPruner ranks). Copying the
    model and tracing the dependency graph are one-off set-up, not saliency estimation, so they are not timed."""
    model = copy.deepcopy(model).eval()
    graph = tp.DependencyGraph().build_dependency(model, batches[0][0][:1], unwrapped_parameters=_unwrapped(model))
    groups = list(graph.get_all_groups(ignored_layers=[model.head], root_module_types=(nn.Conv2d, nn.Linear)))
    imp = FixedGroupHessianImportance()
    start = time.perf_counter()
    _accumulate_hessian(model, imp, batches)
    for group in groups:
        imp(group)
    return time.perf_counter() - start


def _keep(n: int, fraction: float, round_to: int) -> torch.Tensor:
    """Indices of the first ``n * fraction`` channels, rounded to a multiple of round_to (at least round_to)."""
    return torch.arange(min(n, max(round_to, round(n * fraction / round_to) * round_to)))


def _slice(module: nn.Module, name: str, *idx: torch.Tensor | None) -> None:
    """Replace parameter ``name`` by the entries kept along each dim (None keeps a dim whole)."""
    old = getattr(module, name)
    if old is not None:
        new = old.data
        for dim, keep in enumerate(idx):
            new = new if keep is None else new.index_select(dim, keep)
        setattr(module, name, nn.Parameter(new.clone(), requires_grad=old.requires_grad))


def _slice_layer(layer: nn.Module, out: torch.Tensor | None, inp: torch.Tensor | None = None) -> None:
    """Slice a Linear/Conv2d's weight and bias and keep its size attributes true (repr, FLOP counters read them)."""
    _slice(layer, "weight", out, inp)
    _slice(layer, "bias", out)
    if isinstance(layer, nn.Linear):
        layer.out_features, layer.in_features = layer.weight.shape
    else:
        layer.out_channels = layer.weight.shape[0]


def _slice_block(block: nn.Module, e: torch.Tensor, hidden: torch.Tensor, head_dim: int) -> None:
    """Slice one transformer block: the first head_dim dims of every q/k/v head, the MLP hidden, the embed dim."""
    attn, heads = block.attn, block.attn.num_heads
    per_head = (torch.arange(3 * heads)[:, None] * attn.head_dim + torch.arange(head_dim)).flatten()
    _slice_layer(attn.qkv, per_head, e)
    _slice_layer(attn.proj, e, per_head[: heads * head_dim])
    _slice_layer(block.mlp.fc1, hidden, e)
    _slice_layer(block.mlp.fc2, e, hidden)
    _set_heads(attn, heads, head_dim)


def _slice_residual(model: nn.Module, e: torch.Tensor) -> None:
    """Cut everything else on the residual stream: patch embedding, tokens, LayerNorms, LayerScales, head input."""
    _slice_layer(model.patch_embed.proj, e)
    _slice_layer(model.head, None, e)
    for name, _ in list(model.named_parameters(recurse=False)):
        _slice(model, name, None, None, e)
    for m in model.modules():
        for name in ("weight", "bias") if isinstance(m, nn.LayerNorm) else ("gamma",) if hasattr(m, "gamma") else ():
            _slice(m, name, e)
        if isinstance(m, nn.LayerNorm):
            m.normalized_shape = (len(e),)


def uniform_width_vit(model: nn.Module, *, width_fraction: float, round_to: int = 8) -> nn.Module:
    """The naive baseline: embed dim, MLP hidden and per-head dim all scaled by one fraction, heads kept. Keeps the
    first channels of every weight (no saliency), so a gap to it measures what a pruning criterion buys."""
    model = copy.deepcopy(model).eval()
    e = _keep(model.embed_dim, width_fraction, round_to)
    head_dim = len(_keep(_attentions(model)[0].head_dim, width_fraction, round_to))
    for block in model.blocks:
        _slice_block(block, e, _keep(block.mlp.fc1.out_features, width_fraction, round_to), head_dim)
    _slice_residual(model, e)
    model.embed_dim = model.num_features = model.head_hidden_size = len(e)
    return model
