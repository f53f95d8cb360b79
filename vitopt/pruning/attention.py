"""Multi-head self-attention whose q/k width per head differs from its v width.

timm's ``Attention`` has one ``head_dim`` for q, k and v; NViT prunes QK and V separately, so a
block whose widths differ gets this module instead. It keeps timm's parameter names (``qkv``,
``proj``, ``q_norm``, ``k_norm``) so state dicts stay readable, one fused qkv matmul, and the
standard 1/sqrt(qk) scale (slicing folds any other scale into the q rows), so it exports to every
target like timm's own attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrunedAttention(nn.Module):
    def __init__(self, dim: int, *, heads: int, qk: int, v: int, qkv_bias: bool, proj_bias: bool,
                 q_norm: nn.Module | None = None, k_norm: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        from timm.layers import use_fused_attn

        self.num_heads, self.qk_dim, self.v_dim = heads, qk, v
        self.scale = qk**-0.5
        self.fused_attn = use_fused_attn()
        self.qkv = nn.Linear(dim, heads * (2 * qk + v), bias=qkv_bias)
        self.q_norm = q_norm or nn.Identity()
        self.k_norm = k_norm or nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(heads * v, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        batch, tokens, _ = x.shape
        h, qk, v = self.num_heads, self.qk_dim, self.v_dim
        q, k, val = self.qkv(x).split([h * qk, h * qk, h * v], dim=-1)
        q = self.q_norm(q.reshape(batch, tokens, h, qk).transpose(1, 2))
        k = self.k_norm(k.reshape(batch, tokens, h, qk).transpose(1, 2))
        val = val.reshape(batch, tokens, h, v).transpose(1, 2)
        if self.fused_attn:
            # is_causal is accepted for timm's Block signature and ignored: a ViT is never causal
            # (and the TorchScript tracer passes it as a tensor, which SDPA rejects).
            out = F.scaled_dot_product_attention(q, k, val, attn_mask=attn_mask)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                attn = attn + attn_mask
            out = self.attn_drop(attn.softmax(dim=-1)) @ val
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, tokens, h * v)))
