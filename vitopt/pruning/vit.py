"""timm's VisionTransformer family (ViT, DeiT, distilled DeiT, DeiT III, the ViT reference):
where each structural unit's weights live, and slicing that keeps the model exact.

Hand-written rather than torch-pruning's dependency graph: the graph needs hints for the tokens
and position embedding, knows nothing of head-uniform q/k and v index sets, and would still leave
timm's ``num_heads``/``head_dim``/``scale`` and the fused-attention scale to patch by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
from torch import nn

from vitopt.pruning.attention import PrunedAttention
from vitopt.pruning.slicing import scale_rows, slice_linear, slice_param
from vitopt.pruning.widths import BlockWidths, Widths

TOKENS = ("cls_token", "reg_token", "dist_token", "pos_embed")  # [1, n, EMB] parameters
Key = tuple[str, int | None]  # (dimension, block index; None for EMB)


@dataclass(frozen=True)
class Keep:
    """Indices kept per dimension: EMB channels, and per block heads, q/k, v and MLP indices."""

    emb: torch.Tensor
    blocks: tuple[dict[str, torch.Tensor], ...]


def is_vit(model: nn.Module) -> bool:
    from timm.models.vision_transformer import Block, VisionTransformer

    return isinstance(model, VisionTransformer) and all(type(b) is Block for b in model.blocks)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why this ViT cannot be pruned by this module (None: it can)."""
    if getattr(model, "attn_pool", None) is not None:
        return "attention-pool heads (global_pool='map') are not supported"
    for i, block in enumerate(model.blocks):
        attn = block.attn
        if not hasattr(attn, "qkv") or getattr(attn, "gate", None) is not None or _has(attn, "norm"):
            return f"block {i}: only plain multi-head attention (one qkv projection) is supported"
        if not hasattr(block.mlp, "fc1") or _has(block.mlp, "norm") or type(block.mlp).__name__ != "Mlp":
            return f"block {i}: only timm's two-layer Mlp is supported (not GLU/SwiGLU)"
    return None


def _has(module: nn.Module, name: str) -> bool:
    sub = getattr(module, name, None)
    return sub is not None and not isinstance(sub, nn.Identity)


def read_widths(model: nn.Module) -> Widths:
    return Widths(emb=model.embed_dim, blocks=tuple(_block_widths(b) for b in model.blocks))


def _block_widths(block: nn.Module) -> BlockWidths:
    attn = block.attn
    qk = getattr(attn, "qk_dim", None) or attn.head_dim
    v = getattr(attn, "v_dim", None) or attn.head_dim
    return BlockWidths(heads=attn.num_heads, qk=qk, v=v, mlp=block.mlp.fc1.out_features)


def prunable(model: nn.Module, dim: str) -> bool:
    """QK is fixed when q/k are normalised per head (slicing would change the norm's statistics)."""
    return dim != "qk" or not any(_has(b.attn, "q_norm") for b in model.blocks)


def emb_axes(model: nn.Module) -> Iterator[tuple[nn.Module, str, int]]:
    """Every (module, parameter name, axis) indexed by the embedding width."""
    yield model.patch_embed.proj, "weight", 0
    yield model.patch_embed.proj, "bias", 0
    for name in TOKENS:
        yield model, name, 2
    for norm in _emb_norms(model):
        yield norm, "weight", 0
        yield norm, "bias", 0
    for block in model.blocks:
        yield block.attn.qkv, "weight", 1
        yield block.attn.proj, "weight", 0
        yield block.attn.proj, "bias", 0
        yield block.mlp.fc1, "weight", 1
        yield block.mlp.fc2, "weight", 0
        yield block.mlp.fc2, "bias", 0
        for scale in (block.ls1, block.ls2):
            yield scale, "gamma", 0
    for head in _heads(model):
        yield head, "weight", 1


def _emb_norms(model: nn.Module) -> list[nn.Module]:
    norms = [model.patch_embed.norm, model.norm_pre, model.norm, model.fc_norm]
    norms += [n for b in model.blocks for n in (b.norm1, b.norm2)]
    return [n for n in norms if not isinstance(n, nn.Identity)]


def _heads(model: nn.Module) -> list[nn.Linear]:
    return [h for h in (model.head, getattr(model, "head_dist", None)) if isinstance(h, nn.Linear)]


def unit_sums(model: nn.Module, values: Callable[[torch.Tensor], torch.Tensor]) -> dict[Key, torch.Tensor]:
    """Per structural unit, the sum of ``values(param)`` over the weights the unit owns.
    ``values(p) = p * p.grad`` gives NViT's w * dL/dw sums; ``p ** 2`` gives squared magnitudes."""
    sums: dict[Key, torch.Tensor] = {("emb", None): torch.zeros(model.embed_dim)}
    for owner, name, axis in emb_axes(model):
        param = getattr(owner, name, None)
        if param is not None:
            dims = [d for d in range(param.ndim) if d != axis]
            sums["emb", None] += values(param).sum(dim=dims).detach().float()
    for i, block in enumerate(model.blocks):
        sums.update(_block_sums(i, block, values))
    return sums


def _block_sums(i: int, block: nn.Module, values) -> dict[Key, torch.Tensor]:
    w = _block_widths(block)
    attn, mlp = block.attn, block.mlp
    rows = values(attn.qkv.weight).sum(1) + (values(attn.qkv.bias) if attn.qkv.bias is not None else 0)
    q, k, v = rows.detach().float().split([w.heads * w.qk, w.heads * w.qk, w.heads * w.v])
    q, k, v = q.view(w.heads, w.qk), k.view(w.heads, w.qk), v.view(w.heads, w.v)
    proj = values(attn.proj.weight).sum(0).detach().float().view(w.heads, w.v)
    fc1 = values(mlp.fc1.weight).sum(1) + (values(mlp.fc1.bias) if mlp.fc1.bias is not None else 0)
    return {
        ("heads", i): q.sum(1) + k.sum(1) + v.sum(1) + proj.sum(1),
        ("qk", i): q.sum(0) + k.sum(0),
        ("v", i): v.sum(0) + proj.sum(0),
        ("mlp", i): (fc1 + values(mlp.fc2.weight).sum(0)).detach().float(),
    }


def keep_first(widths: Widths) -> Keep:
    """The first N indices of every dimension: how a saved pruned model's skeleton is rebuilt."""
    blocks = tuple({d: torch.arange(b.get(d)) for d in ("heads", "qk", "v", "mlp")} for b in widths.blocks)
    return Keep(emb=torch.arange(widths.emb), blocks=blocks)


@torch.no_grad()
def slice_vit(model: nn.Module, keep: Keep) -> nn.Module:
    """Remove every unit not in ``keep``, in place. Head, QK, V and MLP removal is exact when
    the removed units' weights were zero; EMB removal changes LayerNorm statistics (fine-tune)."""
    for i, block in enumerate(model.blocks):
        _slice_attention(block, keep.blocks[i])
        slice_linear(block.mlp.fc1, rows=keep.blocks[i]["mlp"])
        slice_linear(block.mlp.fc2, cols=keep.blocks[i]["mlp"])
    if len(keep.emb) != model.embed_dim:
        _slice_emb(model, keep.emb)
    return model


def _slice_emb(model: nn.Module, index: torch.Tensor) -> None:
    for owner, name, axis in emb_axes(model):
        slice_param(owner, name, index, axis=axis)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.in_features, module.out_features = module.weight.shape[1], module.weight.shape[0]
        if isinstance(module, nn.LayerNorm):
            module.normalized_shape = tuple(module.weight.shape)
    model.patch_embed.proj.out_channels = len(index)
    model.num_features = model.head_hidden_size = model.embed_dim = len(index)


def _slice_attention(block: nn.Module, keep: dict[str, torch.Tensor]) -> None:
    attn, w = block.attn, _block_widths(block)
    heads, qk, v = keep["heads"], keep["qk"], keep["v"]
    q_rows = (heads[:, None] * w.qk + qk[None, :]).flatten()
    v_cols = (heads[:, None] * w.v + v[None, :]).flatten()
    rows = torch.cat([q_rows, q_rows + w.heads * w.qk, v_cols + 2 * w.heads * w.qk])
    old_scale = attn.scale
    slice_linear(attn.qkv, rows=rows)
    slice_linear(attn.proj, cols=v_cols)
    # The new module scales by 1/sqrt(new qk); folding old_scale*sqrt(new qk) into q keeps q.k exact,
    # fused SDPA (which ignores .scale) and the explicit path alike.
    scale_rows(attn.qkv, slice(0, len(q_rows)), old_scale * len(qk) ** 0.5)
    block.attn = _attention_for(attn, heads=len(heads), qk=len(qk), v=len(v))


def _attention_for(attn: nn.Module, *, heads: int, qk: int, v: int) -> nn.Module:
    """timm's Attention patched in place where it can express the widths, else PrunedAttention."""
    if qk == v and not isinstance(attn, PrunedAttention):
        attn.num_heads, attn.head_dim, attn.attn_dim, attn.scale = heads, qk, heads * qk, qk**-0.5
        return attn
    new = PrunedAttention(attn.qkv.in_features, heads=heads, qk=qk, v=v, qkv_bias=attn.qkv.bias is not None,
                          proj_bias=attn.proj.bias is not None, q_norm=attn.q_norm, k_norm=attn.k_norm)  # fmt: skip
    new.qkv, new.proj, new.fused_attn = attn.qkv, attn.proj, attn.fused_attn
    return new.train(attn.training)


def tokens(model: nn.Module) -> int:
    return model.patch_embed.num_patches + model.num_prefix_tokens


def block_at(model: nn.Module, *, emb: int, widths: BlockWidths) -> nn.Module:
    """A fresh block of ``model``'s kind at the given widths (random weights: latency only)."""
    from timm.layers import Mlp
    from timm.models.vision_transformer import Attention, Block

    like = model.blocks[0]
    has_ls = not isinstance(like.ls1, nn.Identity)
    block = Block(dim=emb, num_heads=1, mlp_ratio=1.0, qkv_bias=like.attn.qkv.bias is not None,
                  init_values=1e-5 if has_ls else None)  # fmt: skip
    bias = like.attn.qkv.bias is not None
    if widths.qk == widths.v:
        block.attn = Attention(emb, num_heads=widths.heads, attn_head_dim=widths.qk, qkv_bias=bias)
    else:
        block.attn = PrunedAttention(emb, heads=widths.heads, qk=widths.qk, v=widths.v, qkv_bias=bias, proj_bias=True)
    block.mlp = Mlp(emb, hidden_features=widths.mlp, act_layer=type(like.mlp.act))
    return block.eval()


def signature(model: nn.Module) -> dict:
    """What a block's latency depends on besides its widths (part of the latency table's key)."""
    like = model.blocks[0]
    return {"family": "vit", "tokens": tokens(model), "qkv_bias": like.attn.qkv.bias is not None,
            "layer_scale": not isinstance(like.ls1, nn.Identity), "act": type(like.mlp.act).__name__}  # fmt: skip


def block_cost(*, emb: int, widths: BlockWidths, tokens: int) -> dict[str, int]:
    """Parameters and FLOPs (1 multiply-add = 2 FLOPs, torch.utils.flop_counter's convention) of one
    block at these widths: what flops and params budgets compare, without building the model."""
    h, qk, v, m = widths.heads, widths.qk, widths.v, widths.mlp
    params = emb * h * (2 * qk + v) + h * (2 * qk + v) + h * v * emb + emb + emb * m + m + m * emb + emb + 4 * emb
    macs = tokens * (emb * h * (2 * qk + v) + h * v * emb + 2 * emb * m) + tokens * tokens * h * (qk + v)
    return {"params": params, "flops": 2 * macs}


@torch.no_grad()
def slice_block(block: nn.Module, kept: dict[str, torch.Tensor]) -> None:
    """Heads and MLP units of one block (DIMAP's unit latency probes); q/k/v widths per head stay."""
    w = _block_widths(block)
    _slice_attention(block, {"qk": torch.arange(w.qk), "v": torch.arange(w.v), **kept})
    slice_linear(block.mlp.fc1, rows=kept["mlp"])
    slice_linear(block.mlp.fc2, cols=kept["mlp"])


def stages(model: nn.Module) -> list[list[int]]:
    """Every block alike (same width and tokens): one stage, one probe."""
    return [list(range(len(model.blocks)))]


def signature_for_units(model: nn.Module) -> dict:
    return {**signature(model), "emb": model.embed_dim, "block": asdict(_block_widths(model.blocks[0]))}


def probe_block(model: nn.Module, index: int) -> tuple[nn.Module, tuple[int, ...]]:
    """A copy of block ``index`` and the token layout it reads ([B, N, C]: (N,))."""
    import copy

    return copy.deepcopy(model.blocks[index]).eval(), (tokens(model),)


slice_model = slice_vit  # the name every family adapter uses
supports_latency_table = True


def blocks_cost(model: nn.Module, widths: Widths, kind: str) -> float:
    """FLOPs or params of all blocks at ``widths`` (budget.py adds the rest of the model)."""
    n = tokens(model)
    return sum(block_cost(emb=widths.emb, widths=b, tokens=n)[kind] for b in widths.blocks)
