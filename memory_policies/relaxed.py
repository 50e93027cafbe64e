"""Relax Forcing as released, and the sink / tail / attention-sink presets of the same structure.

Memory = `sink` first frames + `history` frames selected from the middle of the reservoir +
`tail` newest frames, then the current chunk. The candidate arithmetic runs on frame ids of the
release's `reservoir`-frame buffer; `store` decides which frames' K/V are actually held:
`release` holds the whole buffer, `attendable` (the default) only the frames a present or future
plan can use, `offload` the same frames but only a plan's worth of them on the device, the rest in
host memory (`device_frames`).
`selection` is the release's `hist_position_idx`: `scored` (-2, the paper), `uniform` (-1) or
`fixed` (k = `fixed_index` >= 0). `positions: relative` shifts every position of a chunk by one
constant so the earliest is 0 (Infinity-RoPE's block-relative indices); RoPE sees only differences.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import numpy as np
import torch

from .plan import (
    MAX_MEMORY_FRAMES,
    Check,
    ConfigError,
    Plan,
    ReservoirView,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_text,
    current_chunk,
)

FRAMES = partial(check_int, low=0, high=MAX_MEMORY_FRAMES)


@dataclass(frozen=True)
class Layout:
    """The id arithmetic of one chunk, before any scoring."""

    warmup: bool
    buffer: tuple[int, ...]  # the release's reservoir at planning time (eviction already applied)
    sinks: tuple[int, ...]
    middle: tuple[int, ...]
    tail: tuple[int, ...]
    pool: tuple[int, ...]  # the scored candidates, or (when not `scored`) the history itself
    scored: bool = False

    def referenced(self) -> tuple[int, ...]:
        """Every frame this chunk's plan may attend to."""
        if self.warmup:
            return self.buffer
        return tuple(sorted(set(self.sinks + self.pool + self.tail)))


def uniform_points(length: int, count: int) -> list[int]:
    """The release's uniform placement: int(linspace(0, length - 1, count + 2)) without its two ends."""
    return [int(x) for x in np.linspace(0, length - 1, count + 2).astype(int)[1:-1]]


@dataclass
class RelaxedPolicy:
    sink: int = 2
    history: int = 1
    tail: int = 1
    candidates: int = 4
    lam: float = 2.0
    reservoir: int = 120
    rope: str = "hybrid"
    warmup: bool = True
    selection: str = "scored"
    fixed_index: int = 0
    store: str = "attendable"
    positions: str = "absolute"
    chunk: int = 3
    name: str = "relaxed"

    # The type and range of each field, checked here and, before anything is built, by bench.schema.
    FIELDS: ClassVar[dict[str, Check]] = {
        "sink": FRAMES,
        "history": FRAMES,
        "tail": FRAMES,
        "candidates": FRAMES,
        "lam": partial(check_number, low=-1000.0, high=1000.0),
        "reservoir": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "rope": partial(check_choice, allowed=("hybrid", "contiguous")),
        "warmup": check_bool,
        "selection": partial(check_choice, allowed=("scored", "uniform", "fixed")),
        "fixed_index": FRAMES,
        "store": partial(check_choice, allowed=("release", "attendable", "offload")),
        "positions": partial(check_choice, allowed=("absolute", "relative")),
        "chunk": partial(check_int, low=1, high=MAX_MEMORY_FRAMES),
        "name": check_text,
    }

    def __post_init__(self) -> None:
        for key, check in self.FIELDS.items():
            check(f"policy.{key}", getattr(self, key))
        if self.selection == "scored" and self.history > self.candidates:
            raise ConfigError(
                f"policy.history must be <= policy.candidates ({self.candidates}) with selection=scored, "
                f"got {self.history}"
            )
        if self.selection == "fixed" and self.history and self.fixed_index >= self.history:
            raise ConfigError(
                f"policy.fixed_index must be < policy.history ({self.history}) with selection=fixed, "
                f"got {self.fixed_index}"
            )
        budget = self.sink + self.history + self.tail + self.chunk
        if budget > self.reservoir:
            raise ConfigError(
                f"policy.reservoir must hold sink + history + tail + chunk = {budget} frames, got {self.reservoir}"
            )

    # -- id arithmetic -------------------------------------------------------------------------

    def max_frames(self) -> int:
        """Peak frames held, the chunk being written included; reached by the steady state.

        Computed from one layout per chunk of the first two buffers' worth of frames (the same
        horizon a simulation of `retain` needs), so its cost grows with `reservoir` squared at most.
        """
        if self.store == "release":  # the buffer fills up to its steady size and stays there
            return max(self.reservoir - self.chunk, self.sink) + self.chunk
        horizon = range(0, 2 * self.reservoir + 2 * self.chunk, self.chunk)
        oldest = self._oldest_needed_each(horizon)
        return max(min(self.sink, t) + max(0, t - max(oldest[t], self.sink)) for t in horizon) + self.chunk

    def device_frames(self) -> int | None:
        """With `store=offload`, the device slots the reservoir needs (None: every held frame on the
        device): one chunk's plan, the chunk being written, and the next chunk's plan fetched ahead
        during that chunk's clean pass. A bound over the same horizon as `max_frames`: the frames of
        two consecutive layouts that are not selected history, plus the history each may attend."""
        if self.store != "offload":
            return None
        horizon = range(0, 2 * self.reservoir + 2 * self.chunk, self.chunk)
        return max(self._resident(t) for t in horizon)

    def _resident(self, t: int) -> int:
        here, ahead = self.layout(t), self.layout(t + self.chunk)
        fixed = set(self._fixed(here)) | set(self._fixed(ahead)) | set(range(t, t + self.chunk))
        return len(fixed) + self._selected(here) + self._selected(ahead)

    @staticmethod
    def _fixed(layout: Layout) -> tuple[int, ...]:
        """The frames a plan of `layout` attends whatever the scores."""
        return layout.buffer if layout.warmup else layout.sinks + layout.tail

    def _selected(self, layout: Layout) -> int:
        """How many history frames a plan of `layout` attends (at most)."""
        if layout.warmup:
            return 0
        return min(self.history, len(layout.pool)) if layout.scored else len(layout.pool)

    def layout(self, t: int) -> Layout:
        # The release writes (and evicts for) the chunk before it selects: `reservoir - chunk`
        # slots are left for the past, sinks first, then the newest frames that fit.
        room = max(self.reservoir - self.chunk - self.sink, 0)
        sinks = tuple(range(min(self.sink, t)))
        recent = tuple(range(max(self.sink, t - room), t))
        buffer = sinks + recent
        # The release counts one history frame in the warm-up whatever `history` is.
        slot = len(buffer)
        if self.warmup and slot <= self.sink + 1 + self.tail:
            return Layout(True, buffer, sinks, (), (), ())
        tail = recent[len(recent) - min(self.tail, len(recent)):]
        middle = recent[: len(recent) - len(tail)]
        return Layout(False, buffer, sinks, middle, tail, *self._pool(middle))

    def _pool(self, middle: tuple[int, ...]) -> tuple[tuple[int, ...], bool]:
        """The frames the history comes from, and whether they are to be scored (else they are it).

        As the release's `hist_position_idx` branches do, except that `history = 0` attends none
        (the release still attends one middle frame in `scored` mode when M <= 1 or C = 1).
        """
        m = len(middle)
        if self.history == 0:
            return (), False
        if self.selection == "scored":
            if m <= 1:  # the release attends the whole middle region
                return middle, False
            start = m // 2  # the later half; C points of a linspace, the last one dropped
            count = min(self.candidates, m - start)
            if count == 1:  # the release returns the single offset `start` at once, unscored
                return (middle[start],), False
            offsets = np.unique(np.linspace(start, m - 1, count + 1).astype(int))[:-1]
            return tuple(middle[o] for o in offsets), True
        if m < self.history:  # fewer middle frames than history: all of them, or one uniform point
            if self.selection == "uniform":
                return middle, False
            points = uniform_points(m, m)
            return ((middle[points[min(self.fixed_index, len(points) - 1)]],) if points else ()), False
        points = uniform_points(m, self.history)  # may repeat a frame when m is small, as the release does
        if self.selection == "uniform":
            return tuple(middle[o] for o in points), False
        return (middle[points[self.fixed_index]],), False

    def _oldest_referenced(self, t: int) -> int:
        """Oldest non-sink frame the plan of `t` may reference (`t` when none)."""
        return min((f for f in self.layout(t).referenced() if f >= self.sink), default=t)

    def _oldest_needed(self, t: int) -> int:
        """Oldest non-sink frame the plan of `t` or any later plan can reference.

        Layouts depend on `t` alone. Before the release's buffer is full a plan may reference
        older frames than an earlier one did (the linspace may yield no candidate one chunk and
        an old one the next), so every chunk up to the first full-buffer one is looked at; from
        then on each layout is the previous one shifted by a chunk, so later plans only move on.
        """
        full = self.reservoir - self.chunk  # the first t whose buffer starts at t - room
        return min(self._oldest_referenced(u) for u in range(t, max(t, full) + self.chunk, self.chunk))

    def _oldest_needed_each(self, ts: range) -> dict[int, int]:
        """`_oldest_needed(t)` for every t of the chunk grid `ts` (from 0), from one layout per chunk."""
        full = self.reservoir - self.chunk
        grid = range(0, max(ts.stop, full + self.chunk), self.chunk)
        oldest, later = {}, math.inf
        for t in reversed(grid):  # before full + chunk: the least over this and every later layout
            here = self._oldest_referenced(t)
            later = min(later, here) if t < full + self.chunk else math.inf
            oldest[t] = int(min(later, here))
        return {t: oldest[t] for t in ts}

    def retain(self, frames: Sequence[int], t: int) -> list[int]:
        if self.store == "release":
            keep = set(self.layout(t).buffer)
            return [f for f in frames if f in keep]
        oldest = self._oldest_needed(t)
        return [f for f in frames if f < self.sink or f >= oldest]

    # -- planning ------------------------------------------------------------------------------

    def plan(self, t: int, view: ReservoirView) -> Plan:
        layout = self.layout(t)
        missing = sorted(set(layout.referenced()) - set(view.frames))
        if missing:
            raise RuntimeError(f"reservoir lacks frames {missing[:8]} that the plan of t={t} needs")
        current = current_chunk(t, self.chunk)
        if layout.warmup:
            return self._placed(Plan(attended=tuple((f, f) for f in layout.buffer), current=current))

        scores: tuple[float, ...] = ()
        history = layout.pool
        if layout.scored:
            scores = self._scores(layout, view)
            top = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[: self.history]
            history = tuple(sorted(layout.pool[i] for i in top))

        packed = layout.sinks + history
        if self.rope == "hybrid":
            first = t - len(layout.tail) - len(packed)
            attended = tuple((f, first + i) for i, f in enumerate(packed))
        else:
            attended = tuple((f, f) for f in packed)
        attended += tuple((f, f) for f in layout.tail)
        return self._placed(Plan(attended, current, layout.pool, scores, history))

    def _placed(self, plan: Plan) -> Plan:
        """`positions: relative`: every position less the earliest one (attended or current)."""
        if self.positions == "absolute":
            return plan
        shift = min(plan.positions + plan.current_positions)
        return dataclasses.replace(
            plan,
            attended=tuple((f, p - shift) for f, p in plan.attended),
            current=tuple((f, p - shift) for f, p in plan.current),
        )

    def _scores(self, layout: Layout, view: ReservoirView) -> tuple[float, ...]:
        """r(h) = cos(h, sinks) - lam * cos(h, tail) on L2-normalised key prototypes."""
        cand = torch.nn.functional.normalize(view.prototypes(layout.pool).float(), dim=-1)
        score = torch.zeros(len(layout.pool))
        if layout.sinks:
            sink = torch.nn.functional.normalize(view.prototypes(layout.sinks).float().mean(0), dim=-1)
            score += cand @ sink
        if layout.tail:
            tail = torch.nn.functional.normalize(view.prototypes(layout.tail).float().mean(0), dim=-1)
            score -= self.lam * (cand @ tail)
        return tuple(score.tolist())
