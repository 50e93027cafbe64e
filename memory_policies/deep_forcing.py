"""Deep Forcing as the Relax Forcing release adapts it (Table 1's row): a deep sink plus a
token-level compressed memory (participative compression).

The release's cache holds `window` frames' worth of tokens. When the next chunk would overflow it,
its first forward compresses the cache, per layer and batch row, to `capacity` frames' worth: the
`sink` first frames, the `recent` newest (the chunk itself included) and the `capacity - sink -
recent` frames' worth of other tokens that the recent queries score highest, each token chosen at
most `max_reuse` times over the video. Only then are the sinks re-placed, just before the compressed
memory's nominal place; every other key keeps its own frame's position. Chunks in between append.

Here the policy plans on frame ids: which real frames are attended and where, and a `TokenMemory`
whose selection (`TokenSelection`) the attention layers run at the compressing chunk's first
forward. The reservoir holds only real frames; the chosen tokens live in the token memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Sequence

from .plan import (
    MAX_MEMORY_FRAMES,
    Check,
    ConfigError,
    Plan,
    ReservoirView,
    TokenMemory,
    TokenSelection,
    check_int,
    check_text,
    current_chunk,
)

FRAMES = partial(check_int, low=1, high=MAX_MEMORY_FRAMES)


@dataclass
class DeepForcingPolicy:
    sink: int = 10
    window: int = 21
    capacity: int = 16
    recent: int = 4
    max_reuse: int = 7
    chunk: int = 3
    name: str = "deep_forcing"

    ENTRY: ClassVar[str] = "deep_forcing.topc"  # the token memory's name
    # The type and range of each field, checked here and, before anything is built, by bench.schema.
    FIELDS: ClassVar[dict[str, Check]] = {
        "sink": partial(check_int, low=0, high=MAX_MEMORY_FRAMES),
        "window": FRAMES,
        "capacity": FRAMES,
        "recent": FRAMES,
        "max_reuse": partial(check_int, low=0, high=1_000_000),  # 0: no reuse limit, as in the release
        "chunk": FRAMES,
        "name": check_text,
    }

    def __post_init__(self) -> None:
        for key, check in self.FIELDS.items():
            check(f"policy.{key}", getattr(self, key))
        if self.recent < self.chunk:
            raise ConfigError(f"policy.recent must be >= the chunk ({self.chunk} latent frames), got {self.recent}")
        least = self.sink + self.recent
        if self.capacity < least:
            raise ConfigError(f"policy.capacity must be >= policy.sink + policy.recent ({least}), got {self.capacity}")
        if self.capacity > self.window:
            raise ConfigError(f"policy.capacity must be <= policy.window ({self.window}), got {self.capacity}")

    # -- the schedule, on frame ids ------------------------------------------------------------

    @property
    def budget(self) -> int:
        """Frames' worth of tokens kept by a compression besides the sinks and the recent frames."""
        return self.capacity - self.sink - self.recent

    @property
    def first(self) -> int:
        """The first compressing chunk: the first whose frames overflow the `window`."""
        return self.chunk * ((self.window - self.chunk) // self.chunk + 1)

    @property
    def period(self) -> int:
        """Frames between compressions: after one the cache holds `capacity`, and it grows a chunk each chunk."""
        return self.chunk * ((self.window - self.capacity) // self.chunk + 1)

    def compression(self, t: int) -> int | None:
        """The last compressing chunk at or before `t` (None before the first)."""
        if t < self.first:
            return None
        return self.first + (t - self.first) // self.period * self.period

    def recent_from(self, tc: int) -> int:
        """The oldest real frame among the recent ones at compression `tc` (the chunk itself is the rest)."""
        return tc - (self.recent - self.chunk)

    def sink_position(self, tc: int) -> int:
        """Where compression `tc` places the first sink. The release rotates the sinks by
        `window - capacity` at the first compression (21 - capacity in its code, which runs at
        window 21), then by the change of the target `tc - capacity` since: so `window - capacity`
        plus the frames since the first compression (= tc - capacity when that one is at t = window)."""
        return self.window - self.capacity + tc - self.first

    def _oldest_needed(self, t: int) -> int:
        """The oldest non-sink frame chunk `t` reads (attends, or scores at its selection)."""
        tc = self.compression(t)
        if tc is None:
            return 0
        if tc != t:
            return self.recent_from(tc)
        return self.sink if tc == self.first else self.recent_from(tc - self.period)

    def max_frames(self) -> int:
        """Real frames held at most, the chunk being written included (the token memory is apart).
        The schedule is periodic from the first compression on, so two periods past it suffice."""
        horizon = range(0, self.first + 2 * self.period + 1, self.chunk)
        return max(min(self.sink, t) + t - max(self._oldest_needed(t), min(self.sink, t)) for t in horizon) + self.chunk

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        oldest = self._oldest_needed(t)
        return [f for f in frames if f < self.sink or f >= oldest]

    def plan(self, t: int, view: ReservoirView) -> Plan:
        current = current_chunk(t, self.chunk)
        tc = self.compression(t)
        if tc is None:  # the cache has not overflowed yet: Self-Forcing's dense window
            return Plan(attended=tuple((f, f) for f in range(t)), current=current)
        start = self.sink_position(tc)
        sinks = tuple((f, start + f) for f in range(self.sink))
        recent = tuple((f, f) for f in range(self.recent_from(tc), t))
        tokens = None
        if self.budget > 0:
            select = None
            if t == tc:
                select = TokenSelection(
                    entry=self.ENTRY,
                    frames=tuple(range(self._oldest_needed(t), self.recent_from(tc))),
                    budget=self.budget,
                    query_frames=tuple(range(self.recent_from(tc), tc)),
                    max_reuse=self.max_reuse,
                )
            tokens = TokenMemory(entry=self.ENTRY, shift=0, select=select)
        return Plan(attended=sinks + recent, current=current, tokens=tokens)
