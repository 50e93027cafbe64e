"""The contract between a memory policy and the sampler: a `Plan` per chunk, a `ReservoirView` to plan from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import torch


class ConfigError(ValueError):
    """A config value is out of range; the message is one line naming the field and what is allowed."""


@dataclass(frozen=True)
class Plan:
    """Which reservoir frames the current chunk attends to, and at which temporal RoPE positions.

    `attended` and `current` are `(frame, position)` pairs in attention order. The other fields are
    diagnostics for the plan trace: the candidates a policy scored, their scores and its choice.
    """

    attended: tuple[tuple[int, int], ...]
    current: tuple[tuple[int, int], ...]
    candidates: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    selected: tuple[int, ...] = ()

    @property
    def frames(self) -> list[int]:
        return [f for f, _ in self.attended]

    @property
    def positions(self) -> list[int]:
        return [p for _, p in self.attended]

    @property
    def current_positions(self) -> list[int]:
        return [p for _, p in self.current]

    def trace_fields(self) -> dict:
        return {
            "attended": [list(a) for a in self.attended],
            "current": [list(c) for c in self.current],
            "candidates": list(self.candidates),
            "scores": [round(float(s), 6) for s in self.scores],
            "selected": list(self.selected),
        }


@dataclass(frozen=True)
class ReservoirView:
    """What a policy may read of the reservoir: the frame ids present and, lazily, key prototypes.

    `prototypes(frames)` returns one un-normalised vector per frame (mean of layer-0 pre-RoPE keys
    over tokens and heads, batch element 0); it is only called by policies that score frames.
    """

    frames: tuple[int, ...]
    prototypes: Callable[[Sequence[int]], torch.Tensor] = field(repr=False, default=None)  # type: ignore[assignment]


class MemoryPolicy(Protocol):
    name: str
    chunk: int

    def max_frames(self) -> int | None:
        """Most frames the reservoir ever holds, the chunk being written included (None: unbounded)."""

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        """Frames to keep before the chunk starting at latent frame `t` is planned and written."""

    def plan(self, t: int, view: ReservoirView) -> Plan:
        """The attention plan of the chunk starting at latent frame `t`."""


def current_chunk(t: int, chunk: int) -> tuple[tuple[int, int], ...]:
    """The chunk's own frames, always at their absolute positions."""
    return tuple((f, f) for f in range(t, t + chunk))


def check_int(name: str, value: object, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value  # type: ignore[return-value]
