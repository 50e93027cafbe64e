"""Planned self-attention for diffusers' `WanTransformer3DModel`.

Every `attn1` of the DiT gets a `PlannedAttnProcessor`. For one forward the sampler (or the
trainer) hands `PlannedWan` an `AttentionState` (a sampler makes it from the chunk's `Plan`,
`AttentionState.planned`): the temporal RoPE position of each input frame, the memory frames to read
from the KV reservoir with their planned positions, whether to write the input's K/V into the
reservoir (the clean pass), and an optional boolean mask. Spatial RoPE is Wan's as usual; temporal
RoPE is applied at the planned positions, so keys live in the reservoir without RoPE.

A chunk's plan, and so every gathered and re-roped memory key, is the same in all its forwards (the
denoising steps and the clean pass, which writes new frames into free slots only). A sampler hands
all of them one `PreparedMemory`: each layer gathers and ropes its memory (`MemoryKV`) in the
chunk's first forward and reuses it in the others, with bit-identical results.

The cross-attention (`TextAttnProcessor`) is diffusers' for text-only Wan, except that each layer's
text keys and values are computed once per video and kept in the reservoir; the condition
embedder's output is kept there too, per timestep value (`PlannedWan.conditions`). A clean pass,
whose output nobody reads, ends at the last layer's K/V write (`AttentionState.output`).

A plan's token memory (`Plan.tokens`) is attended after the memory frames, each token row at its
source frame's position + the plan's shift, per batch row; at the chunk's first forward
(`select_tokens`) each layer first re-selects it from its own queries (`token_memory`). The clean
pass also records, per frame and layer, the sum of its roped queries for those selections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache, partial
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

RopeTable = torch.Tensor  # complex (1, tokens, 1, head_dim // 2): `rope_tables`


@dataclass
class AttentionState:
    positions: Sequence[int]  # temporal RoPE position of each input (latent) frame
    memory_frames: Sequence[int] = ()
    memory_positions: Sequence[int] = ()
    reservoir: KVReservoir | None = None
    write_frames: Sequence[int] = ()  # frame ids under which the input's K/V are stored (clean pass)
    output: bool = True  # False: nobody reads the output; the forward ends once the last layer stored its K/V
    mask: torch.Tensor | None = None  # (queries, keys) boolean, True = attend
    tokens: TokenMemory | None = None  # a token memory to attend (after the memory frames)
    select_tokens: bool = False  # the chunk's first forward: run the token memory's selection first
    prepared: PreparedMemory | None = field(default=None, repr=False)  # the chunk's memory K/V; None: rebuilt per forward
    rope: RopeTable | None = field(default=None, repr=False)
    rope_at: Callable[[tuple[int, ...]], RopeTable] | None = field(default=None, repr=False)
    # times "dit", "attention", "reservoir_write", "token_selection", "memory_kv", "kernel"; the default is disabled
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

    def place(
        self,
        rope: torch.nn.Module,
        height: int,
        width: int,
        device: torch.device,
        input_tables: Callable[..., RopeTable] | None = None,
    ) -> None:
        """Build the RoPE tables of the input once per forward for all layers (with `input_tables`, a
        cached `rope_tables`, once while the positions stay the same); the memory's are built when a
        layer first needs them (not at all once a prepared memory holds every layer)."""
        self.rope = (input_tables or rope_tables)(rope, tuple(self.positions), height, width, device)
        self.rope_at = memoised(partial(rope_tables, rope, height=height, width=width, device=device))

    def rope_rows(self, x: torch.Tensor, positions: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        """Rotate token rows x (batch, n, heads, head_dim): row (b, i) is token `token[b, i]` of a
        frame at temporal position `positions[b, i]`."""
        unique, inverse = torch.unique(positions, return_inverse=True)
        freqs = self.rope_at(tuple(unique.tolist()))
        index = inverse * (freqs.shape[1] // len(unique)) + token
        return apply_rope(x, freqs[0][index])


def memoised(build: Callable[[tuple[int, ...]], RopeTable]) -> Callable[[tuple[int, ...]], RopeTable]:
    """`build` computed once per distinct positions (layers of one forward often share them)."""
    tables: dict[tuple[int, ...], RopeTable] = {}

    def at(positions: tuple[int, ...]) -> RopeTable:
        if positions not in tables:
            tables[positions] = build(positions)
        return tables[positions]

    return at


def rope_tables(
    rope: torch.nn.Module, frame_positions: Sequence[int], height: int, width: int, device: torch.device
) -> torch.Tensor:
    """Wan's 3D RoPE for frames at arbitrary temporal positions: one complex rotation cos + i sin per
    channel pair, shaped (1, tokens, 1, head_dim // 2), complex64.

    Built with diffusers' own 1D table function, so positions 0..F-1 hold `WanRotaryPosEmbed`'s
    (cos, sin) pairs exactly.
    """
    pos_t = torch.tensor(list(frame_positions), dtype=torch.float64)
    parts = []
    for dim, pos in ((rope.t_dim, pos_t), (rope.h_dim, torch.arange(height)), (rope.w_dim, torch.arange(width))):
        cos, sin = get_1d_rotary_pos_embed(dim, pos, 10000.0, use_real=True, freqs_dtype=torch.float64)
        parts.append(torch.complex(cos[:, 0::2], sin[:, 1::2]))  # the tables repeat each value per pair
    frames, grid = len(pos_t), (len(pos_t), height, width)
    t_tab = parts[0].view(frames, 1, 1, -1).expand(*grid, -1)
    h_tab = parts[1].view(1, height, 1, -1).expand(*grid, -1)
    w_tab = parts[2].view(1, 1, width, -1).expand(*grid, -1)
    return torch.cat([t_tab, h_tab, w_tab], dim=-1).reshape(1, -1, 1, rope.attention_head_dim // 2).to(device)


def apply_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x (batch, tokens, heads, head_dim) by the complex `freqs`,
    in float32, as Wan does: pair (a, b) is a + ib, and (a + ib)(cos + i sin) gives diffusers'
    a cos - b sin and a sin + b cos bit for bit, in one operation instead of a dozen."""
    pairs = torch.view_as_complex(x.float().contiguous().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * freqs).flatten(-2).type_as(x)


@dataclass(frozen=True)
class MemoryKV:
    """One layer's memory ready to attend: the planned entries' keys roped at their positions, then
    the token memory's rows, and their values, (batch, rows, heads, head_dim) in the keys' dtype."""

    key: torch.Tensor
    value: torch.Tensor
    valid: torch.Tensor | None  # (batch, rows) bool, False on a token memory's padding; None: all rows real

    @property
    def nbytes(self) -> int:
        return self.key.nbytes + self.value.nbytes


class PreparedMemory:
    """The memory K/V of one chunk's plan, per layer: built by the chunk's first forward, reused by
    the others. A new plan needs a new object. Each layer added records the bytes held so far in
    `profiler` (`Profiler.record_prepared`)."""

    def __init__(self, profiler: Profiler | None = None) -> None:
        self.layers: dict[int, MemoryKV] = {}
        self.profiler = profiler

    def put(self, layer: int, memory: MemoryKV) -> None:
        self.layers[layer] = memory
        if self.profiler is not None:
            self.profiler.record_prepared(self.nbytes)

    @property
    def nbytes(self) -> int:
        return sum(memory.nbytes for memory in self.layers.values())


def joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """`parts` concatenated along the rows (dim 1), without a copy when there is one."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SDPA over (batch, rows, heads, head_dim) query/key/value; the output in that layout."""
    out = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def projected(attn, out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`attn`'s output projection of the heads `out` (batch, rows, heads, head_dim), taken to `dtype` first."""
    return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).to(dtype)))


class StateSlot:
    """Shared by all processors of one model: the state of the forward in flight."""

    state: AttentionState | None = None


class KVWritten(Exception):
    """Raised by the last layer of a forward whose state wants no output, once its K/V are stored:
    the rest of that layer and the output head would compute what nobody reads."""


class PlannedAttnProcessor:
    def __init__(self, layer: int, slot: StateSlot, last: bool = False) -> None:
        self.layer = layer
        self.slot = slot
        self.last = last  # the model's last layer

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

        query, key = apply_rope(query, state.rope), apply_rope(key, state.rope)
        if state.write_frames:
            with state.profiler.section("reservoir_write"):
                state.reservoir.write_queries(self.layer, state.write_frames, query)
            if self.last and not state.output:
                raise KVWritten
        mask = state.mask
        selected = False
        if state.tokens is not None:
            if mask is not None:
                raise ValueError("an attention mask and a token memory cannot be combined")
            if state.select_tokens and state.tokens.select is not None:
                with state.profiler.section("token_selection"):  # inside "attention", like "reservoir_write"
                    self.reselect(state, query)
                selected = True
        memory = self.memory(state, key.dtype, selected)
        if memory is not None:
            if memory.valid is not None:  # padded token rows of some batch row: mask them out
                visible = torch.ones(key.shape[0], key.shape[1], dtype=torch.bool, device=key.device)
                mask = torch.cat([memory.valid, visible], dim=1)[:, None, None, :]
            key = torch.cat([memory.key, key], dim=1)
            value = torch.cat([memory.value, value], dim=1)

        with state.profiler.section("kernel"):  # inside "attention": the part that grows with the keys attended
            out = sdpa(query, key, value, mask)
        return projected(attn, out, query.dtype)

    def memory(self, state: AttentionState, dtype: torch.dtype, selected: bool = False) -> MemoryKV | None:
        """This layer's memory under the state's plan (None if it has none): the chunk's prepared one,
        else gathered and roped now, and prepared for the chunk's other forwards. A layer whose token
        memory was just `selected` again builds it anew."""
        if not state.memory_frames and state.tokens is None:
            return None
        prepared = state.prepared
        if prepared is not None and not selected and self.layer in prepared.layers:
            return prepared.layers[self.layer]
        with state.profiler.section("memory_kv"):  # inside "attention"
            memory = self.gather_memory(state, dtype)
        if prepared is not None:
            prepared.put(self.layer, memory)
        return memory

    def gather_memory(self, state: AttentionState, dtype: torch.dtype) -> MemoryKV:
        """The planned entries gathered from the reservoir and roped at their planned positions, then
        the token memory's rows roped at their source frames' positions + the shift, in `dtype`."""
        keys, values, valid = [], [], None
        if state.memory_frames:
            k, v = state.reservoir.gather(self.layer, state.memory_frames)
            keys.append(apply_rope(k.to(dtype), state.rope_at(tuple(state.memory_positions))))
            values.append(v.to(dtype))
        if state.tokens is not None:
            rows = state.reservoir.tokens.get(state.tokens.entry, self.layer)
            if not bool(rows.valid.all()):
                entries = rows.valid.new_ones(rows.valid.shape[0], sum(part.shape[1] for part in keys))
                valid = torch.cat([entries, rows.valid], dim=1)
            keys.append(state.rope_rows(rows.k.to(dtype), rows.frame + state.tokens.shift, rows.token))
            values.append(rows.v.to(dtype))
        return MemoryKV(joined(keys), joined(values), valid)

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


class TextAttnProcessor:
    """Cross-attention to the prompts, computed as diffusers' `WanAttnProcessor` does for text-only
    Wan, with each layer's text keys and values computed once per video: the prompts do not change
    while a video is generated, so a forward whose state has a reservoir (one per video) takes them
    from `reservoir.text_kv`, filled by its first forward (Self-Forcing's release caches them too).
    Without a reservoir (training, a bare forward) they are computed every time."""

    def __init__(self, layer: int, slot: StateSlot) -> None:
        self.layer = layer
        self.slot = slot

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        query = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))
        reservoir = None if self.slot.state is None else self.slot.state.reservoir
        cached = None if reservoir is None else reservoir.text_kv.get(self.layer)
        if cached is None:
            key = attn.norm_k(attn.to_k(encoder_hidden_states)).unflatten(2, (attn.heads, -1))
            cached = key, attn.to_v(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            if reservoir is not None:
                reservoir.text_kv[self.layer] = cached
        elif cached[0].shape[0] != query.shape[0]:
            raise RuntimeError(f"the reservoir holds text K/V of {cached[0].shape[0]} prompts, the forward has {query.shape[0]}")
        return projected(attn, sdpa(query, *cached, attention_mask), query.dtype)


class PlannedWan(torch.nn.Module):
    """A text-to-video `WanTransformer3DModel` whose self-attention follows an `AttentionState` per
    forward.

    The forward is diffusers' `WanTransformer3DModel.forward` written out with diffusers' own
    modules (tested equal to it), minus what a planned forward does not need or has already
    computed: diffusers' RoPE tables (the planned processors build their own, and the input's once
    for as long as its positions stay the same), and, within a video (a state with a reservoir), the
    condition embedder's output for timestep values it has seen.
    """

    def __init__(self, transformer: WanTransformer3DModel) -> None:
        super().__init__()
        if transformer.condition_embedder.image_embedder is not None:
            raise ValueError("PlannedWan runs text-to-video Wan; this transformer is image-conditioned (image_dim)")
        self.transformer = transformer
        self.slot = StateSlot()
        self.input_rope = lru_cache(maxsize=1)(rope_tables)  # the denoising steps of a chunk share positions
        for i, block in enumerate(transformer.blocks):
            block.attn1.set_processor(PlannedAttnProcessor(i, self.slot, last=i == len(transformer.blocks) - 1))
            block.attn2.set_processor(TextAttnProcessor(i, self.slot))

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
    ) -> torch.Tensor | None:
        """latents (batch, channels, frames, H, W); timestep (batch,) or (batch, tokens) in [0, 1000].
        The output has the latents' shape; None for a state with `output=False` that writes K/V."""
        with state.profiler.section("dit"):
            return self._forward(latents, timestep, text, state)

    def _forward(
        self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, state: AttentionState
    ) -> torch.Tensor | None:
        model = self.transformer
        batch, _, frames, height, width = latents.shape
        h, w = self.grid(height, width)
        if len(state.positions) != frames:
            raise ValueError(f"{len(state.positions)} positions for {frames} frames")
        if not state.output and not state.write_frames:
            raise ValueError("a forward without output must write K/V (write_frames)")
        state.place(model.rope, h, w, latents.device, self.input_rope)
        x = model.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        temb, modulation, context = self.conditions(timestep, text, state.reservoir)
        self.slot.state = state
        try:
            for block in model.blocks:
                x = block(x, context, modulation, None)
        except KVWritten:
            return None
        finally:
            self.slot.state = None

        temb = temb if temb.ndim == 3 else temb.unsqueeze(1)  # (batch, tokens or 1, dim)
        shift, scale = (model.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).unbind(2)
        x = model.proj_out((model.norm_out(x.float()) * (1 + scale) + shift).type_as(x))
        p_t, p_h, p_w = self.config.patch_size
        x = x.reshape(batch, frames // p_t, h, w, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def conditions(
        self, timestep: torch.Tensor, text: torch.Tensor, reservoir: KVReservoir | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The condition embedder's time embedding, the blocks' modulation input (batch, [tokens,] 6,
        dim) and the embedded text. A video (one reservoir, one set of prompts) computes them once per
        timestep value (`reservoir.conditions`; reading the values synchronises a GPU once per
        forward); per-token timesteps, and forwards without a reservoir, compute them every time."""
        per_token = timestep.ndim == 2
        key = None if reservoir is None or per_token else tuple(timestep.tolist())
        if key is not None and key in reservoir.conditions:
            return reservoir.conditions[key]
        temb, timestep_proj, context, _ = self.transformer.condition_embedder(
            timestep.flatten(), text, None, timestep_seq_len=timestep.shape[1] if per_token else None
        )
        if key is not None and reservoir.conditions:  # the video's prompts, embedded already: hold them once
            context = next(iter(reservoir.conditions.values()))[2]
        embedded = temb, timestep_proj.unflatten(-1, (6, -1)), context
        if key is not None:
            reservoir.conditions[key] = embedded
        return embedded
