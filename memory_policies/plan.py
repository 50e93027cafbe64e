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


Entry = int | str
"""What a plan attends: an int is a real latent frame in the reservoir; a str names a synthesised
entry the policy owns (one frame's worth of rows, stored un-roped, e.g. "memrope.long")."""


@dataclass(frozen=True)
class Average:
    """Synthesised memory: `entry` := the mean of the K (and V) of `sources` over all their frames and
    tokens (per layer, batch row and head), or, when `rate` < 1 and the entry exists already, the
    moving average rate * mean + (1 - rate) * entry. Computed in float32 from the sources' K/V
    before the reservoir evicts them; stored as one frame's worth of rows (the mean on every token)."""

    entry: str
    sources: tuple[int, ...]
    rate: float = 1.0


@dataclass(frozen=True)
class TokenSelection:
    """Re-select a token memory at the chunk's first forward (step 1), per layer and batch row.

    Candidates: every token of `frames` plus the tokens `entry` holds with a reuse count below
    `max_reuse` (0: no limit). Score of a candidate = <sum of that layer's roped query rows over the
    clean passes of `query_frames` and the chunk's step-1 forward, its key roped at its position> /
    (sqrt(head_dim) * heads). The best `budget` frames' worth of tokens (`budget` x tokens per frame
    rows; fewer if fewer are eligible) replace `entry`, in candidate order, each chosen token's
    count + 1.
    """

    entry: str
    frames: tuple[int, ...]
    budget: int
    query_frames: tuple[int, ...]
    max_reuse: int = 0


@dataclass(frozen=True)
class TokenMemory:
    """Attend the token memory `entry` (per layer and batch row: token rows of past frames, un-roped,
    each with its source frame), every token at its source frame's position + `shift`; `select`,
    when set, rebuilds it at this chunk's first forward before anything attends it."""

    entry: str
    shift: int = 0
    select: TokenSelection | None = None


KeptTokens = tuple[tuple[tuple[tuple[int, int], ...], ...], ...]
"""Per batch row, per layer: the (source frame, number of tokens) pairs a token memory holds."""


@dataclass(frozen=True)
class Plan:
    """Which reservoir entries the current chunk attends to, and at which temporal RoPE positions.

    `attended` and `current` are `(entry, position)` pairs in attention order. An entry may appear
    more than once, at different positions. `current` holds the chunk's own frames; their positions
    need not be their absolute indices. `synthesise` lists the entries to (re)compute from frames
    still in the reservoir before it evicts for this chunk. `tokens` is a token memory attended
    besides them (per layer and batch row, re-selected by the attention layers when it says so).
    The other fields are diagnostics for the plan trace: the candidates a policy scored, their
    scores and its choice, and the tokens held after the chunk's first forward.
    """

    attended: tuple[tuple[Entry, int], ...]
    current: tuple[tuple[int, int], ...]
    candidates: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    selected: tuple[int, ...] = ()
    synthesise: tuple[Average, ...] = ()
    tokens: TokenMemory | None = None
    kept_tokens: KeptTokens = ()  # filled by the sampler after the chunk's first forward, for the trace

    @property
    def frames(self) -> list[Entry]:
        return [f for f, _ in self.attended]

    @property
    def positions(self) -> list[int]:
        return [p for _, p in self.attended]

    @property
    def current_positions(self) -> list[int]:
        return [p for _, p in self.current]

    def trace_fields(self, row: int = 0) -> dict:
        """The plan trace's fields for batch row `row` (token memories differ per row)."""
        fields = {
            "attended": [list(a) for a in self.attended],
            "current": [list(c) for c in self.current],
            "candidates": list(self.candidates),
            "scores": [round(float(s), 6) for s in self.scores],
            "selected": list(self.selected),
        }
        if self.synthesise:  # [entry, source frames, rate] per synthesised entry
            fields["synthesise"] = [[a.entry, list(a.sources), a.rate] for a in self.synthesise]
        if self.tokens is not None:  # lists only, like every other field (W&B tables take them as JSON)
            fields["tokens"] = [self.tokens.entry, self.tokens.shift]
            select = self.tokens.select
            if select is not None:  # [frames, budget, query_frames, max_reuse]
                fields["token_selection"] = [
                    list(select.frames), select.budget, list(select.query_frames), select.max_reuse
                ]
            if self.kept_tokens:  # per layer, the [source frame, tokens] pairs held after step 1
                fields["kept_tokens"] = [[list(pair) for pair in layer] for layer in self.kept_tokens[row]]
        return fields


@dataclass(frozen=True)
class ReservoirView:
    """What a policy may read of the reservoir: the ids present and, lazily, key prototypes.

    `frames` are the real latent frames present (sorted), `entries` the synthesised entries present.
    `prototypes(frames)` returns one un-normalised vector per frame (mean of layer-0 pre-RoPE keys
    over tokens and heads, batch element 0); it is only called by policies that score frames.
    """

    frames: tuple[int, ...]
    prototypes: Callable[[Sequence[int]], torch.Tensor] = field(repr=False, default=None)  # type: ignore[assignment]
    entries: tuple[str, ...] = ()


class MemoryPolicy(Protocol):
    """Each chunk the sampler asks `plan` (on the reservoir as the previous chunk left it), then
    computes the plan's synthesised entries, then evicts the frames `retain` does not keep, then
    writes the chunk's K/V. A policy is pure: the same `t` and view give the same plan. It may also
    have a `device_frames()`, read through `device_frames(policy)` below."""

    name: str
    chunk: int

    def max_frames(self) -> int | None:
        """Most entries the reservoir ever holds, the chunk being written and synthesised entries
        included (None: unbounded)."""

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        """Real frames to keep once the chunk starting at latent frame `t` is planned; synthesised
        entries are not evicted here."""

    def plan(self, t: int, view: ReservoirView) -> Plan:
        """The attention plan of the chunk starting at latent frame `t`, made before `retain` evicts."""


def device_frames(policy: MemoryPolicy) -> int | None:
    """How many held entries `policy` needs on the device at once, from its optional `device_frames()`;
    a number makes the sampler keep the rest in host memory (`bench.generation.offload`), None keeps
    everything on the device."""
    method = getattr(policy, "device_frames", None)
    return None if method is None else method()


def current_chunk(t: int, chunk: int) -> tuple[tuple[int, int], ...]:
    """The chunk's own frames at their absolute positions (a policy may place them elsewhere)."""
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
