"""MemRoPE against policies.md section 4: hand-computed plans and moving averages through the real
reservoir, and a row-by-row model of the official cache over random sizes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generation.reservoir import KVReservoir
from bench.generation.sampler import ARSampler, select
from bench.perf.profiler import Profiler
from memory_policies import ConfigError, MemRoPEPolicy

LONG, SHORT = "memrope.long", "memrope.short"
TOKENS, HEADS, DIM = 2, 2, 3


def stream(policy: MemRoPEPolicy, num_frames: int, keys, layers: int = 1):
    """The sampler's protocol on a real reservoir: `select`, then write the chunk's K (V = -K).

    `keys(frame)` gives one frame's K, shaped (layers, 1, TOKENS, HEADS, DIM). Yields (t, plan, reservoir)
    after each chunk is written."""
    reservoir = KVReservoir(layers, 1, TOKENS, HEADS, DIM, capacity=policy.max_frames())
    for t in range(0, num_frames, policy.chunk):
        plan = select(policy, reservoir, t, Profiler(enabled=False))
        frames = list(range(t, t + policy.chunk))
        reservoir.allocate(frames)
        k = torch.cat([keys(f) for f in frames], dim=2)
        for layer in range(layers):
            reservoir.write(layer, frames, k[layer], -k[layer])
        yield t, plan, reservoir


def entry_value(reservoir: KVReservoir, entry: str) -> torch.Tensor:
    k, v = reservoir.gather(0, [entry])
    assert torch.equal(v, -k)  # V went through the same average
    assert torch.equal(k, k[:, :1].expand_as(k))  # one vector per head on every token
    return k[0, 0]


def test_worked_examples_with_the_scalar_stand_in():
    """K = f on every token of frame f: the averages are 6, 6.03, 6.0897 (long) and 6, 6.3, 6.87 (short)."""
    expected = {12: (6.0, 6.0, range(8, 12)), 15: (6.03, 6.3, range(11, 15)), 18: (6.0897, 6.87, range(14, 18))}
    for t, plan, reservoir in stream(MemRoPEPolicy(), 21, lambda f: torch.full((1, 1, TOKENS, HEADS, DIM), float(f))):
        if t < 12:
            assert plan.attended == tuple((f, f) for f in range(t)) and plan.current_positions == [t, t + 1, t + 2]
            assert not reservoir.entries
            continue
        assert plan.attended[:5] == ((0, 0), (1, 1), (2, 2), (LONG, 3), (SHORT, 4))
        assert plan.current == ((t, 9), (t + 1, 10), (t + 2, 11))
        assert reservoir.peak_frames <= 12
        if t in expected:
            long, short, recent = expected[t]
            assert plan.attended[5:] == tuple(zip(recent, range(5, 9)))
            for name, value in ((LONG, long), (SHORT, short)):
                expected_value = torch.full((HEADS, DIM), value)
                torch.testing.assert_close(entry_value(reservoir, name), expected_value, rtol=0, atol=1e-5)
    assert reservoir.frames == [0, 1, 2] + list(range(14, 21)) and reservoir.entries == [LONG, SHORT]
    assert reservoir.peak_frames == 12


def test_frames_3_and_4_never_enter_the_memory():
    # t = 12 folds frames 5, 6, 7 (mean 6); t = 15 folds 8, 9, 10
    plans = {t: plan for t, plan, _ in stream(MemRoPEPolicy(), 18, lambda f: torch.zeros(1, 1, TOKENS, HEADS, DIM))}
    assert [a.sources for a in plans[12].synthesise] == [(5, 6, 7)] * 2
    assert [a.sources for a in plans[15].synthesise] == [(8, 9, 10)] * 2
    assert plans[15].trace_fields()["synthesise"] == [[LONG, [8, 9, 10], 0.01], [SHORT, [8, 9, 10], 0.1]]
    assert not plans[9].synthesise and "synthesise" not in plans[9].trace_fields()


def official_rows(window: int, sink: int, chunk: int, rates: tuple[float, float], num_frames: int, keys):
    """The official rule on a list of cache rows (one per frame), in float64: when the chunk would
    overflow, the `chunk` rows after the two average rows leave and are averaged (the first time the
    averages overwrite rows `sink`, `sink + 1`); then the chunk is appended. Yields (t, rows, averages)."""
    rows: list = []
    averages: dict[str, torch.Tensor] = {}
    for t in range(0, num_frames, chunk):
        if len(rows) + chunk > window:
            leaving = rows[sink + 2 : sink + 2 + chunk]
            mean = torch.stack([keys(f).double() for f in leaving]).mean(dim=(0, 3))  # frames, tokens
            if not averages:
                averages = {LONG: mean, SHORT: mean}
                rows[sink : sink + 2] = [LONG, SHORT]
            else:
                averages = {name: rate * mean + (1 - rate) * averages[name] for name, rate in zip((LONG, SHORT), rates)}
            del rows[sink + 2 : sink + 2 + chunk]
        rows += list(range(t, t + chunk))
        yield t, list(rows), dict(averages)


@settings(max_examples=25, deadline=None)
@given(
    chunk=st.integers(1, 4),
    sink=st.integers(0, 4),
    spare_chunks=st.integers(1, 4),
    long_rate=st.sampled_from([0.01, 0.3, 1.0]),
    short_rate=st.sampled_from([0.1, 0.5]),
    extra=st.integers(0, 2),
)
def test_plans_and_averages_follow_the_official_rows(chunk, sink, spare_chunks, long_rate, short_rate, extra):
    # the smallest multiple of the chunk that holds sinks + 2 averages + a chunk, plus `extra` chunks
    window = chunk * (-(-(sink + 2) // chunk) + spare_chunks + extra)
    policy = MemRoPEPolicy(window=window, sink=sink, long_rate=long_rate, short_rate=short_rate, chunk=chunk)
    bank = {}

    def keys(f: int) -> torch.Tensor:
        if f not in bank:
            bank[f] = torch.randn(2, 1, TOKENS, HEADS, DIM, generator=torch.Generator().manual_seed(f))
        return bank[f]

    num_frames = window + 6 * chunk
    reference = official_rows(window, sink, chunk, (long_rate, short_rate), num_frames, keys)
    for (t, plan, reservoir), (_, rows, averages) in zip(stream(policy, num_frames, keys, layers=2), reference):
        labels = plan.frames + [f for f, _ in plan.current]
        assert labels == rows and plan.positions + plan.current_positions == list(range(len(rows)))
        assert len(set(plan.attended)) == len(plan.attended)
        assert len(rows) <= window and reservoir.peak_frames <= policy.max_frames()
        for name, value in averages.items():
            for layer in range(2):
                k, v = reservoir.gather(layer, [name])
                torch.testing.assert_close(k[0, 0].double(), value[layer, 0], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(v[0, -1].double(), -value[layer, 0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"window": 6}, "policy.window"),  # < sink 3 + 2 + chunk 3
        ({"window": 13}, "policy.window"),  # not a multiple of the chunk
        ({"sink": -1}, "policy.sink"),
        ({"long_rate": 0.0}, "policy.long_rate"),
        ({"short_rate": 1.5}, "policy.short_rate"),
        ({"short_rate": True}, "policy.short_rate"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field) as err:
        MemRoPEPolicy(**kwargs)
    assert "\n" not in str(err.value)


def test_toy_model_attends_the_averages(random_toy):
    """Through the sampler and the attention processor: the averages are gathered like frames, and
    the K/V peak is MemRoPE's 12-frame cache."""
    traces = []
    text = random_toy.encode_text(["a red square moving fast"])
    video, reservoir = ARSampler(steps=[1000]).generate(
        random_toy, MemRoPEPolicy(), text, 18, torch.Generator().manual_seed(0),
        trace=lambda chunk, t, plan: traces.append(plan.trace_fields()),
    )
    assert torch.isfinite(video).all()
    assert reservoir.entries == [LONG, SHORT] and reservoir.peak_frames == 12
    assert [LONG, 3] in traces[-1]["attended"] and traces[-1]["current"] == [[15, 9], [16, 10], [17, 11]]
