"""What a pruned ViT looks like: one embedding width and, per block, heads, q/k and v width per
head, and MLP width. Saved beside the weights so the model can be rebuilt; shown in the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

DIMENSIONS = ("emb", "heads", "qk", "v", "mlp")  # EMB is shared by all blocks; the rest are per block
BLOCK_DIMENSIONS = DIMENSIONS[1:]


@dataclass(frozen=True)
class BlockWidths:
    heads: int
    qk: int  # q/k width of each head
    v: int  # v width of each head
    mlp: int

    def get(self, dim: str) -> int:
        return getattr(self, dim)

    def with_(self, dim: str, value: int) -> BlockWidths:
        return replace(self, **{dim: value})


@dataclass(frozen=True)
class Widths:
    emb: int
    blocks: tuple[BlockWidths, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"emb": self.emb, "blocks": [asdict(b) for b in self.blocks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Widths:
        return cls(emb=int(data["emb"]), blocks=tuple(BlockWidths(**b) for b in data["blocks"]))

    def with_block(self, index: int, block: BlockWidths) -> Widths:
        blocks = list(self.blocks)
        blocks[index] = block
        return replace(self, blocks=tuple(blocks))

    def table(self) -> list[dict[str, int]]:
        """One row per block: EMB, H, QK, V, MLP (the report's widths table)."""
        return [{"block": i, "emb": self.emb, **asdict(b)} for i, b in enumerate(self.blocks)]
