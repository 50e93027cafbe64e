"""Rolling Sink as its official code runs it (Rolling-Sink/Rolling-Sink): a dense window at absolute
positions whose older frames' content is replaced by frames of a bank, the first window's frames.

Chunk t attends positions max(0, t - bank) .. t - 1, with bank = window - chunk, and its own frames
at t, t + 1, .... After the clean pass of chunk u >= window the code overwrites the rows of the chunk
before it (positions u - chunk .. u - 1) with bank frames, following a ping-pong schedule over
frames 0 .. bank - 1 (backwards, then forwards, each turnaround repeating an end frame). So from
t = window + chunk on, every position but the previous chunk's holds a bank frame: the plan attends
a real frame at a position that is not its own. Only the bank and the previous chunk are held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

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
class RollingSinkPolicy:
    window: int = 21
    chunk: int = 3
    name: str = "rolling_sink"

    # The type and range of each field, checked here and, before anything is built, by bench.schema.
    FIELDS: ClassVar[dict[str, Check]] = {
        "window": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "chunk": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "name": check_text,
    }

    def __post_init__(self) -> None:
        for key, check in self.FIELDS.items():
            check(f"policy.{key}", getattr(self, key))
        if self.window < 2 * self.chunk or self.window % self.chunk:
            raise ConfigError(
                f"policy.window must be a multiple of the chunk ({self.chunk} latent frames) and at least two chunks, "
                f"got {self.window}"
            )

    @property
    def bank(self) -> int:
        """Bank span: frames 0 .. bank - 1 are re-placed."""
        return self.window - self.chunk

    def max_frames(self) -> int:
        return self.bank + 2 * self.chunk  # the bank, the previous chunk and the chunk being written

    def written_by(self, u: int) -> tuple[int, ...]:
        """Bank frames the clean pass of chunk `u` (>= window) writes at positions u - chunk .. u - 1."""
        n, span = self.chunk, self.bank
        rs = u - n
        if (rs // span) % 2:  # a backward block: frames right - 1, right - 2, ...
            right = span - rs % span
            return tuple(range(right - 1, right - 1 - n, -1))
        left = rs % span
        return tuple(range(left, left + n))

    def content(self, position: int, t: int) -> int:
        """The frame chunk `t` finds at `position`: a bank frame once an earlier clean pass wrote it."""
        block = position - position % self.chunk
        if block >= self.bank and block + self.chunk < t:
            return self.written_by(block + self.chunk)[position - block]
        return position

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        return [f for f in frames if f < self.bank or f >= t - self.chunk]

    def plan(self, t: int, view: ReservoirView) -> Plan:
        attended = tuple((self.content(p, t), p) for p in range(max(0, t - self.bank), t))
        missing = sorted({f for f, _ in attended} - set(view.frames))
        if missing:
            raise RuntimeError(f"reservoir lacks frames {missing[:8]} that the plan of t={t} needs")
        return Plan(attended, current_chunk(t, self.chunk))
