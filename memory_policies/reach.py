"""How far back in RoPE time a policy makes a video attend, worked out on frame ids before a run.

A model has only seen temporal distances up to its training horizon (Self-Forcing's checkpoints and
the toy: 21 latent frames, positions 0..20, so distances 0..20). relaxbench computes RoPE at any
position, so no policy crashes past the releases' 1024-position table; but a policy whose keys sit
farther from the queries than the horizon asks the model for something it never learnt (the
contiguous-RoPE ablation of relaxed, an unbounded dense window). `first_unseen` finds the first chunk
where that happens by running the policy's own `retain`/`plan` loop on frame ids, as `select()` does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from .plan import MemoryPolicy, Plan, ReservoirView


@dataclass(frozen=True)
class Reach:
    """Chunk `t` is the first whose queries sit `distance` latent frames after its oldest key."""

    t: int
    distance: int


def plan_distance(plan: Plan, token_sources: tuple[int, ...] = (), lookahead: int = 0) -> int:
    """The largest temporal distance from a query of the chunk (and `lookahead` frames after it, where a
    sampler denoises later frames together with the chunk) back to a key: attended entries, the chunk
    itself and token rows whose source frames may be among `token_sources`."""
    keys = plan.positions + plan.current_positions
    if plan.tokens is not None and token_sources:
        keys.append(min(token_sources) + plan.tokens.shift)
    return max(plan.current_positions) + lookahead - min(keys)


def first_unseen(policy: MemoryPolicy, num_latent_frames: int, horizon: int, lookahead: int = 0) -> Reach | None:
    """The first chunk that attends farther back than `horizon - 1` frames under `policy`, or None.

    Frames come and go as `select()` makes them (plan on the reservoir the last chunk left, retain, then
    the chunk's frames are written); key prototypes are all equal, so a scored selection takes its first
    candidates (the distance of a packed layout does not depend on which). A token memory may hold tokens
    of any frame its last `max_reuse` selections considered (a token is dropped unless chosen again)."""
    chunk = policy.chunk
    frames: list[int] = []
    entries: set[str] = set()
    considered: deque[tuple[int, ...]] = deque()
    for t in range(0, num_latent_frames, chunk):
        view = ReservoirView(
            frames=tuple(frames),
            prototypes=lambda ids: torch.ones(len(ids), 1),
            entries=tuple(sorted(entries)),
        )
        plan = policy.plan(t, view)
        if plan.tokens is not None and plan.tokens.select is not None:
            considered.append(plan.tokens.select.frames)
            while len(considered) > plan.tokens.select.max_reuse:
                considered.popleft()
        sources = tuple(f for frames_of in considered for f in frames_of)
        distance = plan_distance(plan, sources, lookahead)
        if distance > horizon - 1:
            return Reach(t, distance)
        entries.update(average.entry for average in plan.synthesise)
        frames = list(policy.retain(frames, t)) + list(range(t, t + chunk))
    return None
