"""Rolling Sink against policies.md section 3: the worked examples, the bank schedule, and a
row-by-row model of the official cache over random sizes."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generation.reservoir import KVReservoir
from bench.generation.sampler import ARSampler, select
from bench.perf.profiler import Profiler
from memory_policies import ConfigError, DensePolicy, ReservoirView, RollingSinkPolicy


def plans(policy: RollingSinkPolicy, num_frames: int) -> dict:
    """Plans through a real (tiny) reservoir with the sampler's `select`; raises if a frame is missing."""
    reservoir = KVReservoir(1, 1, 1, 1, 1, capacity=policy.max_frames())
    out = {}
    for t in range(0, num_frames, policy.chunk):
        out[t] = select(policy, reservoir, t, Profiler(enabled=False))
        reservoir.allocate(range(t, t + policy.chunk))
    assert reservoir.peak_frames == min(policy.max_frames(), num_frames)
    return out


def test_worked_examples():
    p = plans(RollingSinkPolicy(), 45)
    # 1. t = 24: 6..17 themselves, 18 <- 17, 19 <- 16, 20 <- 15, 21..23 real
    assert p[24].attended == tuple((f, f) for f in range(6, 18)) + ((17, 18), (16, 19), (15, 20)) + tuple(
        (f, f) for f in range(21, 24)
    )
    # 2. t = 39: 21 <- 14, 22 <- 13, ..., 35 <- 0, 36..38 real
    assert p[39].attended == tuple(zip(range(14, -1, -1), range(21, 36))) + ((36, 36), (37, 37), (38, 38))
    # 3. t = 42: 24 <- 11, ..., 35 <- 0, 36 <- 0, 37 <- 1, 38 <- 2, 39..41 real
    assert p[42].attended == tuple(zip(range(11, -1, -1), range(24, 36))) + tuple(zip((0, 1, 2), (36, 37, 38))) + (
        (39, 39), (40, 40), (41, 41)
    )
    for t in (24, 39, 42):
        assert p[t].current == ((t, t), (t + 1, t + 1), (t + 2, t + 2))


def test_identical_to_the_dense_window_until_t_24():
    dense = DensePolicy(window=21)
    for t, plan in plans(RollingSinkPolicy(), 24).items():
        assert plan == dense.plan(t, ReservoirView(tuple(range(t))))


def test_bank_schedule_period_36():
    p = RollingSinkPolicy()
    schedule = {u: p.written_by(u) for u in range(21, 60, 3)}
    assert schedule == {
        21: (17, 16, 15), 24: (14, 13, 12), 27: (11, 10, 9), 30: (8, 7, 6), 33: (5, 4, 3), 36: (2, 1, 0),
        39: (0, 1, 2), 42: (3, 4, 5), 45: (6, 7, 8), 48: (9, 10, 11), 51: (12, 13, 14), 54: (15, 16, 17),
        57: (17, 16, 15),
    }


def official_rows(window: int, chunk: int, num_frames: int):
    """The official rule on a list of (content frame, position) rows: FIFO to `window` rows at the
    chunk's first forward; after the clean pass of a chunk u >= window the previous chunk's rows take
    the next `chunk` frames of the bank's ping-pong stream (bank-1 .. 0, 0 .. bank-1, repeated)."""
    bank = window - chunk
    stream = itertools.cycle(list(range(bank - 1, -1, -1)) + list(range(bank)))
    rows: list[tuple[int, int]] = []
    for t in range(0, num_frames, chunk):
        if len(rows) + chunk > window:
            del rows[:chunk]
        yield t, list(rows)
        rows += [(f, f) for f in range(t, t + chunk)]
        if t >= window:
            for i in range(len(rows) - 2 * chunk, len(rows) - chunk):
                rows[i] = (next(stream), rows[i][1])


@settings(max_examples=30, deadline=None)
@given(chunk=st.integers(1, 4), chunks=st.integers(2, 9))
def test_plans_follow_the_official_rows(chunk, chunks):
    policy = RollingSinkPolicy(window=chunk * chunks, chunk=chunk)
    num_frames = 4 * policy.window + 5 * chunk  # past two turnarounds of the bank
    planned = plans(policy, num_frames)
    for t, rows in official_rows(policy.window, chunk, num_frames):
        plan = planned[t]
        assert plan.attended == tuple(rows)
        assert len(set(plan.attended)) == len(plan.attended)
        assert all(pos < t for pos in plan.positions) and plan.current_positions == list(range(t, t + chunk))
        assert all(f < policy.bank for f, pos in plan.attended if pos < t - chunk and t > policy.window)


@pytest.mark.parametrize("kwargs", [{"window": 20}, {"window": 3}, {"window": 0}, {"window": "21"}])
def test_bad_window_names_the_field(kwargs):
    with pytest.raises(ConfigError, match="policy.window") as err:
        RollingSinkPolicy(**kwargs)
    assert "\n" not in str(err.value)


def test_toy_model_runs_past_the_first_bank_turnaround(random_toy):
    text = random_toy.encode_text(["a red square moving fast"])
    policy = RollingSinkPolicy(window=9)  # bank 0..5; turnarounds at chunk 15 and 21
    video, reservoir = ARSampler(steps=[1000]).generate(random_toy, policy, text, 27, torch.Generator().manual_seed(0))
    assert torch.isfinite(video).all() and reservoir.peak_frames == policy.max_frames() == 12
