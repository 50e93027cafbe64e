"""Deep Forcing as the Relax Forcing release adapts it (shared/reference/policies.md §1): the plans of
its worked examples, the token selection rule, and the token memory in the attention layers."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generation.reservoir import KVReservoir
from bench.generation.rolling_sampler import RollingSampler
from bench.generation.sampler import ARSampler
from bench.generation.token_memory import TokenRows, top_tokens
from bench.generation.wan_attention import (
    AttentionState,
    PlannedAttnProcessor,
    StateSlot,
)
from bench.perf.profiler import Profiler
from bench.runs.outputs import PlanTrace
from memory_policies import ConfigError, DeepForcingPolicy, ReservoirView
from memory_policies.plan import TokenMemory, TokenSelection

ENTRY = DeepForcingPolicy.ENTRY


def simulate(policy: DeepForcingPolicy, num_frames: int):
    """plan, then retain, as the sampler's `select` does; yields (t, frames present after eviction, plan)."""
    present: list[int] = []
    for t in range(0, num_frames, policy.chunk):
        plan = policy.plan(t, ReservoirView(frames=tuple(present)))
        present = policy.retain(present, t)
        yield t, list(present), plan
        present = present + list(range(t, t + policy.chunk))


def plans_of(policy: DeepForcingPolicy, num_frames: int) -> dict[int, tuple[list[int], object]]:
    return {t: (present, plan) for t, present, plan in simulate(policy, num_frames)}


# -- the worked examples (defaults: sink 10, window 21, capacity 16, recent 4, reuse 7) ----------


def test_up_to_t18_the_dense_self_forcing_window():
    for t, (present, plan) in plans_of(DeepForcingPolicy(), 21).items():
        assert plan.attended == tuple((f, f) for f in range(t)) and plan.tokens is None
        assert plan.current == ((t, t), (t + 1, t + 1), (t + 2, t + 2))
        assert present == list(range(t))


def test_t21_first_compression():
    present, plan = plans_of(DeepForcingPolicy(), 24)[21]
    # sinks 0..9 rotated by +5 (21 - 16); frame 20 (the recent frame before the chunk) at its own position
    assert plan.attended == tuple((f, f + 5) for f in range(10)) + ((20, 20),)
    assert plan.current == ((21, 21), (22, 22), (23, 23))
    # 2 frames' worth of tokens from frames 10..19, scored with frame 20's and the chunk's queries
    assert plan.tokens == TokenMemory(ENTRY, 0, TokenSelection(ENTRY, tuple(range(10, 20)), 2, (20,), 7))
    assert present == list(range(21))  # the candidates stay until step 1 has selected


def test_t24_no_compression_same_sinks_and_tokens():
    present, plan = plans_of(DeepForcingPolicy(), 27)[24]
    assert plan.attended == tuple((f, f + 5) for f in range(10)) + tuple((f, f) for f in range(20, 24))
    assert plan.tokens == TokenMemory(ENTRY, 0, None)  # attended as selected at t = 21
    assert present == list(range(10)) + [20, 21, 22, 23]  # frames 10..19 live on only as tokens


def test_t27_second_compression_moves_the_sinks_to_11_20():
    present, plan = plans_of(DeepForcingPolicy(), 30)[27]
    assert plan.attended == tuple((f, f + 11) for f in range(10)) + ((26, 26),)
    # candidates: the held tokens (count < 7) and frames 20..25; want = 27 - 16 = 11
    assert plan.tokens.select == TokenSelection(ENTRY, tuple(range(20, 26)), 2, (26,), 7)
    assert present == list(range(10)) + list(range(20, 27))


def test_compressions_every_other_chunk_and_the_sink_distance_alternates_7_and_10():
    plans = plans_of(DeepForcingPolicy(), 60)
    compressing = [t for t, (_, plan) in plans.items() if plan.tokens is not None and plan.tokens.select]
    assert compressing == [21, 27, 33, 39, 45, 51, 57]
    for t in range(21, 60, 3):
        last_sink = plans[t][1].attended[9][1]
        assert t - last_sink == (7 if t in compressing else 10)


def test_first_rotation_is_window_minus_capacity_as_the_release_codes_it():
    """window 20: the first compression is at t = 18, whose target 18 - 16 = 2 the release misses:
    it rotates by 20 - 16 = 4, and later by the change of the target (6 per compression)."""
    plans = plans_of(DeepForcingPolicy(window=20), 30)
    assert plans[18][1].attended[:10] == tuple((f, f + 4) for f in range(10))
    assert plans[24][1].attended[:10] == tuple((f, f + 10) for f in range(10))


def test_no_sink():
    plans = plans_of(DeepForcingPolicy(sink=0, capacity=6), 30)
    # budget 6 - 0 - 4 = 2 frames' worth from frames 0..19; nothing re-placed
    assert plans[21][1].attended == ((20, 20),)
    assert plans[21][1].tokens.select.frames == tuple(range(20))


def test_no_budget_means_no_token_memory():
    plans = plans_of(DeepForcingPolicy(capacity=14), 30)
    assert all(plan.tokens is None for _, plan in plans.values())


def test_real_frames_held_at_most_24_at_the_defaults():
    policy = DeepForcingPolicy()
    held = [len(present) + 3 for _, present, _ in simulate(policy, 120)]
    assert max(held) == policy.max_frames() == 24 and held.index(24) == 7  # t = 21: frames 0..23
    assert max(held[8:]) == 20  # later: 10 sinks + 6 candidates + 4 recent


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"sink": -1}, "policy.sink"),
        ({"window": 0}, "policy.window"),
        ({"capacity": 22}, "policy.capacity"),
        ({"capacity": 13}, "policy.capacity"),
        ({"recent": 2}, "policy.recent"),
        ({"recent": True}, "policy.recent"),
        ({"max_reuse": -1}, "policy.max_reuse"),
        ({"max_reuse": 1.5}, "policy.max_reuse"),
        ({"chunk": 0}, "policy.chunk"),
    ],
)
def test_bad_config_names_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field) as error:
        DeepForcingPolicy(**kwargs)
    assert "\n" not in str(error.value)


sizes = st.tuples(
    st.integers(1, 4),  # chunk
    st.integers(0, 6),  # sink
    st.integers(0, 4),  # recent beyond the chunk
    st.integers(0, 5),  # budget
    st.integers(0, 8),  # window beyond the capacity
)


@settings(max_examples=80, deadline=None)
@given(sizes)
def test_plans_keep_the_cache_budget_and_their_frames(size):
    chunk, sink, extra, budget, spare = size
    recent = chunk + extra
    capacity = sink + recent + budget
    policy = DeepForcingPolicy(sink=sink, window=capacity + spare, capacity=capacity, recent=recent, chunk=chunk)
    offered: list[int] = []
    held = []
    for t, present, plan in simulate(policy, policy.first + 5 * policy.period + chunk):
        frames = [f for f, _ in plan.attended]
        select = plan.tokens.select if plan.tokens else None
        needed = frames + (list(select.frames + select.query_frames) if select else [])
        assert set(needed) <= set(present)  # the reservoir still holds what the chunk reads
        assert len(frames) == len(set(frames)) and len({p for _, p in plan.attended}) == len(frames)
        assert all(0 <= p < t for _, p in plan.attended)  # memory before the chunk
        assert plan.current == tuple((f, f) for f in range(t, t + chunk))
        # the release's cache: whole frames + the token budget + the chunk stay within the window,
        # and a compression leaves exactly `capacity`
        cache = len(frames) + (budget if plan.tokens else 0) + chunk
        assert cache <= policy.window
        if select:
            assert cache == capacity and not set(select.frames) & set(frames)
            assert select.query_frames == tuple(range(t - extra, t))
            offered += select.frames
        elif t < policy.first:
            assert frames == list(range(t))
        held.append(len(present) + chunk)
    assert len(offered) == len(set(offered))  # each frame is offered to the token memory once: no duplicate tokens
    assert max(held) == policy.max_frames()


# -- the selection rule ------------------------------------------------------------------------


def rows(frames, counts, batch=1):
    """One token per frame (F = 1); K = V = the frame id on every channel."""
    n = len(frames)
    k = torch.tensor(frames, dtype=torch.float32).view(1, n, 1, 1).expand(batch, n, 1, 2).clone()
    frame = torch.tensor(frames).expand(batch, n).clone()
    return TokenRows(k, k.clone(), frame, torch.zeros(batch, n, dtype=torch.long),
                     torch.tensor(counts).expand(batch, n).clone(), torch.ones(batch, n, dtype=torch.bool))


def test_hand_selection_example_3():
    """F = 1, S = 1, R = 1, Cap = 3 -> C = 1. Cache [s, a, b, c, r]: s and r are whole frames here, the
    candidates are a, b, c with scores 0.9 (count 7), 0.5, 0.7 (count 2): a is spent, c is kept, count 3."""
    a, b, c = 1, 2, 3
    pool = rows([a, b, c], [7, 0, 2])
    scores = torch.tensor([[0.9, 0.5, 0.7]])
    index, kept = top_tokens(scores, pool.eligible(max_reuse=7), budget=1)
    chosen = pool.take(index, kept)
    assert chosen.frame.tolist() == [[c]] and chosen.count.tolist() == [[3]] and chosen.k[0, 0, 0, 0] == c
    # budget 2: b and c, in the cache's order (not the score's), each count + 1
    index, kept = top_tokens(scores, pool.eligible(max_reuse=7), budget=2)
    chosen = pool.take(index, kept)
    assert chosen.frame.tolist() == [[b, c]] and chosen.count.tolist() == [[1, 3]]
    # no reuse limit (0, as in the release): a is chosen again
    index, _ = top_tokens(scores, pool.eligible(max_reuse=0), budget=1)
    assert index.tolist() == [[0]]


def test_fewer_eligible_than_the_budget_pads_and_masks():
    pool = rows([1, 2, 3], [7, 7, 0])
    index, kept = top_tokens(torch.tensor([[0.9, 0.5, 0.7]]), pool.eligible(7), budget=4)
    chosen = pool.take(index, kept)
    assert kept.tolist() == [[True, False, False, False]] and chosen.frame[0, 0] == 3
    assert chosen.count.tolist()[0][0] == 1 and chosen.valid.sum() == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.integers(1, 12), st.integers(1, 14), st.integers(0, 2**31 - 1))
def test_top_tokens_against_a_sort(batch, n, budget, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randperm(batch * n, generator=g).view(batch, n).float()  # distinct: no ties
    eligible = torch.rand(batch, n, generator=g) < 0.7
    index, kept = top_tokens(scores, eligible, budget)
    assert index.shape == kept.shape == (batch, budget)
    for b in range(batch):
        ranked = sorted((i for i in range(n) if eligible[b, i]), key=lambda i: -scores[b, i])
        expected = sorted(ranked[:budget])
        assert index[b][kept[b]].tolist() == expected  # the best, in candidate order, no duplicates
        assert kept[b].tolist() == [True] * len(expected) + [False] * (budget - len(expected))


# -- the token memory in the attention layer, against an independent computation --------------

TOKENS, GRID = 64, 8  # the toy: 32x32 latents, patch 4


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE as a complex product per channel pair (float64), from diffusers' own tables."""
    pairs = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
    turn = torch.complex(cos[..., 0::2].double(), sin[..., 0::2].double())
    return torch.view_as_real(pairs * turn).flatten(-2)


def diffusers_tables(backend, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' WanRotaryPosEmbed for positions 0..frames-1, as (frames, tokens, 1, head_dim)."""
    cos, sin = backend.dit.transformer.rope(torch.zeros(1, 3, frames, 32, 32))
    return cos[0].view(frames, TOKENS, 1, -1), sin[0].view(frames, TOKENS, 1, -1)


def toy_layer(backend):
    attn = backend.dit.transformer.blocks[0].attn1
    heads, head_dim = attn.heads, backend.dit.config.attention_head_dim
    return attn, heads, head_dim


def filled_reservoir(backend, frames: range, batch: int, seed: int) -> KVReservoir:
    _, heads, head_dim = toy_layer(backend)
    reservoir = KVReservoir(1, batch, TOKENS, heads, head_dim, None)
    g = torch.Generator().manual_seed(seed)
    reservoir.allocate(list(frames))
    shape = (batch, len(frames) * TOKENS, heads, head_dim)
    reservoir.write(0, list(frames), torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    return reservoir


def run_layer(backend, state: AttentionState, hidden: torch.Tensor) -> torch.Tensor:
    state.place(backend.dit.transformer.rope, GRID, GRID, torch.device("cpu"))
    attn, _, _ = toy_layer(backend)
    return PlannedAttnProcessor(0, StateSlot()).attend(attn, hidden, state)


def reference_attention(attn, hidden_row, positions, keys, values, tables):
    """One batch row: the chunk's queries at `positions` against the given roped keys (float64)."""
    cos, sin = tables
    q = attn.norm_q(attn.to_q(hidden_row)).unflatten(-1, (attn.heads, -1))  # (3F, heads, d)
    q = rotate(q, cos[positions].flatten(0, 1), sin[positions].flatten(0, 1))
    weights = torch.einsum("qhd,khd->hqk", q, keys) / math.sqrt(q.shape[-1])
    out = torch.einsum("hqk,khd->qhd", weights.softmax(dim=-1), values.double()).flatten(1)
    proj = attn.to_out[0]
    return torch.nn.functional.linear(out, proj.weight.double(), proj.bias.double()).float()


@torch.no_grad()
def test_token_memory_attention_equals_masked_full_attention(random_toy):
    """Frame 0 at position 3, a per-row token memory from frames 1..4 (shift 1), the chunk at 6..8: the
    layer's output equals attention over every token of frames 1..4 at their positions + 1 with
    only each row's kept tokens unmasked (one row padded: fewer tokens)."""
    attn, heads, head_dim = toy_layer(random_toy)
    batch, shift = 2, 1
    reservoir = filled_reservoir(random_toy, range(6), batch, seed=5)
    g = torch.Generator().manual_seed(6)
    keep = torch.rand(batch, 4 * TOKENS, generator=g) < 0.3
    keep[1, 100:] = False  # row 1 holds fewer tokens: padded rows
    size = int(keep.sum(1).max())
    all_k, all_v = reservoir.gather(0, [1, 2, 3, 4])
    chosen = [keep[b].nonzero()[:, 0] for b in range(batch)]
    index = torch.stack([torch.cat([c, c.new_zeros(size - len(c))]) for c in chosen])
    valid = torch.arange(size)[None] < torch.tensor([len(c) for c in chosen])[:, None]
    gather = index[..., None, None].expand(-1, -1, heads, head_dim)
    reservoir.tokens.put("m", 0, TokenRows(all_k.gather(1, gather), all_v.gather(1, gather), 1 + index // TOKENS,
                                           index % TOKENS, torch.zeros_like(index), valid))
    hidden = torch.randn(batch, 3 * TOKENS, attn.to_q.in_features, generator=g)
    state = AttentionState([6, 7, 8], [0], [3], reservoir, tokens=TokenMemory("m", shift=shift))
    got = run_layer(random_toy, state, hidden)

    tables = diffusers_tables(random_toy, 9)
    for b in range(batch):
        k_cur = attn.norm_k(attn.to_k(hidden[b])).unflatten(-1, (heads, -1))
        v_cur = attn.to_v(hidden[b]).unflatten(-1, (heads, -1))
        k0, v0 = reservoir.gather(0, [0])
        places = [3] + [f + shift for f in (1, 2, 3, 4)] + [6, 7, 8]
        cos, sin = (t[places].flatten(0, 1) for t in tables)
        keys = rotate(torch.cat([k0[b], all_k[b], k_cur]), cos, sin)
        values = torch.cat([v0[b], all_v[b], v_cur])
        unmasked = torch.cat([torch.ones(TOKENS, dtype=torch.bool), keep[b], torch.ones(3 * TOKENS, dtype=torch.bool)])
        expected = reference_attention(attn, hidden[b], [6, 7, 8], keys[unmasked], values[unmasked], tables)
        torch.testing.assert_close(got[b], expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_step1_selection_keeps_the_best_scored_tokens(random_toy):
    """A held memory (one token spent) and frames 2, 3 as candidates, scored with frame 5's recorded
    clean-pass queries plus the chunk's own: the layer keeps each row's top 64 by the score computed
    here independently, in candidate order, with their counts + 1."""
    attn, heads, head_dim = toy_layer(random_toy)
    batch, budget, shift = 2, 1, 0
    reservoir = filled_reservoir(random_toy, range(6), batch, seed=7)
    g = torch.Generator().manual_seed(8)
    recorded = torch.randn(batch, 3 * TOKENS, heads, head_dim, generator=g)  # frames 3, 4, 5's roped queries
    reservoir.write_queries(0, [3, 4, 5], recorded)
    held_k, held_v = reservoir.gather(0, [1])  # held: every token of frame 1, counts 0..63 % 8
    counts = (torch.arange(TOKENS) % 8).expand(batch, -1)
    reservoir.tokens.put("m", 0, TokenRows(held_k, held_v, torch.ones(batch, TOKENS, dtype=torch.long),
                                           torch.arange(TOKENS).expand(batch, -1), counts,
                                           torch.ones(batch, TOKENS, dtype=torch.bool)))
    hidden = torch.randn(batch, 3 * TOKENS, attn.to_q.in_features, generator=g)
    select = TokenSelection("m", frames=(2, 3), budget=budget, query_frames=(5,), max_reuse=7)
    state = AttentionState([6, 7, 8], [], [], reservoir, tokens=TokenMemory("m", shift, select), select_tokens=True)
    run_layer(random_toy, state, hidden)
    kept = reservoir.tokens.get("m", 0)

    tables = diffusers_tables(random_toy, 9)
    cand_k = torch.cat([held_k, reservoir.gather(0, [2, 3])[0]], dim=1)  # candidate order: held, then frames
    cand_frame = [1] * TOKENS + [2] * TOKENS + [3] * TOKENS
    cand_token = list(range(TOKENS)) * 3
    cos = torch.stack([tables[0][f + shift, i] for f, i in zip(cand_frame, cand_token)])
    sin = torch.stack([tables[1][f + shift, i] for f, i in zip(cand_frame, cand_token)])
    for b in range(batch):
        q_cur = attn.norm_q(attn.to_q(hidden[b])).unflatten(-1, (heads, -1))
        q_cur = rotate(q_cur, tables[0][6:9].flatten(0, 1), tables[1][6:9].flatten(0, 1))
        query_sum = recorded[b, 2 * TOKENS :].double().sum(0) + q_cur.sum(0)  # frame 5's rows + the chunk's
        keys = rotate(cand_k[b], cos, sin)
        scores = (keys * query_sum).sum(dim=(1, 2)) / (math.sqrt(head_dim) * heads)
        eligible = [i for i in range(3 * TOKENS) if i >= TOKENS or counts[b, i] < 7]
        best = sorted(sorted(eligible, key=lambda i: -scores[i])[: budget * TOKENS])
        assert kept.valid[b].all()
        expected = [(cand_frame[i], cand_token[i]) for i in best]
        assert list(zip(kept.frame[b].tolist(), kept.token[b].tolist())) == expected
        expected_counts = [(int(counts[b, i]) if i < TOKENS else 0) + 1 for i in best]
        assert kept.count[b].tolist() == expected_counts
        torch.testing.assert_close(kept.k[b], cand_k[b, best])


# -- through the sampler -----------------------------------------------------------------------


@torch.no_grad()
def test_generation_keeps_the_token_budget_per_layer_and_row(random_toy):
    """window 9, capacity 7, 1 sink, recent 4: budget 2 frames' worth, a compression every chunk from
    t = 9. The trace shows, per video and layer, 128 tokens from the frames offered so far; the
    per-chunk profile counts the token memory in frames' worth."""
    policy = DeepForcingPolicy(sink=1, window=9, capacity=7, recent=4)
    text = random_toy.encode_text(["a red square moving fast", "a blue circle moving slow"])
    out = io.StringIO()
    trace = PlanTrace(out, videos=["a", "b"])
    generator = [torch.Generator().manual_seed(s) for s in (0, 1)]
    profiler = Profiler()
    _, reservoir = ARSampler(steps=[1000]).generate(
        random_toy, policy, text, 15, generator, trace=trace, profiler=profiler
    )
    # t = 9, 12: the sink, frame t - 1 and 2 frames' worth of tokens
    assert [row["attended"] for row in profiler.chunk_rows()] == [0, 3, 6, 4, 4]
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["t"] for r in rows] == [0, 0, 3, 3, 6, 6, 9, 9, 12, 12]
    offered: set[int] = set()
    kept_by_video = {}
    for row in rows:
        if "tokens" not in row:
            assert row["t"] < 9
            continue
        assert row["tokens"] == [ENTRY, 0]
        frames, budget, query_frames, max_reuse = row["token_selection"]
        assert (budget, query_frames, max_reuse) == (2, [row["t"] - 1], 7)
        offered |= set(frames)
        assert len(row["kept_tokens"]) == random_toy.dit.config.num_layers
        for layer in row["kept_tokens"]:
            assert sum(n for _, n in layer) == 2 * TOKENS and {f for f, _ in layer} <= offered
        kept_by_video[row["video"], row["t"]] = row["kept_tokens"]
    assert kept_by_video["a", 12] != kept_by_video["b", 12]  # selected per batch row
    # real frames held at most 12 (t = 9: frames 0..11), plus the token memory's 2 frames' worth
    assert policy.max_frames() == 12 and reservoir.peak_frames == 14
    assert reservoir.frames == [0, 8, 9, 10, 11, 12, 13, 14]  # t = 12 offered 8..10 and scored with 11


def test_rolling_sampler_refuses_a_token_memory(random_toy, monkeypatch):
    class ZeroDit:
        config, grid = random_toy.dit.config, random_toy.dit.grid

        def __call__(self, x, timestep, text, state):
            return torch.zeros_like(x)

    monkeypatch.setattr(random_toy, "dit", ZeroDit())
    policy = DeepForcingPolicy(sink=1, window=9, capacity=7, recent=4)
    text = random_toy.encode_text(["a red square"])
    with pytest.raises(ConfigError, match="token-level memory"):
        RollingSampler(steps=[1000, 500], commit_window=None).generate(random_toy, policy, text, 15, torch.Generator())
