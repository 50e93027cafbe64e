"""The contract between a memory policy and the sampler: a `Plan` per chunk, a `ReservoirView` to plan from."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import NoReturn, Protocol

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


# Bounds a user cannot exceed, so that no size makes a run hang or allocate without limit.
MAX_MEMORY_FRAMES = 1024  # a policy's or chunk's latent frames: Wan's RoPE table (256 s); 0.3 GB of K/V each on 1.3B
SHOWN_CHARS = 60  # a bad value is quoted in an error up to this many characters

Check = Callable[[str, object], object]
"""Checks one config value: returns it, or raises a ConfigError naming the field `name`."""


def shown(value: object) -> str:
    """`repr(value)`, capped so that an error stays one short line."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _fail(name: str, allowed: str, value: object) -> NoReturn:
    raise ConfigError(f"{name} must be {allowed}, got {shown(value)}")


def check_int(name: str, value: object, low: int = 0, high: int | None = None, nullable: bool = False) -> int:
    if value is None and nullable:
        return value  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer >= {low}" + ("" if high is None else f" and <= {high}") + (" or null" if nullable else "")
        _fail(name, allowed, value)
    return value


def check_number(name: str, value: object, low: float, high: float, low_open: bool = False) -> float:
    """A finite real number in [low, high] (or (low, high] when `low_open`); booleans are not numbers."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value > high or value < low or (low_open and value == low):  # type: ignore[operator]
        _fail(name, f"a finite number in {'(' if low_open else '['}{low:g}, {high:g}]", value)
    return value  # type: ignore[return-value]


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        _fail(name, "true or false", value)
    return value  # type: ignore[return-value]


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {shown(value)}")
    return value


def check_text(name: str, value: object, max_chars: int = 200, nullable: bool = False) -> str:
    """A non-empty single-line string (a name, a path) of at most `max_chars` characters."""
    if value is None and nullable:
        return value  # type: ignore[return-value]
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars or any(c in value for c in "\n\r\0"):
        allowed = f"a non-empty one-line string of at most {max_chars} characters" + (" or null" if nullable else "")
        _fail(name, allowed, value)
    return value


def check_fields(prefix: str, values: Mapping[str, object], fields: Mapping[str, Check], extra: Sequence[str] = ()) -> None:
    """Every key of `values` is a field (or one of `extra`, e.g. `_target_`) and every field present passes its check."""
    for key in values:
        if key not in fields and key not in extra:
            raise ConfigError(f"{prefix}.{key} is not a field of {prefix}; the fields are: {', '.join(fields)}")
    for key, check in fields.items():
        if key in values:
            check(f"{prefix}.{key}", values[key])


def check_timesteps(name: str, value: object) -> list[int]:
    """A denoising schedule: a non-empty, strictly decreasing list of integer timesteps in [1, 1000]."""
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
    ok = ok and all(
        isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 1000 for s in value  # type: ignore[union-attr]
    )
    if not ok or any(a <= b for a, b in pairwise(value)):  # type: ignore[index,arg-type]
        _fail(name, "a non-empty, strictly decreasing list of integers in [1, 1000]", value)
    return list(value)  # type: ignore[arg-type]
