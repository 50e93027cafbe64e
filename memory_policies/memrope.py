"""MemRoPE as its official code runs it: sinks, a long and a short moving average of evicted frames,
the newest frames, all at block-relative positions (YoungRaeKimm/MemRoPE, `compression_method: ema`).

The cache holds `window` frames: `sink` first frames, the long EMA, the short EMA, `window - sink -
2 - chunk` recent frames and the current chunk, at positions 0, 1, ..., window - 1 in that order.
Until the cache is full the window is dense at absolute positions. At the first chunk that would
overflow it (t0 = window) the chunk of frames right after the sinks' next two is folded into both
averages as their initial value and frames `sink`, `sink + 1` are dropped unseen (the code overwrites
their rows with the averages); from then on each chunk folds the oldest recent chunk into the long
average at `long_rate` and the short one at `short_rate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from .plan import (
    MAX_MEMORY_FRAMES,
    Average,
    Check,
    ConfigError,
    Plan,
    ReservoirView,
    check_int,
    check_number,
    check_text,
    current_chunk,
)

LONG, SHORT = "memrope.long", "memrope.short"
RATE = partial(check_number, low=0.0, high=1.0, low_open=True)


@dataclass
class MemRoPEPolicy:
    window: int = 12
    sink: int = 3
    long_rate: float = 0.01
    short_rate: float = 0.1
    chunk: int = 3
    name: str = "memrope"

    # The type and range of each field, checked here and, before anything is built, by bench.schema.
    FIELDS: ClassVar[dict[str, Check]] = {
        "window": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "sink": partial(check_int, low=0, high=MAX_MEMORY_FRAMES),
        "long_rate": RATE,
        "short_rate": RATE,
        "chunk": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "name": check_text,
    }

    def __post_init__(self) -> None:
        for key, check in self.FIELDS.items():
            check(f"policy.{key}", getattr(self, key))
        least = self.sink + 2 + self.chunk
        if self.window < least:
            raise ConfigError(f"policy.window must be >= sink + 2 + chunk = {least} frames, got {self.window}")
        if self.window % self.chunk:
            # the official code then gives the chunk's queries other positions than its keys
            raise ConfigError(
                f"policy.window must be a multiple of the chunk ({self.chunk} latent frames), got {self.window}"
            )

    @property
    def recent(self) -> int:
        """Frames kept between the averages and the current chunk."""
        return self.window - self.sink - 2 - self.chunk

    def max_frames(self) -> int:
        return self.window

    def _kept(self, t: int) -> tuple[int, ...]:
        """Real frames the chunk at `t` attends: all before it until the cache is full, then sinks + recent."""
        if t < self.window:
            return tuple(range(t))
        return tuple(range(self.sink)) + tuple(range(t - self.recent, t))

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        keep = set(self._kept(t))
        return [f for f in frames if f in keep]

    def plan(self, t: int, view: ReservoirView) -> Plan:
        if t < self.window:
            return Plan(attended=tuple((f, f) for f in range(t)), current=current_chunk(t, self.chunk))
        # The chunk leaving the recent frames: the one after the two rows the averages take, at t0.
        first = self.sink + 2 if t == self.window else t - self.recent - self.chunk
        sources = tuple(range(first, first + self.chunk))
        missing = sorted(set(self._kept(t) + sources) - set(view.frames))
        if missing:
            raise RuntimeError(f"reservoir lacks frames {missing[:8]} that the plan of t={t} needs")
        s, r = self.sink, self.recent
        attended = tuple((f, f) for f in range(s)) + ((LONG, s), (SHORT, s + 1))
        attended += tuple((f, s + 2 + i) for i, f in enumerate(range(t - r, t)))
        current = tuple((f, s + 2 + r + i) for i, f in enumerate(range(t, t + self.chunk)))
        averages = (Average(LONG, sources, self.long_rate), Average(SHORT, sources, self.short_rate))
        return Plan(attended, current, synthesise=averages)
