"""Self-Forcing's dense sliding window: the last `window - chunk` frames at absolute positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .plan import ConfigError, Plan, ReservoirView, check_int, current_chunk


@dataclass
class DensePolicy:
    """FIFO window of `window` latent frames, the current chunk included; `window=None` is unbounded."""

    window: int | None = 21
    chunk: int = 3
    name: str = "dense"

    def __post_init__(self) -> None:
        check_int("policy.chunk", self.chunk, 1)
        if self.window is not None:
            check_int("policy.window", self.window, 1)
            if self.window < self.chunk:
                raise ConfigError(
                    f"policy.window must be >= the chunk ({self.chunk} latent frames), got {self.window}"
                )

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
