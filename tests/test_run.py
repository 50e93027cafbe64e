"""The Hydra app `bench.run`: outputs checked against hand counts and the files themselves, determinism,
noise per video, the run folder's guarantees (nothing looks complete unless it is), config_hash, and
one-line errors for bad input or an unwritable folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from study_helpers import run_in_process, tiny

import bench.run
import bench.runs.videos
from bench.generation.sampler import ARSampler
from bench.run import config_hash, execute, run_in_folder
from bench.runs.outputs import atomic_write_json
from bench.runs.state import MARKER, FolderBusy, claimed, run_state
from bench.runs.videos import read_video
from memory_policies import ConfigError, DensePolicy, RelaxedPolicy

RESULTS = {"summary.json", "metrics.json", "timing.json", "plan_trace.jsonl", "videos"}


def make_cfg(overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def small(weights, *extra):
    return [f"model.backend.weights={weights}", "eval=none", "num_latent_frames=12",
            "prompts=[a red square moving fast,a blue circle moving slow]", *extra]


def test_run_writes_the_design_outputs(random_toy_weights, tmp_path):
    run_in_folder(make_cfg(small(random_toy_weights)), tmp_path)
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["000_a_red_square_moving_fast.mp4", "001_a_blue_circle_moving_slow.mp4"]
    for video in videos:  # the toy decodes one 4 fps video frame per latent frame: 12 frames, 3 s
        frames, info = read_video(video)
        assert frames.shape == (12, 128, 128, 3) and info.fps == 4.0
    rows = [json.loads(line) for line in (tmp_path / "plan_trace.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4  # videos x chunks
    assert set(rows[0]) == {"video", "chunk", "t", "attended", "current", "candidates", "scores", "selected"}
    assert [r["t"] for r in rows[:4]] == [0, 3, 6, 9]
    assert rows[2]["attended"] == [[0, 2], [1, 3], [3, 4], [5, 5]] and rows[2]["candidates"] == [3]
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["chunks"] == 8 and timing["kv_peak_frames"] == 9  # relaxed default store=attendable: 2 + 4 + 3
    assert timing["latent_frames_per_s"] * timing["generation_s"] == pytest.approx(2 * 12)
    assert timing["gpu_peak_bytes"] is None  # CPU run: no device allocator to read
    assert timing["provenance"]["model"] == "toy" and "commit" in timing["provenance"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["status"], summary["policy"], summary["policy.sink"], summary["seed"]) == ("complete", "relaxed", 2, 0)
    assert (summary["num_videos"], summary["num_latent_frames"], summary["seconds"]) == (2, 12, 3.0)
    assert summary["attended_frames"] == max(len(r["attended"]) for r in rows) == 2 + 1 + 1  # sink + history + tail
    assert summary["kv_peak_frames"] == 9 and len(summary["config_hash"]) == 16
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / MARKER).exists()
    assert run_state(tmp_path) == "complete"


def test_same_seed_gives_identical_bytes(random_toy_weights, tmp_path):
    cfg = make_cfg(small(random_toy_weights, "policy=dense", "seed=3"))
    execute(cfg, tmp_path / "a")
    execute(cfg, tmp_path / "b")
    for name in ("plan_trace.jsonl", "videos/000_a_red_square_moving_fast.mp4", "videos/001_a_blue_circle_moving_slow.mp4"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    execute(make_cfg(small(random_toy_weights, "policy=dense", "seed=4")), tmp_path / "c")
    name = "videos/000_a_red_square_moving_fast.mp4"
    assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_batch_size_changes_speed_not_videos(random_toy_weights, tmp_path):
    for batch in (1, 2):
        execute(make_cfg(small(random_toy_weights, "policy=dense", "seed=3", f"batch_size={batch}")), tmp_path / f"b{batch}")
    for name in ("000_a_red_square_moving_fast.mp4", "001_a_blue_circle_moving_slow.mp4"):
        one, two = (read_video(tmp_path / f"b{batch}" / "videos" / name)[0].astype(int) for batch in (1, 2))
        # float rounding of a batched matmul, through uint8 and H.264 (a one-level change can move a macroblock
        # by a few levels); another noise would change every pixel by tens of levels
        assert np.abs(one - two).mean() < 0.05 and np.abs(one - two).max() <= 12


def generate(backend, policy, prompts, seeds, frames=18):
    plans = []
    latents, _ = ARSampler().generate(
        backend, policy, backend.encode_text(prompts), frames, [torch.Generator().manual_seed(s) for s in seeds],
        trace=lambda chunk, t, plan: plans.append(plan),
    )
    return latents, plans


def test_each_video_draws_its_own_noise(random_toy):
    prompts = ["a red square moving fast", "a blue circle moving slow"]
    together, _ = generate(random_toy, DensePolicy(), prompts, [5, 6])
    for row in range(2):
        alone, _ = generate(random_toy, DensePolicy(), prompts[row : row + 1], [5 + row])
        torch.testing.assert_close(together[row : row + 1], alone, rtol=1e-4, atol=1e-5)


def test_a_batch_shares_the_plan_of_its_first_video(random_toy):
    """docs/studies.md: with batch_size > 1 every video of a batch attends to the frames chosen from the first
    video's key prototypes (as the release does); the first video is the same as when generated alone."""
    prompts = ["a red square moving fast", "a blue circle moving slow"]
    batch, batch_plans = generate(random_toy, RelaxedPolicy(), prompts, [5, 6])
    first, first_plans = generate(random_toy, RelaxedPolicy(), prompts[:1], [5])
    assert len(batch_plans) == len(first_plans) == 6  # one plan per chunk for the whole batch
    assert any(plan.scores for plan in first_plans)  # 18 frames: the history frame is scored among candidates
    for shared, own in zip(batch_plans, first_plans):
        shared, own = shared.trace_fields(), own.trace_fields()
        assert shared.pop("scores") == pytest.approx(own.pop("scores"), rel=1e-4) and shared == own
    torch.testing.assert_close(batch[:1], first, rtol=1e-4, atol=1e-5)


def test_user_overrides_reach_the_policy(random_toy_weights, tmp_path):
    cfg = make_cfg(small(random_toy_weights, "policy.sink=3", "policy.history=2", "policy.tail=1",
                         "policy.lam=1.0", "policy.rope=contiguous", "num_latent_frames=24", "seed=0"))
    summary = execute(cfg, tmp_path)
    assert (summary["policy.sink"], summary["policy.history"], summary["policy.lam"], summary["policy.rope"]) == (
        3, 2, 1.0, "contiguous")
    last = json.loads((tmp_path / "plan_trace.jsonl").read_text().splitlines()[7])
    assert [f for f, _ in last["attended"]][:3] == [0, 1, 2]
    assert all(f == p for f, p in last["attended"])  # contiguous: absolute positions


def test_prompts_from_a_file(random_toy_weights, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square moving fast\n\n  a blue circle moving slow  \n")
    from_file = make_cfg([*tiny(random_toy_weights), f"prompts={prompts}"])
    summary = run_in_folder(from_file, tmp_path / "run")
    assert summary["num_videos"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "videos").iterdir()) == [
        "000_a_red_square_moving_fast.mp4", "001_a_blue_circle_moving_slow.mp4"]
    as_list = make_cfg([*tiny(random_toy_weights), "prompts=[a red square moving fast,a blue circle moving slow]"])
    assert config_hash(from_file) == config_hash(as_list)  # the hash is what is generated, not where it is read
    prompts.write_text("a red square moving fast\n")
    assert config_hash(from_file) != config_hash(as_list)


def test_config_hash_is_what_the_run_means_not_where_its_classes_live(random_toy_weights):
    cfg = make_cfg(small(random_toy_weights))
    moved = cfg.copy()
    # the layout before commit 25ac3d0: bench.sampler.ARSampler, memory_policies' classes elsewhere
    OmegaConf.update(moved, "sampler._target_", "bench.sampler.ARSampler")
    OmegaConf.update(moved, "policy._target_", "somewhere.else.entirely.RelaxedPolicy")
    assert config_hash(moved) == config_hash(cfg)
    assert config_hash(make_cfg(small(random_toy_weights, "logger=wandb"))) == config_hash(cfg)  # logging is not meaning
    renamed = cfg.copy()
    OmegaConf.update(renamed, "policy._target_", "memory_policies.DensePolicy")  # another class is another run
    assert config_hash(renamed) != config_hash(cfg)
    assert config_hash(make_cfg(small(random_toy_weights, "policy.sink=3"))) != config_hash(cfg)


def test_a_failed_rerun_leaves_nothing_of_the_earlier_run(random_toy_weights, tmp_path):
    run_in_folder(make_cfg(small(random_toy_weights)), tmp_path)
    (tmp_path / "metrics.json").write_text("{}")  # as an evaluated run leaves it
    assert RESULTS <= {p.name for p in tmp_path.iterdir()}
    with pytest.raises(ConfigError, match="policy.sink"):
        run_in_folder(make_cfg(small(random_toy_weights, "policy.sink=-1")), tmp_path)
    assert not RESULTS & {p.name for p in tmp_path.iterdir()} and run_state(tmp_path) == "failed"
    error = json.loads((tmp_path / "error.json").read_text())
    assert "policy.sink" in error["error"] and error["type"] == "ConfigError" and "traceback" not in error


def test_a_live_run_keeps_its_folder(random_toy_weights, tmp_path):
    (tmp_path / "summary.json").write_text("{}")  # what the live run has written so far
    with claimed(tmp_path):  # a live run holds the folder
        with pytest.raises(FolderBusy, match="another live run is writing"):
            run_in_folder(make_cfg(small(random_toy_weights)), tmp_path)
        assert run_state(tmp_path) == "complete" and (tmp_path / "summary.json").read_text() == "{}"
        assert not (tmp_path / "error.json").exists()


def test_a_killed_run_blocks_nothing_and_reads_interrupted(random_toy_weights, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    (tmp_path / ".run.lock").touch()
    (tmp_path / MARKER).write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename}))
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "000_half_written.mp4").write_bytes(b"\0" * 10)
    assert run_state(tmp_path) == "interrupted"
    run_in_folder(make_cfg(small(random_toy_weights)), tmp_path)
    assert run_state(tmp_path) == "complete" and not (tmp_path / MARKER).exists()
    assert len(list((tmp_path / "videos").iterdir())) == 2  # the killed run's partial video is gone


def test_two_runs_started_at_once_exactly_one_computes(random_toy_weights, tmp_path, monkeypatch):
    cfg, start, outcomes, computed = make_cfg(small(random_toy_weights)), threading.Barrier(2), [], []
    real_execute = bench.run.execute
    monkeypatch.setattr(bench.run, "execute", lambda cfg, run_dir: computed.append(1) or real_execute(cfg, run_dir))

    def one_run():
        start.wait()
        try:
            outcomes.append("done" if "latent_frames_per_s" in run_in_folder(cfg, tmp_path) else "?")
        except FolderBusy:
            outcomes.append("refused")

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(computed) == 1 and sorted(outcomes) == ["done", "refused"]
    assert run_state(tmp_path) == "complete" and not (tmp_path / "error.json").exists()


def test_a_full_folder_is_one_line_and_error_json(random_toy_weights, tmp_path, monkeypatch, capsys):
    class FullDisk:  # ffmpeg's pipe to a disk that filled up
        def append_data(self, frame):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass

    monkeypatch.setattr(bench.runs.videos, "_writer", lambda *args: FullDisk())
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(monkeypatch, *tiny(random_toy_weights), f"hydra.run.dir={tmp_path}")
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    video = tmp_path / "videos" / "000_a_red_square_moving_fast.mp4"
    assert err.strip().splitlines()[-1] == f"error: cannot write {video}: No space left on device"
    assert json.loads((tmp_path / "error.json").read_text())["error"] == f"cannot write {video}: No space left on device"
    assert run_state(tmp_path) == "failed" and not (tmp_path / "summary.json").exists()


def test_an_output_folder_that_cannot_be_made_is_one_line(random_toy_weights, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(monkeypatch, *tiny(random_toy_weights), f"hydra.run.dir={tmp_path / 'file' / 'run'}")
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err == f"error: cannot write {tmp_path / 'file' / 'run'}: Not a directory"


def test_result_files_get_the_users_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o027)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def read_only(command: list[str]) -> list[str] | None:
    """`command` run where the permission bits hold: as root, without the capability that overrides them."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    return None if setpriv is None else [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]


@pytest.mark.slow  # a subprocess (~5 s idle, 20 s on a busy machine); test_an_output_folder_that_cannot_be_made_is_one_line
def test_a_read_only_folder_is_one_line_and_exit_2(tmp_path, random_toy_weights):  # runs the same check in process
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    command = read_only([sys.executable, "-m", "bench.run", *tiny(random_toy_weights), f"hydra.run.dir={locked / 'run'}"])
    if command is None:
        pytest.skip("running as root without setpriv: permission bits cannot be enforced")
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: cannot write {locked / 'run'}: Permission denied"
