"""`store=offload`: a KV reservoir whose device pool holds only what the chunk in flight needs.

Two pools. The device pool (the `KVReservoir` arrays, `device_frames` slots) holds the frames the
current plan attends, the chunk being written and the frames fetched ahead for the next plan; the
host pool (pinned memory on CUDA) holds every frame the policy retains, written once per frame.

- Write-back: when the clean pass's last layer has written the chunk, each of its frames is copied
  device to host. A device slot whose copy may still be running is free for the bookkeeping, but
  the compute waits for that copy before writing into it again.
- Fetch-ahead: when layer 0 of the clean pass has written the chunk's K/V (and its key prototypes),
  the reservoir already looks as the next `select` will see it, and the policy is pure, so the next
  plan (of the chunk right after the one written) is computed there and its frames not on the device are copied host to device while the
  other layers compute. `attend` (called by `select`) checks the prediction against the real plan;
  a frame that did not arrive ahead (a wrong prediction, or no free slot) is fetched then, and waited for.

Only three things run on CUDA alone: `StreamCopier` (a side stream, events, `non_blocking` copies),
the pinned host slabs and the device pool's `record_stream`. On CPU `SyncCopier` copies at once and
both pools are in host memory; the bookkeeping above is the same code on both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from memory_policies import Plan, ReservoirView
from memory_policies.plan import Entry

from .reservoir import KVReservoir, Synthesised

Planner = Callable[[int, ReservoirView], Plan]
# torch's pinned allocator rounds every block up to a power of two (a 9 GB pool would take 16 GiB):
# slabs of whole frames of at most 1 GiB waste less than one frame each.
SLAB_BYTES = 1 << 30


def host_pool(capacity: int, frame_shape: Sequence[int], dtype: torch.dtype, pinned: bool) -> list[torch.Tensor]:
    """`capacity` host slots of `frame_shape`, in slabs of at most `SLAB_BYTES` (one frame when larger);
    slot s is frame s % per_slab of slab s // per_slab, each frame one contiguous block."""
    per_slab = max(1, SLAB_BYTES // (math.prod(frame_shape) * dtype.itemsize))
    return [
        torch.zeros((min(per_slab, capacity - start), *frame_shape), dtype=dtype, pin_memory=pinned)
        for start in range(0, capacity, per_slab)
    ]


Pairs = Sequence[tuple[torch.Tensor, torch.Tensor]]  # (destination, source)


class Copier(Protocol):
    """Moves K/V between the pools beside the compute."""

    def copy(self, pairs: Pairs) -> Any:
        """`dst.copy_(src)` for each pair once the compute queued so far is done; a handle for `wait`."""

    def wait(self, handle: Any) -> None:
        """Make the compute that follows wait for the copy of `handle` (None: nothing to wait for)."""


class SyncCopier:
    """Copies at once: the CPU path, where both pools are in host memory."""

    def copy(self, pairs: Pairs) -> None:
        for dst, src in pairs:
            dst.copy_(src)

    def wait(self, handle: None) -> None:
        pass


class StreamCopier:
    """Copies on a side CUDA stream, each ordered after the work queued so far on the current stream;
    the current stream waits for a copy through its event, so neither side blocks the host."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def copy(self, pairs: Pairs) -> torch.cuda.Event:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for dst, src in pairs:
                dst.copy_(src, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        return event

    def wait(self, handle: torch.cuda.Event | None) -> None:
        if handle is not None:
            torch.cuda.current_stream(self.device).wait_event(handle)


class OffloadReservoir(KVReservoir):
    """A `KVReservoir` whose arrays are the device pool (`device_frames` slots, `slot_of` = the frames
    on the device) over a host pool of `capacity` frames (`host_slot`); it holds the union of both."""

    def __init__(
        self,
        num_layers: int,
        batch: int,
        tokens_per_frame: int,
        heads: int,
        head_dim: int,
        capacity: int,
        device_frames: int,
        planner: Planner,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        copier: Copier | None = None,
    ) -> None:
        super().__init__(num_layers, batch, tokens_per_frame, heads, head_dim, device_frames, dtype, device)
        cuda = torch.device(device).type == "cuda"
        shape = (num_layers, batch, *self.frame_shape)  # a frame's K (or V), contiguous in its slab
        self.host_k, self.host_v = (host_pool(capacity, shape, dtype, pinned=cuda) for _ in "kv")
        self.host_capacity = capacity
        self.host_slot: dict[int, int] = {}
        self.copier = copier or (StreamCopier(torch.device(device)) if cuda else SyncCopier())
        if isinstance(self.copier, StreamCopier):  # its stream uses the device pool until the reservoir is freed
            self.k.record_stream(self.copier.stream)
            self.v.record_stream(self.copier.stream)
        self.planner = planner
        self.arriving: dict[int, Any] = {}  # frame -> its host-to-device copy, waited for before it is read
        self.leaving: dict[int, Any] = {}  # device slot -> the last copy using it, waited for before it is written
        self.predicted: Plan | None = None
        self.prefetch: Counter[str] = Counter()  # hits, misses (fetched when attended), mispredictions
        self._device_peak = 0

    @property
    def frames(self) -> list[int]:
        """The frames held in either pool, sorted."""
        return sorted(set(self.host_slot) | {e for e in self.slot_of if isinstance(e, int)})

    @property
    def device_peak_frames(self) -> int:
        return self._device_peak

    def _count(self) -> None:
        self.peak_frames = max(self.peak_frames, len(self.frames))
        self._device_peak = max(self._device_peak, len(self.slot_of))

    def keep(self, frames: Sequence[int]) -> None:
        keep = set(frames)
        for frame in [f for f in self.frames if f not in keep]:
            self.host_slot.pop(frame, None)
            if frame in self.slot_of:
                self._release(frame)
            self.prototype.pop(frame, None)
            self.query_sums.pop(frame, None)

    def _release(self, frame: int) -> None:
        slot = self.slot_of.pop(frame)
        if frame in self.arriving:  # fetched but never read: its copy still owns the slot
            self.leaving[slot] = self.arriving.pop(frame)

    def allocate(self, frames: Sequence[Entry]) -> None:
        """Device slots for the chunk the clean pass writes, once the copies using them are done."""
        for frame, slot in zip(frames, self._free_slots(len(frames))):
            self.copier.wait(self.leaving.pop(slot, None))
            self.slot_of[frame] = slot
        self._count()

    def store(self, values: Synthesised) -> None:
        if values:
            raise RuntimeError("store=offload holds real frames only, not synthesised entries")

    def write(self, layer: int, frames: Sequence[int], k: torch.Tensor, v: torch.Tensor) -> None:
        super().write(layer, frames, k, v)
        if layer == 0:  # the prototypes are in: the next select will see this very view
            self.predicted = self.planner(frames[-1] + 1, self.view())
            self._fetch_ahead(self.predicted)
        if layer == self.num_layers - 1:
            self._write_back(frames)

    def _fetch_ahead(self, plan: Plan) -> None:
        wanted = [f for f in dict.fromkeys(plan.frames) if f not in self.slot_of]
        free = self.capacity - len(self.slot_of)
        if len(wanted) <= free:  # otherwise `attend` fetches them
            self._fetch(wanted)

    def _pairs(self, slot: int, host: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(device, host) views of one frame's K and V, layer by layer: each a contiguous block when
        the batch is 1, so a copy needs no staging tensor on the device."""
        per_slab = self.host_k[0].shape[0]
        pairs = []
        for device, pool in ((self.k, self.host_k), (self.v, self.host_v)):
            frame = pool[host // per_slab][host % per_slab]
            pairs += [(device[layer, :, slot], frame[layer]) for layer in range(self.num_layers)]
        return pairs

    def _fetch(self, frames: Sequence[int]) -> None:
        for frame, slot in zip(frames, self._free_slots(len(frames))):
            self.arriving[frame] = self.copier.copy(self._pairs(slot, self.host_slot[frame]))
            self.leaving.pop(slot, None)  # one copier orders copies: the new one comes after it
            self.slot_of[frame] = slot
        self._count()

    def _write_back(self, frames: Sequence[int]) -> None:
        used = set(self.host_slot.values())
        free = [s for s in range(self.host_capacity) if s not in used]
        if len(free) < len(frames):
            raise RuntimeError(
                f"host pool full: {len(used)} of {self.host_capacity} frames used, {len(frames)} more asked for"
            )
        for frame, host in zip(frames, free):
            slot = self.slot_of[frame]
            self.leaving[slot] = self.copier.copy([(h, d) for d, h in self._pairs(slot, host)])
            self.host_slot[frame] = host

    def attend(self, plan: Plan) -> None:
        """Make the device pool hold exactly `plan`'s frames (the chunk is allocated by the clean pass)."""
        if self.predicted is not None and self.predicted != plan:
            self.prefetch["mispredictions"] += 1
        self.predicted = None
        needed = list(dict.fromkeys(plan.frames))
        for frame in [f for f in self.slot_of if f not in needed]:
            self._release(frame)
        missing = [f for f in needed if f not in self.slot_of]
        self.prefetch["hits"] += sum(f in self.arriving for f in needed)
        self.prefetch["misses"] += len(missing)
        self._fetch(missing)
        for frame in needed:
            self.copier.wait(self.arriving.pop(frame, None))

    def gather(self, layer: int, frames: Sequence[Entry]) -> tuple[torch.Tensor, torch.Tensor]:
        absent = [f for f in frames if f not in self.slot_of]
        if absent:
            raise RuntimeError(
                f"store=offload: frames {absent[:8]} are not on the device; it holds the frames of the "
                "chunk's plan (select) and the chunk being written"
            )
        return super().gather(layer, frames)
