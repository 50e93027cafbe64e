"""Planned self-attention for diffusers' `WanTransformer3DModel`.

Every `attn1` of the DiT gets a `PlannedAttnProcessor`. For one forward the sampler (or the
trainer) hands `PlannedWan` an `AttentionState` (a sampler makes it from the chunk's `Plan`,
`AttentionState.planned`): the temporal RoPE position of each input frame, the memory frames to read
from the KV reservoir with their planned positions, whether to write the input's K/V into the
reservoir (the clean pass), and an optional boolean mask. Spatial RoPE is Wan's as usual; temporal
RoPE is applied at the planned positions, so keys live in the reservoir without RoPE.

A plan's token memory (`Plan.tokens`) is attended after the memory frames, each token row at its
source frame's position + the plan's shift, per batch row; at the chunk's first forward
(`select_tokens`) each layer first re-selects it from its own queries (`token_memory`). The clean
pass also records, per frame and layer, the sum of its roped queries for those selections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.embeddings import get_1d_rotary_pos_embed

from bench.perf.profiler import Profiler
from memory_policies import Plan
from memory_policies.plan import TokenMemory

from .reservoir import KVReservoir
from .token_memory import TokenRows, token_scores, top_tokens

RopeTables = tuple[torch.Tensor, torch.Tensor]


@dataclass
class AttentionState:
    positions: Sequence[int]  # temporal RoPE position of each input (latent) frame
    memory_frames: Sequence[int] = ()
    memory_positions: Sequence[int] = ()
    reservoir: KVReservoir | None = None
    write_frames: Sequence[int] = ()  # frame ids under which the input's K/V are stored (clean pass)
    mask: torch.Tensor | None = None  # (queries, keys) boolean, True = attend
    tokens: TokenMemory | None = None  # a token memory to attend (after the memory frames)
    select_tokens: bool = False  # the chunk's first forward: run the token memory's selection first
    rope: RopeTables | None = field(default=None, repr=False)
    memory_rope: RopeTables | None = field(default=None, repr=False)
    rope_at: Callable[[tuple[int, ...]], RopeTables] | None = field(default=None, repr=False)
    # times "dit", "attention" and "reservoir_write"; the default is disabled
    profiler: Profiler = field(default_factory=lambda: Profiler(enabled=False), repr=False)

    @classmethod
    def planned(
        cls, plan: Plan, reservoir: KVReservoir, profiler: Profiler, positions: Sequence[int] | None = None, **extra
    ) -> AttentionState:
        """One DiT forward under `plan`; the input frames sit at the chunk's planned positions unless given."""
        return cls(
            positions=plan.current_positions if positions is None else positions,
            memory_frames=plan.frames,
            memory_positions=plan.positions,
            reservoir=reservoir,
            tokens=plan.tokens,
            profiler=profiler,
            **extra,
        )

    def place(self, rope: torch.nn.Module, height: int, width: int, device: torch.device) -> None:
        """Build the RoPE tables of the input and the memory frames, once per forward for all layers."""
        self.rope = rope_tables(rope, self.positions, height, width, device)
        if self.memory_frames:
            self.memory_rope = rope_tables(rope, self.memory_positions, height, width, device)
        if self.tokens is not None:  # token rows need tables at positions known per layer only
            self.rope_at = memoised(partial(rope_tables, rope, height=height, width=width, device=device))

    def rope_rows(self, x: torch.Tensor, positions: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Rotate token rows x (batch, n, heads, head_dim): row (b, i) is token `token[b, i]` of a
        frame at temporal position `positions[b, i]`."""
        unique, inverse = torch.unique(positions, return_inverse=True)
        cos, sin = self.rope_at(tuple(unique.tolist()))
        index = inverse * (cos.shape[1] // len(unique)) + token
        return apply_rope(x, cos[0][index], sin[0][index])


def memoised(build: Callable[[tuple[int, ...]], RopeTables]) -> Callable[[tuple[int, ...]], RopeTables]:
    """`build` computed once per distinct positions (layers of one forward often share them)."""
    tables: dict[tuple[int, ...], RopeTables] = {}

    def at(positions: tuple[int, ...]) -> RopeTables:
        if positions not in tables:
            tables[positions] = build(positions)
        return tables[positions]

    return at


def rope_tables(
    rope: torch.nn.Module, frame_positions: Sequence[int], height: int, width: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's 3D RoPE (cos, sin) for frames at arbitrary temporal positions, shaped (1, tokens, 1, head_dim).

    Built with diffusers' own 1D table function, so positions 0..F-1 reproduce `WanRotaryPosEmbed`.
    """
    pos_t = torch.tensor(list(frame_positions), dtype=torch.float64)
    parts = []
    for dim, pos in ((rope.t_dim, pos_t), (rope.h_dim, torch.arange(height)), (rope.w_dim, torch.arange(width))):
        parts.append(get_1d_rotary_pos_embed(dim, pos, 10000.0, use_real=True, freqs_dtype=torch.float64))
    frames, grid = len(pos_t), (len(pos_t), height, width)
    tables = []
    for which in (0, 1):
        t_tab = parts[0][which].view(frames, 1, 1, -1).expand(*grid, -1)
        h_tab = parts[1][which].view(1, height, 1, -1).expand(*grid, -1)
        w_tab = parts[2][which].view(1, 1, width, -1).expand(*grid, -1)
        tables.append(torch.cat([t_tab, h_tab, w_tab], dim=-1).reshape(1, -1, 1, rope.attention_head_dim).to(device))
    return tables[0], tables[1]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x (batch, tokens, heads, head_dim), as Wan does."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


class StateSlot:
    """Shared by all processors of one model: the state of the forward in flight."""

    state: AttentionState | None = None


class PlannedAttnProcessor:
    def __init__(self, layer: int, slot: StateSlot) -> None:
        self.layer = layer
        self.slot = slot

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        state = self.slot.state
        if state is None:
            raise RuntimeError("PlannedAttnProcessor called outside PlannedWan.forward")
        with state.profiler.section("attention"):
            return self.attend(attn, hidden_states, state)

    def attend(self, attn, hidden_states: torch.Tensor, state: AttentionState) -> torch.Tensor:
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        value = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))

        if state.write_frames:
            with state.profiler.section("reservoir_write"):
                state.reservoir.write(self.layer, state.write_frames, key, value)

        cos, sin = state.rope
        query, key = apply_rope(query, cos, sin), apply_rope(key, cos, sin)
        if state.write_frames:
            with state.profiler.section("reservoir_write"):
                state.reservoir.write_queries(self.layer, state.write_frames, query)
        mask = state.mask
        if state.tokens is not None:
            if mask is not None:
                raise ValueError("an attention mask and a token memory cannot be combined")
            if state.select_tokens and state.tokens.select is not None:
                with state.profiler.section("token_selection"):  # inside "attention", like "reservoir_write"
                    self.reselect(state, query)
            rows = state.reservoir.tokens.get(state.tokens.entry, self.layer)
            tok_k = state.rope_rows(rows.k.to(key.dtype), rows.frame + state.tokens.shift, rows.token)
            if not bool(rows.valid.all()):  # padded rows of some batch row: mask them out
                visible = torch.ones(key.shape[0], key.shape[1], dtype=torch.bool, device=key.device)
                mask = torch.cat([rows.valid, visible], dim=1)[:, None, None, :]
            key = torch.cat([tok_k, key], dim=1)
            value = torch.cat([rows.v.to(value.dtype), value], dim=1)
        if state.memory_frames:
            mem_k, mem_v = state.reservoir.gather(self.layer, state.memory_frames)
            mem_k = apply_rope(mem_k.to(key.dtype), *state.memory_rope)
            key = torch.cat([mem_k, key], dim=1)
            value = torch.cat([mem_v.to(value.dtype), value], dim=1)
            if mask is not None and state.tokens is not None:
                mask = torch.cat([mask.new_ones(*mask.shape[:3], mem_k.shape[1]), mask], dim=-1)

        out = F.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=mask
        )
        out = out.transpose(1, 2).flatten(2, 3).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))

    def reselect(self, state: AttentionState, query: torch.Tensor) -> None:
        """Replace this layer's token memory by its `TokenSelection`, scored with the roped step-1 `query`."""
        select, reservoir = state.tokens.select, state.reservoir
        k, v = reservoir.gather(self.layer, select.frames)
        held = reservoir.tokens.find(select.entry, self.layer)  # older than the frames: first, as in the release
        fresh = TokenRows.of_frames(k, v, list(select.frames))
        pool = fresh if held is None else TokenRows.cat([held, fresh])
        keys = state.rope_rows(pool.k.float(), pool.frame + state.tokens.shift, pool.token)
        query_sum = reservoir.query_sum(self.layer, select.query_frames) + query.float().sum(dim=1)
        budget = select.budget * reservoir.frame_shape[0]
        index, kept = top_tokens(token_scores(query_sum, keys), pool.eligible(select.max_reuse), budget)
        reservoir.tokens.put(select.entry, self.layer, pool.take(index, kept))


class PlannedWan(torch.nn.Module):
    """A `WanTransformer3DModel` whose self-attention follows an `AttentionState` per forward."""

    def __init__(self, transformer: WanTransformer3DModel) -> None:
        super().__init__()
        self.transformer = transformer
        self.slot = StateSlot()
        for i, block in enumerate(transformer.blocks):
            block.attn1.set_processor(PlannedAttnProcessor(i, self.slot))

    @property
    def config(self):
        return self.transformer.config

    def grid(self, height: int, width: int) -> tuple[int, int]:
        _, p_h, p_w = self.config.patch_size
        return height // p_h, width // p_w

    def forward(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        text: torch.Tensor,
        state: AttentionState,
    ) -> torch.Tensor:
        """latents (batch, channels, frames, H, W); timestep (batch,) or (batch, tokens) in [0, 1000]."""
        with state.profiler.section("dit"):
            return self._forward(latents, timestep, text, state)

    def _forward(
        self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, state: AttentionState
    ) -> torch.Tensor:
        rope = self.transformer.rope
        h, w = self.grid(latents.shape[-2], latents.shape[-1])
        if len(state.positions) != latents.shape[2]:
            raise ValueError(f"{len(state.positions)} positions for {latents.shape[2]} frames")
        state.place(rope, h, w, latents.device)
        self.slot.state = state
        try:
            return self.transformer(latents, timestep, text, return_dict=False)[0]
        finally:
            self.slot.state = None
