"""eval=vbench without vbench: the checks that keep vbench from ever downloading, and the reading of
its results file back into VBench-Long aggregates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from bench.evaluation import check_config, evaluate_videos
from bench.evaluation.vbench_runner import read_results
from bench.runs.videos import write_video
from memory_policies import ConfigError


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "v.mp4"
    write_video(path, np.zeros((8, 32, 32, 3), np.uint8), 4)
    return path


def cfg(**overrides):
    base = {
        "name": "vbench",
        "dimensions": ["dynamic_degree"],
        "weights_dir": None,
        "python": sys.executable,
        "reencode": True,
        "work_dir": None,
        "device": "cpu",
    }
    return OmegaConf.create(base | overrides)


def test_missing_environment_weights_and_files_are_named(tmp_path, video):
    with pytest.raises(
        FileNotFoundError, match=r"eval.python: .*nope/bin/python is not an existing file \(build .* scripts/vbench_env.sh\)"
    ):
        evaluate_videos(cfg(python=str(tmp_path / "nope/bin/python")), [video], tmp_path / "m.json")
    with pytest.raises(ConfigError, match="eval.weights_dir is required for eval=vbench"):
        evaluate_videos(cfg(), [video], tmp_path / "m.json")
    weights = tmp_path / "cache"
    weights.mkdir()
    with pytest.raises(FileNotFoundError, match=r"raft_model/models/raft-things\.pth not found \(vbench needs it"):
        evaluate_videos(cfg(weights_dir=str(weights)), [video], tmp_path / "m.json")
    (weights / "dino_model").mkdir()
    (weights / "dino_model/dino_vitbase16_pretrain.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"facebookresearch_dino_main/hubconf.py not found"):
        evaluate_videos(cfg(weights_dir=str(weights), dimensions=["subject_consistency"]), [video], tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_an_interpreter_without_vbench_is_refused_before_generation(tmp_path):
    weights = tmp_path / "cache"
    (weights / "raft_model/models").mkdir(parents=True)
    (weights / "raft_model/models/raft-things.pth").write_bytes(b"")
    # This test's own interpreter: every file is there, but it cannot import vbench.
    with pytest.raises(ConfigError, match=r"eval.python: .* does not import vbench \(.*No module named 'vbench'"):
        check_config(cfg(weights_dir=str(weights)))


def test_results_are_mapped_back_to_videos_and_clips(tmp_path):
    videos = [Path("a.mp4"), Path("b.mp4")]
    index = {"a__clip000.mp4": ("a.mp4", 0), "a__clip001.mp4": ("a.mp4", 1), "b__clip000.mp4": ("b.mp4", 0)}
    results = {
        "imaging_quality": [
            0.0,
            [
                {"video_path": "/x/clips/a__clip001.mp4", "video_results": 60.0},
                {"video_path": "/x/clips/a__clip000.mp4", "video_results": 40.0},
                {"video_path": "/x/clips/b__clip000.mp4", "video_results": 70.0},
            ],
        ],
        "dynamic_degree": [
            0.0,
            [
                {"video_path": "/x/clips/a__clip000.mp4", "video_results": True},
                {"video_path": "/x/clips/a__clip001.mp4", "video_results": False},
                {"video_path": "/x/clips/b__clip000.mp4", "video_results": False},
            ],
        ],
    }
    (tmp_path / "r.json").write_text(json.dumps(results))
    dims = read_results(tmp_path / "r.json", ["imaging_quality", "dynamic_degree"], index, videos)
    # MUSIQ is 0..100 per clip upstream: divided by 100; per video the clip mean, then the video mean.
    assert dims["imaging_quality"]["per_clip"] == {"a.mp4": {"0": 0.4, "1": 0.6}, "b.mp4": {"0": 0.7}}
    assert dims["imaging_quality"]["per_video"] == {"a.mp4": pytest.approx(0.5), "b.mp4": pytest.approx(0.7)}
    assert dims["imaging_quality"]["score"] == pytest.approx(0.6)
    assert dims["dynamic_degree"]["score"] == pytest.approx(0.25)
    assert dims["dynamic_degree"]["backbone"] == "raft-things (vbench 0.1.5)" and dims["dynamic_degree"]["exact"]
