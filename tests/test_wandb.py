"""logger=wandb, offline: the run's files hold the resolved config, metrics, timings, per-chunk and
per-clip curves, the plan trace table and the videos; a study's runs share a group; a failed run is
marked failed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from study_helpers import run_in_process, tiny

import bench.run
from bench.runs.loggers import WandbLogger
from bench.runs.state import run_state

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

BLOCK, HEADER = 32768, 7  # the .wandb file is a LevelDB-style log of protobuf Records


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data, records, pending, pos = path.read_bytes(), [], b"", HEADER  # file header ":W&B" + magic + version
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        pending += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_run(run_dir: Path) -> dict:
    """What an offline W&B run recorded: run info, config, history rows, final summary, exit code."""
    wandb.teardown()  # the W&B service writes the run file asynchronously; this waits until it is flushed
    [run_file] = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    out = {"files": run_file.parent / "files", "history": [], "summary": {}, "config": {}}
    for record in read_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out |= {"group": record.run.run_group, "name": record.run.display_name, "tags": list(record.run.tags)}
            out["config"] |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
        elif kind == "config":
            out["config"] |= {item.key: json.loads(item.value_json) for item in record.config.update}
        elif kind == "history":
            out["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"] |= {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.summary.update}
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_offline_run_holds_config_metrics_timings_trace_and_videos(tmp_path, monkeypatch, random_toy_weights):
    run_dir = tmp_path / "run"
    run_in_process(monkeypatch, *tiny(random_toy_weights), "logger=wandb", f"hydra.run.dir={run_dir}")
    summary = json.loads((run_dir / "summary.json").read_text())
    logged = offline_run(run_dir)
    assert logged["exit_code"] == 0 and logged["group"] == "" and logged["tags"] == ["toy", "relaxed"]
    assert logged["config"]["policy"]["sink"] == 2 and logged["config"]["num_latent_frames"] == 6
    for key in ("status", "config_hash", "latent_frames_per_s", "end_to_end_s", "attended_frames", "kv_peak_bytes"):
        assert logged["summary"][key] == summary[key], key
    chunks = [row for row in logged["history"] if "chunk/index" in row]
    rows = [json.loads(line) for line in (run_dir / "per_chunk.jsonl").read_text().splitlines()]
    assert [row["chunk/index"] for row in chunks] == list(range(len(rows))) == [0, 1]  # 6 frames: 2 chunks
    assert [row["chunk/denoise"] for row in chunks] == pytest.approx([r["denoise"] for r in rows])
    [table] = (logged["files"] / "media" / "table").glob("plan_trace_*.table.json")
    trace = json.loads(table.read_text())
    assert "attended" in trace["columns"] and len(trace["data"]) == 2  # one video x two chunks
    assert len(list((logged["files"] / "media" / "videos").rglob("*.mp4"))) == 1


def test_study_runs_share_a_group_with_per_clip_curves_and_failures(tmp_path, monkeypatch, random_toy_weights):
    real_execute = bench.run.execute

    def evaluated(cfg, run_dir):
        if cfg.policy.sink == 2:
            raise RuntimeError("injected failure")
        summary = real_execute(cfg, run_dir)
        clips = {"dynamic_degree": {"score": 0.5, "backbone": "opencv_dis", "exact": False,
                                    "per_clip": {"000_a_red_square_moving_fast.mp4": {"0": 1.0, "1": 0.0, "2": 0.5}}}}
        (run_dir / "metrics.json").write_text(json.dumps({"dimensions": clips}))
        return summary

    monkeypatch.setattr(bench.run, "execute", evaluated)
    study = tmp_path / "sink_study"
    run_in_process(monkeypatch, "-m", "policy.sink=1,2", *tiny(random_toy_weights), "logger=wandb", f"hydra.sweep.dir={study}")
    done, failed = (offline_run(next(study.rglob(f"*policy.sink={s}*"))) for s in (1, 2))
    assert done["group"] == failed["group"] == "sink_study"
    curve = [(row["clip/index"], row["clip/dynamic_degree"]) for row in done["history"] if "clip/index" in row]
    assert curve == [(0, 1.0), (1, 0.0), (2, 0.5)]
    [table] = (done["files"] / "media" / "table").glob("per_clip_*.table.json")
    assert len(json.loads(table.read_text())["data"]) == 3
    assert failed["exit_code"] == 1 and failed["summary"]["status"] == "failed"
    assert failed["summary"]["error"] == "injected failure"


def test_a_wandb_failure_leaves_the_run_failed_not_complete(tmp_path, monkeypatch, random_toy_weights):
    def down(self, summary):
        raise RuntimeError("W&B is down")

    monkeypatch.setattr(WandbLogger, "finished", down)
    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError, match="W&B is down"):  # an unexpected error outside a study keeps its traceback
        run_in_process(monkeypatch, *tiny(random_toy_weights), "logger=wandb", f"hydra.run.dir={run_dir}")
    assert run_state(run_dir) == "failed"
    assert not (run_dir / "summary.json").exists() and (run_dir / "timing.json").exists()
    assert json.loads((run_dir / "error.json").read_text())["error"] == "W&B is down"
    assert offline_run(run_dir)["exit_code"] == 1  # and W&B was told the run failed


def test_a_bad_wandb_mode_leaves_no_summary(tmp_path, monkeypatch, random_toy_weights):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(monkeypatch, *tiny(random_toy_weights), "logger=wandb", "logger.mode=foo", f"hydra.run.dir={run_dir}")
    assert exit_info.value.code == 2 and run_state(run_dir) == "failed" and not (run_dir / "summary.json").exists()
    assert json.loads((run_dir / "error.json").read_text())["error"].startswith("logger.mode must be one of")
