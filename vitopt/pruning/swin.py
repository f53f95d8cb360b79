"""timm's SwinTransformer (v1) and SwinTransformerV2: whole heads and MLP width per block (NViT's H and
MLP dimensions; the stage widths are tied to patch merging and the q/k/v width per head to the relative
position bias, so those stay). A head's units: its q/k/v rows and proj columns, and its column of the v1
``relative_position_bias_table``, or (v2) its row of the continuous position bias MLP's output layer, its
``logit_scale`` and its q/v bias. Shares ``slicing`` with the ViT adapter; DIMAP's structured mode prunes
the same units."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from vitopt.pruning.slicing import slice_linear, slice_param
from vitopt.pruning.vit import Keep, Key, keep_first  # noqa: F401  (keep_first: the same rule)
from vitopt.pruning.widths import BlockWidths, Widths

supports_latency_table = False


def is_swin(model: nn.Module) -> bool:
    from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
    from timm.models.swin_transformer_v2 import SwinTransformerV2, SwinTransformerV2Block

    v1 = isinstance(model, SwinTransformer) and all(type(b) is SwinTransformerBlock for b in blocks_of(model))
    return v1 or (isinstance(model, SwinTransformerV2) and all(type(b) is SwinTransformerV2Block
                                                                for b in blocks_of(model)))  # fmt: skip


def _is_v2(attn: nn.Module) -> bool:
    return hasattr(attn, "cpb_mlp")


def blocks_of(model: nn.Module) -> list[nn.Module]:
    return [b for layer in model.layers for b in layer.blocks]


def unsupported_reason(model: nn.Module) -> str | None:
    for i, block in enumerate(blocks_of(model)):
        if type(block.mlp).__name__ != "Mlp" or not isinstance(getattr(block.mlp, "norm", nn.Identity()), nn.Identity):
            return f"block {i}: only timm's two-layer Mlp is supported"
    return None


def read_widths(model: nn.Module) -> Widths:
    return Widths(emb=model.embed_dim, blocks=tuple(_widths(b) for b in blocks_of(model)))


def _widths(block: nn.Module) -> BlockWidths:
    attn = block.attn
    head_dim = attn.qkv.out_features // (3 * attn.num_heads)
    return BlockWidths(heads=attn.num_heads, qk=head_dim, v=head_dim, mlp=block.mlp.fc1.out_features)


def prunable(model: nn.Module, dim: str) -> bool:
    return dim in ("heads", "mlp")


def unit_sums(model: nn.Module, values: Callable[[torch.Tensor], torch.Tensor]) -> dict[Key, torch.Tensor]:
    sums: dict[Key, torch.Tensor] = {}
    for i, block in enumerate(blocks_of(model)):
        w, attn, mlp = _widths(block), block.attn, block.mlp
        rows = values(attn.qkv.weight).sum(1) + _qkv_bias_values(attn, values)
        heads = rows.detach().float().view(3, w.heads, w.qk).sum(dim=(0, 2))
        heads += values(attn.proj.weight).sum(0).detach().float().view(w.heads, w.v).sum(1)
        heads += _position_values(attn, values)
        fc1 = values(mlp.fc1.weight).sum(1) + (values(mlp.fc1.bias) if mlp.fc1.bias is not None else 0)
        sums["heads", i] = heads
        sums["mlp", i] = (fc1 + values(mlp.fc2.weight).sum(0)).detach().float()
    return sums


def _qkv_bias_values(attn: nn.Module, values) -> torch.Tensor | int:
    if _is_v2(attn):
        return 0 if attn.q_bias is None else torch.cat([values(attn.q_bias), 0 * attn.q_bias, values(attn.v_bias)])
    return values(attn.qkv.bias) if attn.qkv.bias is not None else 0


def _position_values(attn: nn.Module, values) -> torch.Tensor:
    if _is_v2(attn):
        return (values(attn.cpb_mlp[-1].weight).sum(1) + values(attn.logit_scale).flatten()).detach().float()
    return values(attn.relative_position_bias_table).sum(0).detach().float()


@torch.no_grad()
def slice_model(model: nn.Module, keep: Keep) -> nn.Module:
    """Remove the heads and MLP units not in ``keep``, in place; exact when their weights were zero."""
    for block, kept in zip(blocks_of(model), keep.blocks, strict=True):
        slice_block(block, kept)
    return model


@torch.no_grad()
def slice_block(block: nn.Module, kept: dict[str, torch.Tensor]) -> None:
    _slice_heads(block.attn, kept["heads"], head_dim=_widths(block).qk)
    slice_linear(block.mlp.fc1, rows=kept["mlp"])
    slice_linear(block.mlp.fc2, cols=kept["mlp"])


def stages(model: nn.Module) -> list[list[int]]:
    """Block indices per stage: blocks of one stage share width, resolution and window, so one probe
    measures them all (``unit_latency``)."""
    out, start = [], 0
    for layer in model.layers:
        out.append(list(range(start, start + len(layer.blocks))))
        start += len(layer.blocks)
    return out


def signature_for_units(model: nn.Module) -> dict:
    """What a stage's unit latency depends on: per stage, width, resolution, window, heads, MLP, version."""
    firsts = [blocks_of(model)[blocks[0]] for blocks in stages(model)]
    return {"family": "swin", "stages": [[type(b).__name__, b.attn.qkv.in_features, *b.input_resolution,
                                          *b.attn.window_size, b.attn.num_heads, b.mlp.fc1.out_features]
                                         for b in firsts]}  # fmt: skip


def probe_block(model: nn.Module, index: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A copy of block ``index`` and the token layout it reads ([B, H, W, C]: (H, W))."""
    import copy

    block = blocks_of(model)[index]
    return copy.deepcopy(block).eval(), tuple(block.input_resolution)


def _slice_heads(attn: nn.Module, heads: torch.Tensor, *, head_dim: int) -> None:
    per_head = (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).flatten()
    rows = torch.cat([per_head + part * attn.num_heads * head_dim for part in range(3)])
    slice_linear(attn.qkv, rows=rows)
    slice_linear(attn.proj, cols=per_head)
    if _is_v2(attn):
        _slice_v2_heads(attn, heads, per_head)
    else:
        slice_param(attn, "relative_position_bias_table", heads, axis=1)
    attn.num_heads = len(heads)


def _slice_v2_heads(attn: nn.Module, heads: torch.Tensor, per_head: torch.Tensor) -> None:
    from vitopt.pruning.swin2_attention import PrunedWindowAttentionV2

    slice_linear(attn.cpb_mlp[-1], rows=heads)
    slice_param(attn, "logit_scale", heads, axis=0)
    if attn.q_bias is not None:
        slice_param(attn, "q_bias", per_head, axis=0)
        slice_param(attn, "v_bias", per_head, axis=0)
        attn.k_bias = attn.k_bias[per_head]
    attn.__class__ = PrunedWindowAttentionV2  # timm's forward assumes heads x width == block width


def blocks_cost(model: nn.Module, widths: Widths, kind: str) -> float:
    """FLOPs (1 multiply-add = 2) or params of every block at ``widths``, each at its stage's width, token
    count and window area."""
    total = 0.0
    for block, w in zip(blocks_of(model), widths.blocks, strict=True):
        dim, tokens, area = block.attn.qkv.in_features, _tokens(block), _window_area(block.attn)
        inner = w.heads * w.qk
        params = dim * 3 * inner + 3 * inner + inner * dim + dim + 2 * dim * w.mlp + w.mlp + dim + 4 * dim
        params += _position_params(block.attn) * w.heads
        macs = tokens * (dim * 3 * inner + inner * dim + 2 * dim * w.mlp) + tokens * area * 2 * inner
        total += params if kind == "params" else 2 * macs
    return total


def _position_params(attn: nn.Module) -> int:
    """Parameters per head outside q/k/v and proj: v1's bias table column; v2's bias MLP row and logit scale."""
    if _is_v2(attn):
        return attn.cpb_mlp[-1].in_features + 1
    return attn.relative_position_bias_table.shape[0]


def _window_area(attn: nn.Module) -> int:
    height, width = attn.window_size
    return height * width


def _tokens(block: nn.Module) -> int:
    height, width = block.input_resolution
    return height * width
