"""The Hydra app `bench.run`: outputs, determinism, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir

from bench.run import execute


def make_cfg(overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def small(weights, *extra):
    return [f"model.backend.weights={weights}", "eval=none", "num_latent_frames=12",
            "prompts=[a red square moving fast,a blue circle moving slow]", *extra]


def test_run_writes_the_design_outputs(random_toy_weights, tmp_path):
    summary = execute(make_cfg(small(random_toy_weights)), tmp_path)
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["000_a_red_square_moving_fast.mp4", "001_a_blue_circle_moving_slow.mp4"]
    rows = [json.loads(line) for line in (tmp_path / "plan_trace.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4  # videos x chunks
    assert set(rows[0]) == {"video", "chunk", "t", "attended", "current", "candidates", "scores", "selected"}
    assert [r["t"] for r in rows[:4]] == [0, 3, 6, 9]
    assert rows[2]["attended"] == [[0, 2], [1, 3], [3, 4], [5, 5]] and rows[2]["candidates"] == [3]
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert len(timing["per_chunk"]) == 8 and timing["kv_peak_frames"] == 12
    assert timing["gpu_peak_bytes"] is None  # CPU run: no device allocator to read
    assert timing["provenance"]["model"] == "toy" and "commit" in timing["provenance"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["status"] == "complete" and on_disk["policy"] == "relaxed" and on_disk["seconds"] == 3.0
    assert on_disk["policy.sink"] == 2 and on_disk["attended_frames"] == 4
    assert not (tmp_path / "metrics.json").exists()


def test_same_seed_gives_identical_bytes(random_toy_weights, tmp_path):
    cfg = make_cfg(small(random_toy_weights, "policy=dense", "seed=3"))
    execute(cfg, tmp_path / "a")
    execute(cfg, tmp_path / "b")
    for name in ("plan_trace.jsonl", "videos/000_a_red_square_moving_fast.mp4", "videos/001_a_blue_circle_moving_slow.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    execute(make_cfg(small(random_toy_weights, "policy=dense", "seed=4")), tmp_path / "c")
    name = "videos/000_a_red_square_moving_fast.mp4"
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_user_overrides_reach_the_policy(random_toy_weights, tmp_path):
    cfg = make_cfg(small(random_toy_weights, "policy.sink=3", "policy.history=2", "policy.tail=1",
                         "policy.lam=1.0", "policy.rope=contiguous", "num_latent_frames=24", "seed=0"))
    summary = execute(cfg, tmp_path)
    assert (summary["policy.sink"], summary["policy.history"], summary["policy.lam"], summary["policy.rope"]) == (
        3, 2, 1.0, "contiguous")
    last = json.loads((tmp_path / "plan_trace.jsonl").read_text().splitlines()[7])
    assert [f for f, _ in last["attended"]][:3] == [0, 1, 2]
    assert all(f == p for f, p in last["attended"])  # contiguous: absolute positions


def cli(*overrides, cwd):
    return subprocess.run([sys.executable, "-m", "bench.run", *overrides, f"hydra.run.dir={cwd}/run"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.parametrize(
    "override, field",
    [
        ("policy.sink=-1", "policy.sink"),
        ("policy.reservoir=5", "policy.reservoir"),
        ("num_latent_frames=40", "num_latent_frames"),
        ("policy.lam=nan", "policy.lam"),
        ("policy.rope=spiral", "policy.rope"),
        ("prompts=[]", "prompts"),
        ("prompts=[a purple hexagon]", "prompts[0]"),
        ("model.backend.weights=/nonexistent/toy.safetensors", "model.backend.weights"),
        ("seed=-2", "seed"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(override, field, tmp_path, random_toy_weights):
    result = cli("eval=none", "num_latent_frames=12", f"model.backend.weights={random_toy_weights}", override,
                 cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and field in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()
    assert json.loads((tmp_path / "run" / "error.json").read_text())["error"]


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "toy.safetensors"
    bad.write_bytes(b"not a checkpoint")
    result = cli("eval=none", "num_latent_frames=12", f"model.backend.weights={bad}", cwd=tmp_path)
    assert result.returncode == 2 and "model.backend.weights" in result.stderr.splitlines()[-1]
