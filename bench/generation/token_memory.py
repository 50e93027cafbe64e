"""Token-level memory (Deep Forcing's participative compression): per layer and batch row, a fixed
number of token rows of past frames, and the rule that re-selects them from a layer's queries.

A memory is a `TokenRows` per layer: K/V stored un-roped, with each row's source frame, index
within its frame (its spatial RoPE) and reuse count. Its size is fixed (`budget` frames' worth of
rows) so the batch stays one tensor; a batch row with fewer eligible candidates is padded and the
padding masked by `valid`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch

from memory_policies.plan import KeptTokens


@dataclass(frozen=True)
class TokenRows:
    """One layer's token rows, per batch row."""

    k: torch.Tensor  # (batch, rows, heads, head_dim), un-roped
    v: torch.Tensor  # (batch, rows, heads, head_dim)
    frame: torch.Tensor  # (batch, rows) long: the source frame
    token: torch.Tensor  # (batch, rows) long: index within the source frame
    count: torch.Tensor  # (batch, rows) long: how many selections chose it
    valid: torch.Tensor  # (batch, rows) bool: False on padding

    @classmethod
    def of_frames(cls, k: torch.Tensor, v: torch.Tensor, frames: list[int]) -> TokenRows:
        """Every token of `frames`, whose K/V (batch, frames * tokens, heads, head_dim) are given in that order."""
        batch, rows = k.shape[:2]
        per_frame = rows // len(frames)
        frame = torch.tensor(frames, device=k.device).repeat_interleave(per_frame).expand(batch, -1)
        token = torch.arange(per_frame, device=k.device).repeat(len(frames)).expand(batch, -1)
        zeros = torch.zeros(batch, rows, dtype=torch.long, device=k.device)
        return cls(k, v, frame, token, zeros, torch.ones(batch, rows, dtype=torch.bool, device=k.device))

    @classmethod
    def cat(cls, parts: list[TokenRows]) -> TokenRows:
        return cls(*(torch.cat([getattr(p, name) for p in parts], dim=1) for name in cls.__dataclass_fields__))

    def take(self, index: torch.Tensor, kept: torch.Tensor) -> TokenRows:
        """Rows `index` (batch, n) of each batch row, as chosen ones: valid where `kept`, count + 1."""
        rows = index[..., None, None].expand(-1, -1, *self.k.shape[2:])
        count = self.count.gather(1, index) + kept.long()
        return TokenRows(self.k.gather(1, rows), self.v.gather(1, rows), self.frame.gather(1, index),
                         self.token.gather(1, index), count, kept)

    def eligible(self, max_reuse: int) -> torch.Tensor:
        """Rows that may be chosen again: real rows chosen fewer than `max_reuse` times (0: no limit)."""
        return self.valid if max_reuse == 0 else self.valid & (self.count < max_reuse)

    def summary(self, row: int) -> tuple[tuple[int, int], ...]:
        """(source frame, tokens held) pairs of batch row `row`, by frame."""
        counts = Counter(self.frame[row][self.valid[row]].tolist())
        return tuple(sorted(counts.items()))

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


def token_scores(query_sum: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Deep Forcing's score of each key row: <query_sum, key> over all heads and channels jointly,
    divided by sqrt(head_dim) * heads. query_sum (batch, heads, head_dim), keys (batch, n, heads,
    head_dim), both roped; returns (batch, n) in float32."""
    heads, head_dim = keys.shape[-2:]
    return torch.einsum("bhd,bnhd->bn", query_sum.float(), keys.float()) / (math.sqrt(head_dim) * heads)


def top_tokens(scores: torch.Tensor, eligible: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per batch row, the `budget` best-scoring eligible rows, in their original order.

    Returns (index, kept), both (batch, budget): `kept` is False where a row had fewer than `budget`
    eligible candidates (those slots are padding). Ties are broken by `torch.topk`, unspecified.
    """
    batch, n = scores.shape
    masked = scores.masked_fill(~eligible, -math.inf)
    take = min(budget, n)
    best = masked.topk(take, dim=1).indices
    kept = eligible.gather(1, best)
    # padding (not kept) sorts after every kept row; kept rows keep their candidate order
    order = torch.where(kept, best, n + best).argsort(dim=1)
    index, kept = best.gather(1, order), kept.gather(1, order)
    if take < budget:
        pad = budget - take
        index = torch.cat([index, index.new_zeros(batch, pad)], dim=1)
        kept = torch.cat([kept, kept.new_zeros(batch, pad)], dim=1)
    return index, kept


class TokenStore:
    """The token memories of one video, by entry name: one `TokenRows` per layer."""

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        self.memories: dict[str, list[TokenRows | None]] = {}

    def find(self, entry: str, layer: int) -> TokenRows | None:
        """One layer's rows of `entry`, None before its first selection."""
        return self.memories.get(entry, [None] * self.num_layers)[layer]

    def get(self, entry: str, layer: int) -> TokenRows:
        rows = self.find(entry, layer)
        if rows is None:
            raise RuntimeError(f"token memory {entry!r} is attended before any selection filled layer {layer}")
        return rows

    def put(self, entry: str, layer: int, rows: TokenRows) -> None:
        self.memories.setdefault(entry, [None] * self.num_layers)[layer] = rows

    def kept(self, entry: str, batch: int) -> KeptTokens:
        """Per batch row, per layer: (source frame, tokens) pairs, for the plan trace."""
        layers = self.memories[entry]
        return tuple(tuple(() if rows is None else rows.summary(b) for rows in layers) for b in range(batch))

    @property
    def nbytes(self) -> int:
        return sum(rows.nbytes for layers in self.memories.values() for rows in layers if rows is not None)
