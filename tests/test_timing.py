"""Timing: the per-run profile, the attention and end-to-end benchmark apps (structure only, no timed asserts)."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

from bench.generation.sampler import ARSampler
from bench.perf.profiler import Profiler
from bench.perf.timer import medians_ms
from memory_policies import ConfigError, RelaxedPolicy

SECTIONS = {"selection", "denoise", "clean_pass", "dit", "attention", "kernel", "reservoir_write"}


def make_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def generate(backend, profiler: Profiler):
    traces: list = []
    latents, _ = ARSampler(steps=[1000, 500]).generate(
        backend, RelaxedPolicy(), backend.encode_text(["a red square moving fast"]), 15,
        torch.Generator().manual_seed(0), trace=lambda chunk, t, plan: traces.append(plan), profiler=profiler,
    )
    return latents, traces


def test_profiling_changes_no_output_and_nests_its_sections(random_toy):
    on, off = Profiler(), Profiler(enabled=False)
    latents_on, trace_on = generate(random_toy, on)
    latents_off, trace_off = generate(random_toy, off)
    assert torch.equal(latents_on, latents_off) and trace_on == trace_off
    assert [set(row) for row in off.chunk_rows()] == [{"t", "attended"}] * 5 and not off.totals
    rows = on.chunk_rows()
    assert [row["t"] for row in rows] == [0, 3, 6, 9, 12]  # 15 frames in chunks of 3
    assert set(rows[0]) == SECTIONS | {"t", "attended"}  # chunk 0 attends no memory: nothing to gather
    for row in rows[1:]:
        assert set(row) == SECTIONS | {"memory_kv", "t", "attended"}
        assert 0 < row["memory_kv"] <= row["attention"]
    for row in rows:
        assert 0 < row["reservoir_write"] <= row["attention"] <= row["dit"] <= row["denoise"] + row["clean_pass"]
    # the run's totals and its per-chunk rows are kept apart; the mean per chunk agrees with the rows
    sections = SECTIONS | {"memory_kv"}
    assert on.per_chunk_mean() == pytest.approx({k: sum(row.get(k, 0) for row in rows) / 5 for k in sections})


def test_candidates_are_timed_round_robin_in_abba_order_after_warmup():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "ab"}
    medians = medians_ms(fns, torch.device("cpu"), warmup=1, repeats=3)
    assert set(medians) == {"a", "b"} and all(v >= 0 for v in medians.values())
    assert "".join(calls) == "ab" + "ab" + "ba" + "ab"


def test_run_writes_the_per_chunk_profile(random_toy_weights, tmp_path):
    from bench.run import execute

    overrides = [f"model.backend.weights={random_toy_weights}", "eval=none", "num_latent_frames=12",
                 "prompts=[a red square moving fast]"]
    execute(make_cfg("config", overrides), tmp_path)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert {"end_to_end_s", "generation_s", "latent_frames_per_s", "kv_peak_frames", "kv_peak_bytes"} <= set(timing)
    assert SECTIONS | {"decode"} <= set(timing["sections_s"]) == set(timing["per_chunk_mean_s"])
    rows = [json.loads(line) for line in (tmp_path / timing["per_chunk_file"]).read_text().splitlines()]
    assert timing["chunks"] == 4 and [row["t"] for row in rows] == [0, 3, 6, 9]
    assert all(SECTIONS | {"decode", "write", "t", "attended"} <= set(row) for row in rows)  # each chunk's own decode
    bytes_per_frame = 2 * 4 * 64 * 4 * 32 * 4  # K and V x layers x tokens x heads x head_dim x fp32
    # relaxed's default store (attendable) holds 9 of the 12 frames at most, as in the e2e test below
    assert timing["kv_peak_frames"] == 9 and timing["kv_peak_bytes"] == 9 * bytes_per_frame


SMALL_ATTENTION = ["tokens_per_frame=12", "heads=2", "head_dim=16", "ffn_dim=32", "text_tokens=4", "warmup=0",
                   "repeats=1", "selection_repeats=1", "frames=[3,7]"]
# Attended latent frames at chunk t = 21 (current chunk included), counted from each policy's rule by hand:
# relaxed 2 sink + 1 history + 1 tail; sink 4; tail 4; attention_sink 3 + 15; longlive 3 + 6; deep_forcing
# (its first compression) sinks 0-9 + 2 frames' worth of top-C tokens + frame 20; infinity_rope sink 1 +
# tail 2; rolling_sink frames 3-20 (window 21); memrope 3 sinks + long + short + frames 17-20.
ATTENDED_AT_21 = {"dense": 21, "relaxed": 7, "sink": 7, "tail": 7, "attention_sink": 21, "longlive": 12,
                  "deep_forcing": 16, "infinity_rope": 6, "rolling_sink": 21, "memrope": 12}
# The most K/V (frames' worth) each policy held up to chunk 21: its window, or every frame so far (0-20).
KV_PEAK_AT_21 = {"dense": 21, "longlive": 12, "deep_forcing": 21, "infinity_rope": 6, "rolling_sink": 21,
                 "memrope": 12}


def test_attention_benchmark_measures_every_policy(tmp_path):
    from bench.perf.attention import report, run

    result = run(make_cfg("attention", [*SMALL_ATTENTION, "t=21"]), tmp_path)
    on_disk = json.loads((tmp_path / "attention.json").read_text())
    assert on_disk["frames"] == [3, 7, 21]  # the dense policy's window is always measured
    for key in ("kernel_ms", "self_attn_ms", "self_attn_unprepared_ms", "processor_ms", "processor_unprepared_ms",
                "memory_chunk_ms", "memory_chunk_unprepared_ms", "rope_tables_ms", "selection_ms"):
        assert len(on_disk[key]) == 3 and all(v >= 0 for v in on_disk[key])
    policies = on_disk["policies"]
    assert {name: row["frames"] for name, row in policies.items()} == ATTENDED_AT_21
    assert policies["deep_forcing"]["keys"] == (10 + 1 + 2 + 3) * 12  # 2 x 12 token rows, not whole frames
    bytes_per_frame = 2 * 12 * 2 * 16 * 4  # K and V x tokens x heads x head_dim x fp32, one layer
    for name, frames in KV_PEAK_AT_21.items():
        assert policies[name]["kv_peak_frames"] == frames, name
        assert policies[name]["kv_peak_bytes"] == frames * bytes_per_frame * 30, name  # 30 layers
    forwards = 5
    for row in policies.values():
        # 4 forwards reuse the memory prepared in the first; without the preparation all 5 rebuild it,
        # and each forward builds the memory's RoPE tables (one per 30 layers) instead of the chunk's first;
        # the input's tables and the selection come once per chunk (30 layers x 5 forwards) either way
        per_chunk = (row["selection_ms"] + row["rope_tables_ms"]) / (30 * forwards)
        build = row["memory_ms"] + row["memory_tables_ms"] / 30
        assert row["memory_chunk_ms"] == pytest.approx(build + 4 * row["memory_reuse_ms"])
        assert row["memory_chunk_unprepared_ms"] == pytest.approx(5 * build)
        assert row["self_attn_ms"] == pytest.approx((row["step1_ms"] + 4 * row["processor_ms"]) / forwards
                                                    + row["memory_tables_ms"] / 150 + per_chunk)
        assert row["self_attn_unprepared_ms"] == pytest.approx(
            (row["step1_ms"] + 4 * row["processor_unprepared_ms"]) / forwards + row["memory_tables_ms"] / 30 + per_chunk)
        assert row["rest_ms"] == pytest.approx(row["self_attn_ms"] - row["kernel_ms"] - row["memory_chunk_ms"] / 5)
    # one chunk's prepared K and V: 18 memory frames of dense-21, 4 of relaxed (2 sinks, history, tail)
    assert policies["dense"]["prepared_bytes"] == 18 * bytes_per_frame * 30
    assert policies["relaxed"]["prepared_bytes"] == 4 * bytes_per_frame * 30
    estimate = policies["relaxed"]["selection_estimate"]
    assert estimate["chunk_dit_ms"] == pytest.approx(estimate["block_ms"] * 30 * forwards)
    assert set(on_disk["targets"]) == {"kernel_ratio", "self_attn_ratio", "self_attn_ratio_unprepared",
                                       "memory_prep_ratio_dense", "memory_prep_ratio_relaxed", "selection_fraction"}
    assert on_disk["dtype"] == "float32" and on_disk["device"].startswith("cpu")
    assert (tmp_path / "attention.png").stat().st_size > 0
    text = report(result)
    assert "dense-21 / relaxed-7 kernel" in text and all(f"\n{name} " in text for name in ATTENDED_AT_21)
    assert "relaxed memory handling per chunk, off / prepared" in text


def test_attention_benchmark_times_each_first_forward_from_the_same_token_memory(tmp_path, monkeypatch):
    """Deep Forcing's scoring runs in the chunk's first forward; timing it again must not feed it its own output."""
    from bench.generation import wan_attention
    from bench.perf.attention import run

    held = []
    reselect = wan_attention.PlannedAttnProcessor.reselect

    def recording(self, state, query):
        held.append(state.reservoir.tokens.find(state.tokens.select.entry, 0))
        return reselect(self, state, query)

    monkeypatch.setattr(wan_attention.PlannedAttnProcessor, "reselect", recording)
    run(make_cfg("attention", [*SMALL_ATTENTION, "t=27", "repeats=3"]), tmp_path)
    # the loop's compression at chunk 21 (nothing held yet), then chunk 27's: once to prepare, once per timed round
    first, *chunk27 = held
    assert first is None and len(chunk27) == 1 + 3
    assert all(rows is chunk27[0] for rows in chunk27)  # every one starts from what chunk 21 kept


@pytest.mark.parametrize("override, field", [("frames=[2,7]", "frames"), ("t=10", "t"), ("device=tpu", "device"),
                                             ("relaxed.sink=-1", "policy.sink")])
def test_attention_benchmark_rejects_bad_sizes(override, field, tmp_path):
    from bench.perf.attention import run

    with pytest.raises(ConfigError, match=f"^{field}"):
        run(make_cfg("attention", [*SMALL_ATTENTION, override]), tmp_path)
    assert not (tmp_path / "attention.json").exists()


def test_end_to_end_comparison_writes_its_results(random_toy_weights, tmp_path):
    from bench.perf.e2e import report, run

    overrides = [f"model.backend.weights={random_toy_weights}", "num_latent_frames=12", "warmup_frames=3", "repeats=2"]
    result = run(make_cfg("e2e", overrides), tmp_path)
    on_disk = json.loads((tmp_path / "e2e.json").read_text())
    dense, relaxed = on_disk["policies"]["dense"], on_disk["policies"]["relaxed"]
    for policy in (dense, relaxed, dense["unprepared"], relaxed["unprepared"]):
        # 12 latent frames of each of the config's prompts, per timed generation
        assert policy["latent_frames_per_s"] * policy["seconds"] == pytest.approx(12 * on_disk["num_videos"])
        assert min(r["seconds"] for r in policy["runs"]) <= policy["seconds"] <= max(r["seconds"] for r in policy["runs"])
        assert len(policy["runs"]) == 2
        assert SECTIONS | {"decode", "memory_kv"} <= set(policy["runs"][0]["per_chunk_mean_s"])
    assert on_disk["speedup"] == pytest.approx(relaxed["latent_frames_per_s"] / dense["latent_frames_per_s"])
    assert on_disk["speedup_unprepared"] == pytest.approx(relaxed["unprepared"]["latent_frames_per_s"]
                                                          / dense["unprepared"]["latent_frames_per_s"])
    for policy in (dense, relaxed):
        assert policy["prep_speedup"] == pytest.approx(policy["unprepared"]["seconds"] / policy["seconds"])
        for run_ in policy["runs"]:  # the kernel is one part of the self-attention
            assert 0 < run_["per_chunk_mean_s"]["kernel"] < run_["per_chunk_mean_s"]["attention"]
    # one ratio per ABBA round, each from that round's two generations
    rounds = [d["seconds"] / r["seconds"] for d, r in zip(dense["runs"], relaxed["runs"])]
    assert on_disk["speedup_rounds"] == pytest.approx(rounds)
    kernels = [statistics.median(r["per_chunk_mean_s"]["kernel"] for r in p["runs"]) for p in (dense, relaxed)]
    # 4 chunks of 3 frames: relaxed's time with dense's kernel in place of its own
    assert on_disk["kernel_bound"] == pytest.approx((relaxed["seconds"] + 4 * (kernels[0] - kernels[1])) / relaxed["seconds"])
    assert (dense["kv_peak_frames"], relaxed["kv_peak_frames"]) == (12, 9)  # the attendable store
    # K and V x tokens x heads x head_dim x fp32 x 4 layers: dense attends its 9 earlier frames at chunk 9,
    # relaxed its 2 sinks + 1 history + 1 tail; none prepared with the switch off
    per_frame = 2 * 64 * 4 * 32 * 4 * 4 * on_disk["num_videos"]
    assert (dense["prepared_peak_bytes"], relaxed["prepared_peak_bytes"]) == (9 * per_frame, 4 * per_frame)
    assert dense["unprepared"]["prepared_peak_bytes"] == relaxed["unprepared"]["prepared_peak_bytes"] == 0
    text = report(result)
    assert "speed-up dense / relaxed" in text and "speed-up of the preparation, relaxed" in text
    assert "differed only in their attention kernel" in text


def test_kernel_bound_puts_dense_kernel_into_relaxed_time():
    from bench.perf.e2e import kernel_bound

    def policy(seconds: float, kernels: list[float]) -> dict:
        return {"seconds": seconds, "runs": [{"per_chunk_mean_s": {"kernel": k, "dit": 1.0}} for k in kernels]}

    # medians 0.15 and 0.05 s per chunk; relaxed 24 s over 80 chunks: (24 + 80 x 0.1) / 24
    assert kernel_bound(policy(40, [0.14, 0.15, 0.2]), policy(24, [0.05, 0.04, 0.06]), 80) == pytest.approx(32 / 24)
    unprofiled = {"seconds": 24, "runs": [{"per_chunk_mean_s": {}}]}
    assert kernel_bound(unprofiled, unprofiled, 80) is None
