"""The KV reservoir: per layer, preallocated K/V slots of one latent frame's worth each, keys before RoPE."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from memory_policies import Plan, ReservoirView
from memory_policies.plan import Average, Entry

from .token_memory import TokenStore

Synthesised = dict[str, tuple[torch.Tensor, torch.Tensor]]  # entry -> per-head K, V (layers, batch, heads, head_dim)


class KVReservoir:
    """K/V of past latent frames for every self-attention layer, addressed by entry: a frame id
    (int) or the name of an entry a policy synthesised (str, e.g. a moving average of evicted frames).

    Keys are stored after q/k-norm and *before* RoPE, so a plan may place an entry at any temporal
    position. Slots are allocated up front for `capacity` entries (or grown in steps when the policy
    is unbounded). The per-frame key prototype a scoring policy needs (layer-0 keys averaged over
    tokens and heads, batch element 0) is computed once, when the frame is written.
    """

    def __init__(
        self,
        num_layers: int,
        batch: int,
        tokens_per_frame: int,
        heads: int,
        head_dim: int,
        capacity: int | None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_layers = num_layers
        self.batch = batch
        self.frame_shape = (tokens_per_frame, heads, head_dim)
        self.bounded = capacity is not None
        slots = capacity if capacity is not None else 24
        self.k = torch.zeros((num_layers, batch, slots, *self.frame_shape), dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.slot_of: dict[Entry, int] = {}
        self.prototype: dict[int, torch.Tensor] = {}
        # per frame: the sum of its roped query rows in its clean pass, (layers, batch, heads, head_dim) float32
        self.query_sums: dict[int, torch.Tensor] = {}
        self.tokens = TokenStore(num_layers)  # token memories; counted in the peak in frames' worth of bytes
        # per layer, the cross-attention K/V of the video's prompts (wan_attention.TextAttnProcessor)
        self.text_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        # per timestep values, the condition embedder's output for the video's prompts (wan_attention.PlannedWan)
        self.conditions: dict[tuple[float, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.peak_frames = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    @property
    def frames(self) -> list[int]:
        """The real latent frames present, sorted."""
        return sorted(e for e in self.slot_of if isinstance(e, int))

    @property
    def entries(self) -> list[str]:
        """The synthesised entries present, sorted."""
        return sorted(e for e in self.slot_of if isinstance(e, str))

    @property
    def bytes_per_frame(self) -> int:
        return 2 * self.num_layers * self.k[0, :, 0].numel() * self.k.element_size()

    @property
    def peak_bytes(self) -> int:
        return self.peak_frames * self.bytes_per_frame

    @property
    def device_peak_frames(self) -> int:
        """The most frames' worth of K/V on the reservoir's device at once: all it holds, here."""
        return self.peak_frames

    def attend(self, plan: Plan) -> None:
        """Ready `plan`'s entries for `gather`; a reservoir holding everything on its device is."""

    def keep(self, frames: Sequence[int]) -> None:
        """Evict every real frame not in `frames`; synthesised entries stay."""
        keep = set(frames)
        for frame in [f for f in self.frames if f not in keep]:
            del self.slot_of[frame]
            self.prototype.pop(frame, None)
            self.query_sums.pop(frame, None)

    def _free_slots(self, count: int) -> list[int]:
        used = set(self.slot_of.values())
        free = [s for s in range(self.capacity) if s not in used]
        if len(free) < count:
            if self.bounded:
                raise RuntimeError(
                    f"KV reservoir full: {len(used)} of {self.capacity} slots used, {count} more asked for; "
                    "the policy's retain() must leave room for the chunk"
                )
            grow = max(count - len(free), self.capacity)
            self.k = torch.cat([self.k, torch.zeros_like(self.k[:, :, :grow])], dim=2)
            self.v = torch.cat([self.v, torch.zeros_like(self.v[:, :, :grow])], dim=2)
            free += list(range(self.capacity - grow, self.capacity))
        return free[:count]

    def allocate(self, frames: Sequence[Entry]) -> None:
        """Give each new entry a slot; every layer then writes its K/V there."""
        for frame, slot in zip(frames, self._free_slots(len(frames))):
            self.slot_of[frame] = slot
        tokens = -(-self.tokens.nbytes // self.bytes_per_frame)  # frames' worth, rounded up
        self.peak_frames = max(self.peak_frames, len(self.slot_of) + tokens)

    def write(self, layer: int, frames: Sequence[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Store one layer's K/V, shaped (batch, frames * tokens, heads, head_dim), for `frames`."""
        slots = torch.tensor([self.slot_of[f] for f in frames], device=self.k.device)
        shape = (self.batch, len(frames), *self.frame_shape)
        self.k[layer][:, slots] = k.reshape(shape).to(self.k.dtype)
        self.v[layer][:, slots] = v.reshape(shape).to(self.v.dtype)
        if layer == 0:
            means = k.reshape(shape)[0].float().mean(dim=(1, 2))  # (frames, head_dim)
            for frame, mean in zip(frames, means):
                self.prototype[frame] = mean

    def averaged(self, averages: Sequence[Average]) -> Synthesised:
        """The new per-head K/V of each `Average`, in float32, from source frames present now.

        Computed before eviction (the sources may be about to leave) and stored after it by `store`,
        so that the peak never counts an entry and the frames it replaces together.
        """
        values: Synthesised = {}
        for average in averages:
            missing = sorted(set(average.sources) - set(self.frames))
            if missing or not average.sources:
                raise RuntimeError(f"synthesising {average.entry!r}: reservoir lacks source frames {missing[:8]}")
            slots = torch.tensor([self.slot_of[f] for f in average.sources], device=self.k.device)
            new = []
            for cache in (self.k, self.v):
                mean = cache.index_select(2, slots).float().mean(dim=(2, 3))  # over frames and tokens
                if average.rate != 1 and average.entry in self.slot_of:
                    old = cache[:, :, self.slot_of[average.entry], 0].float()
                    mean = average.rate * mean + (1 - average.rate) * old
                new.append(mean)
            values[average.entry] = (new[0], new[1])
        return values

    def store(self, values: Synthesised) -> None:
        """Write synthesised entries (from `averaged`), each as one frame's worth of rows: the
        per-head vector on every token. A new entry takes a free slot."""
        self.allocate([entry for entry in values if entry not in self.slot_of])
        for entry, (k, v) in values.items():
            slot = self.slot_of[entry]
            self.k[:, :, slot] = k.unsqueeze(2).to(self.k.dtype)
            self.v[:, :, slot] = v.unsqueeze(2).to(self.v.dtype)

    def gather(self, layer: int, frames: Sequence[Entry]) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of `frames` (frame ids or entry names) in that order, shaped
        (batch, frames * tokens, heads, head_dim)."""
        slots = torch.tensor([self.slot_of[f] for f in frames], device=self.k.device, dtype=torch.long)
        k = self.k[layer].index_select(1, slots)
        v = self.v[layer].index_select(1, slots)
        return k.flatten(1, 2), v.flatten(1, 2)

    def write_queries(self, layer: int, frames: Sequence[int], q: torch.Tensor) -> None:
        """Record one layer's roped queries (batch, frames * tokens, heads, head_dim) of `frames`,
        summed over each frame's tokens (a token-level policy scores with them later)."""
        sums = q.unflatten(1, (len(frames), -1)).float().sum(dim=2)  # (batch, frames, heads, head_dim)
        for i, frame in enumerate(frames):
            if frame not in self.query_sums:
                self.query_sums[frame] = sums.new_zeros(self.num_layers, *sums[:, i].shape)
            self.query_sums[frame][layer] = sums[:, i]

    def query_sum(self, layer: int, frames: Sequence[int]) -> torch.Tensor:
        """The summed roped queries of `frames` in one layer, (batch, heads, head_dim) float32."""
        missing = [f for f in frames if f not in self.query_sums]
        if missing:
            raise RuntimeError(f"no clean-pass queries recorded for frames {missing[:8]}")
        zero = torch.zeros_like(self.k[layer, :, 0, 0], dtype=torch.float32)
        return sum((self.query_sums[f][layer] for f in frames), zero)

    def view(self) -> ReservoirView:
        return ReservoirView(
            frames=tuple(self.frames),
            prototypes=lambda frames: torch.stack([self.prototype[f] for f in frames]),
            entries=tuple(self.entries),
        )
