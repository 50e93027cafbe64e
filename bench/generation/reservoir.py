"""The KV reservoir: per layer, preallocated K/V slots holding whole latent frames, keys before RoPE."""

from __future__ import annotations

from typing import Sequence

import torch

from memory_policies import ReservoirView


class KVReservoir:
    """K/V of past latent frames for every self-attention layer, addressed by frame id.

    Keys are stored after q/k-norm and *before* RoPE, so a plan may place a frame at any temporal
    position. Slots are allocated up front for `capacity` frames (or grown in steps when the policy
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
        self.slot_of: dict[int, int] = {}
        self.prototype: dict[int, torch.Tensor] = {}
        self.peak_frames = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    @property
    def frames(self) -> list[int]:
        return sorted(self.slot_of)

    @property
    def bytes_per_frame(self) -> int:
        return 2 * self.num_layers * self.k[0, :, 0].numel() * self.k.element_size()

    @property
    def peak_bytes(self) -> int:
        return self.peak_frames * self.bytes_per_frame

    def keep(self, frames: Sequence[int]) -> None:
        """Evict every frame not in `frames`."""
        keep = set(frames)
        for frame in [f for f in self.slot_of if f not in keep]:
            del self.slot_of[frame]
            self.prototype.pop(frame, None)

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

    def allocate(self, frames: Sequence[int]) -> None:
        """Give each new frame a slot; every layer then writes its K/V there."""
        for frame, slot in zip(frames, self._free_slots(len(frames))):
            self.slot_of[frame] = slot
        self.peak_frames = max(self.peak_frames, len(self.slot_of))

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

    def gather(self, layer: int, frames: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of `frames` in that order, shaped (batch, frames * tokens, heads, head_dim)."""
        slots = torch.tensor([self.slot_of[f] for f in frames], device=self.k.device, dtype=torch.long)
        k = self.k[layer].index_select(1, slots)
        v = self.v[layer].index_select(1, slots)
        return k.flatten(1, 2), v.flatten(1, 2)

    def view(self) -> ReservoirView:
        return ReservoirView(
            frames=tuple(self.frames),
            prototypes=lambda frames: torch.stack([self.prototype[f] for f in frames]),
        )
