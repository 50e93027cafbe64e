"""Self-Forcing's dense sliding window: the last `window - chunk` frames at absolute positions."""

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
    check_int,
    check_text,
    current_chunk,
)


@dataclass
class DensePolicy:
    """FIFO window of `window` latent frames, the current chunk included; `window=None` is unbounded."""

    window: int | None = 21
    chunk: int = 3
    name: str = "dense"

    # The type and range of each field, checked here and, before anything is built, by bench.schema.
    FIELDS: ClassVar[dict[str, Check]] = {
        "window": partial(check_int, low=1, high=MAX_MEMORY_FRAMES, nullable=True),
        "chunk": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "name": check_text,
    }

    def __post_init__(self) -> None:
        for key, check in self.FIELDS.items():
            check(f"policy.{key}", getattr(self, key))
        if self.window is not None and self.window < self.chunk:
            raise ConfigError(f"policy.window must be >= the chunk ({self.chunk} latent frames), got {self.window}")

    def _memory(self) -> int | None:
        return None if self.window is None else self.window - self.chunk

    def max_frames(self) -> int | None:
        return self.window

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        memory = self._memory()
        return [f for f in frames if memory is None or f >= t - memory]

    def plan(self, t: int, view: ReservoirView) -> Plan:
        kept = self.retain(sorted(view.frames), t)
        return Plan(attended=tuple((f, f) for f in kept if f < t), current=current_chunk(t, self.chunk))
