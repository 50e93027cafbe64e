"""Memory policies against plans computed by hand from the release's rules (shared/reference)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.run import build
from memory_policies import ConfigError, DensePolicy, RelaxedPolicy, ReservoirView

CONF = Path(__file__).resolve().parent.parent / "conf"


def view_of(frames, protos=None) -> ReservoirView:
    """A view whose prototypes come from a dict frame -> vector (default: a random vector per frame id)."""
    frames = tuple(frames)
    if protos is None:
        protos = {f: torch.randn(8, generator=torch.Generator().manual_seed(f)) for f in frames}
    return ReservoirView(frames, lambda fs: torch.stack([protos[f] for f in fs]))


def simulate(policy, num_frames: int, chunk: int = 3):
    """Run plan/retain as the sampler does; yields (t, frames present after eviction, plan)."""
    present: list[int] = []
    for t in range(0, num_frames, chunk):
        plan = policy.plan(t, view_of(present))
        present = policy.retain(present, t)
        yield t, list(present), plan
        present = present + list(range(t, t + chunk))


# -- relaxed: the release's worked examples --------------------------------------------------


def test_warmup_chunks_attend_densely_at_absolute_positions():
    p = RelaxedPolicy()
    assert p.plan(0, view_of([])).attended == ()
    plan = p.plan(3, view_of([0, 1, 2]))
    assert plan.attended == ((0, 0), (1, 1), (2, 2))
    assert plan.current == ((3, 3), (4, 4), (5, 5))
    assert plan.candidates == ()


def test_t6_single_candidate_frame_3_packed_before_tail():
    plan = RelaxedPolicy().plan(6, view_of(range(6)))
    assert plan.candidates == (3,)
    assert plan.selected == (3,)
    # sinks -> t-4, t-3; history -> t-2; tail 5 at its own position t-1
    assert plan.attended == ((0, 2), (1, 3), (3, 4), (5, 5))
    assert plan.current == ((6, 6), (7, 7), (8, 8))


def test_t9_candidates_5_and_6():
    assert RelaxedPolicy().plan(9, view_of(range(9))).candidates == (5, 6)


def test_t12_candidates_6_to_9_and_scored_choice():
    # Prototypes built so r(h) = cos(h, sink) - 2 cos(h, tail) is largest for frame 8.
    e = torch.eye(4)
    protos = {f: e[0] for f in range(12)}
    protos.update({0: e[1], 1: e[1], 11: e[2], 6: e[2], 7: e[3], 8: e[1] + e[3], 9: e[2] + e[1]})
    plan = RelaxedPolicy().plan(12, view_of(range(12), protos))
    assert plan.candidates == (6, 7, 8, 9)
    expected = [0 - 2 * 1, 0 - 0, 1 / math.sqrt(2), 1 / math.sqrt(2) - 2 / math.sqrt(2)]
    assert plan.scores == pytest.approx(expected, abs=1e-6)
    assert plan.selected == (8,)
    assert plan.attended == ((0, 8), (1, 9), (8, 10), (11, 11))


def test_lambda_changes_the_choice():
    e = torch.eye(3)
    # frame 6 is close to the sinks but also to the tail; frame 7 is neutral-ish.
    protos = {f: e[2] for f in range(12)}
    protos.update({0: e[0], 1: e[0], 11: e[1], 6: e[0] + e[1], 7: e[0] * 0.2 + e[2]})
    chosen = {}
    for lam in (0.0, 2.0):
        chosen[lam] = RelaxedPolicy(lam=lam).plan(12, view_of(range(12), protos)).selected
    assert chosen[0.0] == (6,)  # stability alone: the frame most like the sinks
    assert chosen[2.0] == (7,)  # with redundancy: frame 6 repeats the tail and loses


def test_steady_state_at_capacity_120():
    p = RelaxedPolicy(store="release")
    t = 240
    present = p.retain(range(t), t)
    assert present == [0, 1] + list(range(t - 115, t))  # sinks + newest 115 (chunk's 3 slots evicted first)
    plan = p.plan(t, view_of(present))
    assert plan.candidates == (t - 58, t - 44, t - 30, t - 16)
    assert len(plan.attended) == 4
    assert plan.attended[-1] == (t - 1, t - 1)
    assert [pos for _, pos in plan.attended] == [t - 4, t - 3, t - 2, t - 1]


def test_contiguous_ablation_keeps_absolute_positions():
    # middle 125..238 (M = 114); fixed, history 1: int(linspace(0, 113, 3))[1] = 56 -> frame 181
    plan = RelaxedPolicy(rope="contiguous", selection="fixed").plan(240, view_of(range(240)))
    assert plan.attended == ((0, 0), (1, 1), (181, 181), (239, 239))


def test_uniform_and_fixed_placements_span_the_whole_middle_without_scoring():
    # history 2: int(linspace(0, 113, 4)) = 0, 37, 75, 113 -> inner points 37, 75 -> frames 162, 200
    uniform = RelaxedPolicy(selection="uniform", history=2).plan(240, view_of(range(240)))
    assert uniform.selected == (162, 200) and uniform.scores == ()
    assert uniform.attended == ((0, 235), (1, 236), (162, 237), (200, 238), (239, 239))
    for k, frame in ((0, 162), (1, 200)):
        fixed = RelaxedPolicy(selection="fixed", history=2, fixed_index=k).plan(240, view_of(range(240)))
        assert fixed.selected == (frame,) and fixed.attended[2] == (frame, 238)
    # placement ablation, history 4: int(linspace(0, 113, 6)) = 0, 22, 45, 67, 90, 113
    placed = [RelaxedPolicy(selection="fixed", history=4, fixed_index=k).plan(240, view_of(range(240))).selected
              for k in range(4)]
    assert placed == [(147,), (170,), (192,), (215,)]


def test_uniform_with_a_short_middle_repeats_a_frame_as_the_release_does():
    # t = 6, sink 2, tail 1: middle 2, 3, 4 (M = 3), history 3: int(linspace(0, 2, 5)) = 0, 0, 1, 1, 2 -> 0, 1, 1
    plan = RelaxedPolicy(selection="uniform", history=3, candidates=3).plan(6, view_of(range(6)))
    assert plan.attended == ((0, 0), (1, 1), (2, 2), (3, 3), (3, 4), (5, 5))
    # fewer middle frames than history: uniform takes them all, fixed one point of int(linspace(0, M-1, M+2))
    plan = RelaxedPolicy(selection="uniform", history=4).plan(6, view_of(range(6)))
    assert plan.selected == (2, 3, 4)
    assert RelaxedPolicy(selection="fixed", history=4, fixed_index=3).plan(6, view_of(range(6))).selected == (3,)


@pytest.mark.parametrize(
    "sizes, t, frame",
    [
        ({"sink": 0}, 3, 1),  # middle 0, 1 (M = 2): the later half holds one candidate, frame 1
        ({"sink": 3}, 6, 4),  # middle 3, 4
        ({"tail": 2}, 6, 3),  # middle 2, 3
    ],
    ids=["sink0", "sink3", "tail2"],
)
def test_a_single_later_half_candidate_is_attended_unscored(sizes, t, frame):
    """conf/experiment/memory_sizes.yaml's points sink 0, sink 3 and tail 2 at their first chunk
    after warm-up (reference: relax_forcing.md, "Edge case")."""
    policy = RelaxedPolicy(**sizes)
    plans = {u: plan for u, _, plan in simulate(policy, t + 3)}
    assert all(not plans[u].selected for u in plans if u < t)  # warm-up before t
    assert plans[t].selected == (frame,) and plans[t].scores == ()
    assert frame in plans[t].frames


def test_history_zero_attends_no_middle_frame():
    # the release would attend frame 3 here (its C = 1 shortcut ignores history)
    plan = RelaxedPolicy(sink=2, tail=2, history=0).plan(6, view_of(range(6)))
    assert plan.attended == ((0, 2), (1, 3), (4, 4), (5, 5)) and plan.selected == ()
    assert RelaxedPolicy(history=0, candidates=1).plan(12, view_of(range(12))).selected == ()


def test_relative_positions_start_at_zero_and_keep_every_difference():
    absolute = RelaxedPolicy(sink=1, history=0, tail=2, warmup=False, reservoir=6)
    relative = RelaxedPolicy(sink=1, history=0, tail=2, warmup=False, reservoir=6, positions="relative")
    # policies.md section 2, worked examples 1 and 2
    expected = {
        0: ((), (0, 1, 2)),
        3: (((0, 0), (1, 1), (2, 2)), (3, 4, 5)),
        6: (((0, 0), (4, 1), (5, 2)), (3, 4, 5)),
        30: (((0, 0), (28, 1), (29, 2)), (3, 4, 5)),
    }
    plans = {t: (a, r) for (t, _, a), (_, _, r) in zip(simulate(absolute, 33), simulate(relative, 33))}
    for t, (attended, current) in expected.items():
        a, r = plans[t]
        assert r.attended == attended and tuple(r.current_positions) == current
        shift = a.current_positions[0] - r.current_positions[0]
        assert a.attended == tuple((f, p + shift) for f, p in r.attended)


def test_more_history_and_sinks_pack_in_order_before_the_tail():
    plan = RelaxedPolicy(sink=3, history=2, tail=2).plan(60, view_of(range(60)))
    positions = [pos for _, pos in plan.attended]
    assert positions == list(range(60 - 7, 60))
    frames = [f for f, _ in plan.attended]
    assert frames[:3] == [0, 1, 2] and frames[-2:] == [58, 59]
    assert frames[3] < frames[4] and set(frames[3:5]) <= set(plan.candidates)


def test_attendable_store_holds_63_frames_in_steady_state():
    assert RelaxedPolicy(store="release").max_frames() == 120
    assert RelaxedPolicy(store="attendable").max_frames() == 63
    assert RelaxedPolicy(store="attendable").retain(range(240), 240) == [0, 1] + list(range(182, 240))


# -- presets and dense -----------------------------------------------------------------------


def test_sink_only_and_tail_only():
    sink = RelaxedPolicy(sink=4, history=0, tail=0, warmup=False, name="sink")
    plan = sink.plan(30, view_of(sink.retain(range(30), 30)))
    assert plan.attended == ((0, 26), (1, 27), (2, 28), (3, 29))
    tail = RelaxedPolicy(sink=0, history=0, tail=4, warmup=False, name="tail")
    plan = tail.plan(30, view_of(tail.retain(range(30), 30)))
    assert plan.attended == ((26, 26), (27, 27), (28, 28), (29, 29))
    assert tail.max_frames() == 7 and RelaxedPolicy(sink=0, history=0, tail=4, store="release").max_frames() == 120


def test_dense_window_21():
    p = DensePolicy(window=21)
    plan = p.plan(30, view_of(p.retain(range(30), 30)))
    assert plan.attended == tuple((f, f) for f in range(12, 30))
    assert p.max_frames() == 21
    assert DensePolicy(window=None).retain(range(300), 300) == list(range(300))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sink": -1}, "policy.sink"),
        ({"tail": 1.5}, "policy.tail"),
        ({"history": 5, "candidates": 4}, "policy.history"),
        ({"reservoir": 6}, "policy.reservoir"),
        ({"lam": float("nan")}, "policy.lam"),
        ({"lam": float("inf")}, "policy.lam"),
        ({"rope": "absolute"}, "policy.rope"),
        ({"store": "disk"}, "policy.store"),
    ],
)
def test_bad_relaxed_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field) as err:
        RelaxedPolicy(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_dense_window():
    with pytest.raises(ConfigError, match="policy.window"):
        DensePolicy(window=2)


# -- properties over random sizes -------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sink=st.integers(0, 4),
    history=st.integers(0, 3),
    tail=st.integers(0, 4),
    extra=st.integers(0, 3),
    spare=st.integers(0, 50),
    rope=st.sampled_from(["hybrid", "contiguous"]),
    store=st.sampled_from(["release", "attendable"]),
    warmup=st.booleans(),
    frames=st.integers(1, 50),
    selection=st.sampled_from(["scored", "uniform", "fixed"]),
    positions=st.sampled_from(["absolute", "relative"]),
    data=st.data(),
)
def test_plans_stay_inside_the_reservoir_and_budget(
    sink, history, tail, extra, spare, rope, store, warmup, frames, selection, positions, data
):
    reservoir = sink + history + tail + 3 + spare
    fixed_index = data.draw(st.integers(0, max(history - 1, 0)))
    p = RelaxedPolicy(sink=sink, history=history, tail=tail, candidates=history + extra, reservoir=reservoir,
                      rope=rope, store=store, warmup=warmup, selection=selection, fixed_index=fixed_index,
                      positions=positions)
    budget = sink + max(history, 1) + tail
    for t, present, plan in simulate(p, 3 * frames):
        attended = [f for f, _ in plan.attended]
        assert set(attended) <= set(present)
        # only uniform placement repeats a frame (as the release does), at another position unless contiguous
        assert selection == "uniform" or len(attended) == len(set(attended))
        assert rope == "contiguous" or len(plan.attended) == len(set(plan.attended))
        assert len(attended) <= budget
        first = plan.current_positions[0]
        assert all(pos < first for _, pos in plan.attended)
        assert plan.current_positions == [first, first + 1, first + 2]
        assert first == t if positions == "absolute" else min(plan.positions + [first]) == 0
        assert len(present) + 3 <= p.max_frames()


@settings(max_examples=30, deadline=None)
@given(
    sink=st.integers(0, 4), history=st.integers(0, 3), tail=st.integers(0, 4), spare=st.integers(0, 120),
)
def test_attendable_store_plans_equal_release_plans(sink, history, tail, spare):
    reservoir = sink + history + tail + 3 + spare
    kwargs = dict(sink=sink, history=history, tail=tail, candidates=max(history, 4), reservoir=reservoir)
    full = list(simulate(RelaxedPolicy(store="release", **kwargs), 3 * 60))
    lean = list(simulate(RelaxedPolicy(store="attendable", **kwargs), 3 * 60))
    assert [plan for _, _, plan in full] == [plan for _, _, plan in lean]
    assert max(len(p) for _, p, _ in lean) <= max(len(p) for _, p, _ in full)


@settings(max_examples=30, deadline=None)
@given(window=st.integers(3, 30), frames=st.integers(1, 40))
def test_dense_plans_are_the_window_before_the_chunk(window, frames):
    p = DensePolicy(window=window)
    for t, present, plan in simulate(p, 3 * frames):
        assert plan.frames == list(range(max(0, t - (window - 3)), t))
        assert plan.positions == plan.frames
        assert len(present) + 3 <= window


# -- every shipped policy config, composed and instantiated as `bench.run` does ---------------

# name -> (t, the chunk's attended (entry, RoPE position) pairs[, its current chunk's positions when not
# absolute]), worked out by hand from each file's sizes.
SHIPPED = {
    # the first compression (t = 21): 10 sinks re-placed at 21-16 = 5..14, frame 20 at its own position
    # (the 2 frames' worth of tokens chosen from frames 10..19 are a token memory, outside `attended`)
    "deep_forcing": (21, tuple((f, 5 + f) for f in range(10)) + ((20, 20),)),
    # window 21 = 18 memory frames + the chunk, at absolute positions
    "dense": (30, tuple((f, f) for f in range(12, 30))),
    # 2 sinks; middle 2..4 -> the one candidate 3; tail 5; packed before the tail at 6-4 = 2
    "relaxed": (6, ((0, 2), (1, 3), (3, 4), (5, 5))),
    # 3 sinks packed before a 15-frame tail 15..29: positions 30-15-3 = 12..14
    "attention_sink": (30, ((0, 12), (1, 13), (2, 14)) + tuple((f, f) for f in range(15, 30))),
    # 3 sinks and the last 6 frames at absolute positions: 9 + the chunk's 3 = LongLive's 12 frames
    "longlive": (30, ((0, 0), (1, 1), (2, 2)) + tuple((f, f) for f in range(24, 30))),
    # the first chunk re-roped just before a 3-frame tail: 30-3-3 = 24..26
    "rolling_forcing": (30, ((0, 24), (1, 25), (2, 26), (27, 27), (28, 28), (29, 29))),
    "sink": (30, ((0, 26), (1, 27), (2, 28), (3, 29))),
    "tail": (30, tuple((f, f) for f in range(26, 30))),
    # frame 0 and the last 2 frames at block-relative positions 0, 1, 2; the chunk at 3, 4, 5
    "infinity_rope": (30, ((0, 0), (28, 1), (29, 2)), (3, 4, 5)),
    # sinks 0..2, the long and short averages at 3 and 4, frames t-4..t-1 at 5..8; the chunk at 9..11
    "memrope": (30, ((0, 0), (1, 1), (2, 2), ("memrope.long", 3), ("memrope.short", 4))
                + tuple((f, 5 + i) for i, f in enumerate(range(26, 30))), (9, 10, 11)),
    # positions 12..29; blocks 18, 21, 24 hold bank frames written after chunks 21, 24, 27; 27..29 real
    "rolling_sink": (30, tuple((f, f) for f in range(12, 18))
                     + tuple(zip((17, 16, 15, 14, 13, 12, 11, 10, 9), range(18, 27)))
                     + ((27, 27), (28, 28), (29, 29))),
}
SAMPLER_OF = {"rolling_forcing": "rolling"}  # the rest run with the default chunk-wise sampler


def test_every_shipped_policy_config_has_a_worked_example():
    assert {p.stem for p in (CONF / "policy").glob("*.yaml")} == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_policy_config_plans_as_worked_out(name):
    overrides = [f"policy={name}", f"sampler={SAMPLER_OF.get(name, 'self_forcing')}", "eval=none"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    policy = build(cfg)[0]
    t, attended, *current = SHIPPED[name]
    plans = {u: plan for u, _, plan in simulate(policy, t + 9)}
    assert plans[t].attended == attended
    positions = current[0] if current else (t, t + 1, t + 2)
    assert plans[t].current == tuple(zip(range(t, t + 3), positions))
    assert all(plan.current[0][0] == u for u, plan in plans.items())
