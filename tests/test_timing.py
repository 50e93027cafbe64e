"""Timing: the per-run profile, the attention and end-to-end benchmark apps (structure only, no timed asserts)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

from bench.generation.sampler import ARSampler
from bench.perf.profiler import Profiler
from bench.perf.timer import medians_ms
from memory_policies import ConfigError, RelaxedPolicy

SECTIONS = {"selection", "denoise", "clean_pass", "dit", "attention", "reservoir_write"}


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
    for row in rows:
        assert set(row) == SECTIONS | {"t", "attended"}
        assert 0 < row["reservoir_write"] <= row["attention"] <= row["dit"] <= row["denoise"] + row["clean_pass"]
    # the run's totals and its per-chunk rows are kept apart; the mean per chunk agrees with the rows
    assert on.per_chunk_mean() == pytest.approx({k: sum(row[k] for row in rows) / 5 for k in SECTIONS})


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
    assert [set(row) for row in timing["per_chunk"]] == [SECTIONS | {"t", "attended"}] * 4
    bytes_per_frame = 2 * 4 * 64 * 4 * 32 * 4  # K and V x layers x tokens x heads x head_dim x fp32
    assert timing["kv_peak_frames"] == 12 and timing["kv_peak_bytes"] == 12 * bytes_per_frame


SMALL_ATTENTION = ["tokens_per_frame=12", "heads=2", "head_dim=16", "ffn_dim=32", "text_tokens=4", "warmup=0",
                   "repeats=1", "selection_repeats=1", "frames=[3,7]"]


def test_attention_benchmark_writes_its_results(tmp_path):
    from bench.perf.attention import report, run

    result = run(make_cfg("attention", SMALL_ATTENTION), tmp_path)
    on_disk = json.loads((tmp_path / "attention.json").read_text())
    assert on_disk["frames"] == [3, 7, 21]  # the dense policy's window is always measured
    for key in ("kernel_ms", "self_attn_ms", "processor_ms", "rope_tables_ms", "selection_ms"):
        assert len(on_disk[key]) == 3 and all(v > 0 for v in on_disk[key])
    assert on_disk["dense"]["frames"] == 21 and on_disk["relaxed"]["frames"] == 2 + 1 + 1 + 3
    estimate = on_disk["relaxed"]["selection_estimate"]
    assert estimate["chunk_dit_ms"] == pytest.approx(estimate["block_ms"] * 30 * 5)
    assert set(on_disk["targets"]) == {"kernel_ratio", "self_attn_ratio", "selection_fraction"}
    assert on_disk["dtype"] == "float32" and on_disk["device"].startswith("cpu")
    assert (tmp_path / "attention.png").stat().st_size > 0
    assert "dense-21 / relaxed-7 kernel" in report(result)


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
    for policy in (dense, relaxed):  # 12 latent frames of each of the config's prompts, per timed generation
        assert policy["latent_frames_per_s"] * policy["seconds"] == pytest.approx(12 * on_disk["num_videos"])
        assert min(r["seconds"] for r in policy["runs"]) <= policy["seconds"] <= max(r["seconds"] for r in policy["runs"])
    assert on_disk["speedup"] == pytest.approx(relaxed["latent_frames_per_s"] / dense["latent_frames_per_s"])
    assert len(dense["runs"]) == len(relaxed["runs"]) == 2
    assert SECTIONS | {"decode"} <= set(relaxed["runs"][0]["per_chunk_mean_s"])
    assert (dense["kv_peak_frames"], relaxed["kv_peak_frames"]) == (12, 9)  # the attendable store
    assert "speed-up dense / relaxed" in report(result)
