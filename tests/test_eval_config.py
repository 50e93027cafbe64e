"""The `eval` group before any video exists: every field checked (one line naming eval.<field>, the
value given and what is allowed), unknown keys refused, every backbone built once by check_config
and reused by the evaluation, and a bare install (no brisque wheel) still evaluating."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import bench.evaluate
import bench.evaluation.builder
from bench.evaluation import check_config, evaluate_videos
from bench.runs.videos import write_video
from memory_policies import ConfigError

REPO = Path(__file__).resolve().parent.parent


def offline(**overrides):
    cfg = OmegaConf.load(REPO / "conf/eval/offline.yaml")
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """16 frames at 4 fps (two clips of 8) of a texture panning 6 px per frame: dynamic at 64x64."""
    world = np.random.default_rng(0).integers(0, 256, (64, 64 + 6 * 16, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("videos") / "pan.mp4"
    write_video(path, np.stack([world[:, 6 * t : 6 * t + 64] for t in range(16)]), 4)
    return path


NOT_CUDA = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("name", "musiq", "one of offline, vbench, none"),
        ("dimensions", [], "a non-empty list of distinct names"),
        ("dimensions", "dynamic_degree", "a non-empty list of distinct names"),
        ("dimensions", ["dynamic_degree", "dynamic_degree"], "a non-empty list of distinct names"),
        ("dimensions", ["dynamic_degree", "smoothness"], "one of subject_consistency, "),
        ("dimensions", [["dynamic_degree"]], "one of subject_consistency, "),
        ("weights_dir", 5, "null or the path of an existing directory"),
        ("weights_dir", "", "null or the path of an existing directory"),
        ("exact", "yes", "one of auto, always, never"),
        ("reencode", "yes", "true or false"),
        ("reencode", 1, "true or false"),
        ("flow", "raft", "one of dis, farneback"),
        ("interpolation", None, "one of auto, rife, flow_warp"),
        ("imaging", "musiq", "one of brisque"),
        ("fusion", "auto", "a mapping of enabled, subject_consistency, background_consistency"),
        ("fusion.enabled", True, "one of auto, off"),
        ("fusion.subject_consistency", "clip", "one of dino, dinov2, dreamsim"),
        ("fusion.background_consistency", "dino", "one of clip, dreamsim"),
        ("device", "gpu", "one of cpu, cuda or cuda:N"),
        ("device", "cuda:-1", "one of cpu, cuda or cuda:N"),
                    ],
)
def test_each_bad_field_is_one_line_naming_it(key, value, allowed):
    with pytest.raises(ConfigError) as info:
        check_config(offline(**{key: value}))
    message = str(info.value)
    given = repr(value)
    assert message.startswith(f"eval.{key} must be {allowed}"), message
    assert message.endswith(f"got {given}") or allowed.startswith("one of subject"), message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize(("key", "value"), [("foo", 1), ("fusion.foo", "x")])
def test_unknown_keys_are_refused(key, value):
    with pytest.raises(ConfigError) as info:
        check_config(offline(**{key: value}))
    node = "eval." + key.rpartition(".")[0] if "." in key else "eval"
    assert str(info.value).startswith(f"eval.{key} is not a field of {node}; the fields are: ")


def test_a_cuda_device_this_machine_lacks_is_refused():
    with pytest.raises(ConfigError, match=f"^eval.device={NOT_CUDA} but (CUDA is not available here|this machine has)"):
        check_config(offline(device=NOT_CUDA))


def test_long_values_are_cut_and_vbench_fields_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"got 'xxxx+\.\.\.$") as info:
        check_config(offline(flow="x" * 10_000))
    assert len(str(info.value)) < 150
    vbench = OmegaConf.load(REPO / "conf/eval/vbench.yaml")
    for key, value, error in [
        ("python", str(tmp_path / "none/bin/python"), FileNotFoundError),
        ("work_dir", str(tmp_path / "nowhere"), FileNotFoundError),
        ("flow", "dis", ConfigError),  # an offline field is unknown to eval=vbench
    ]:
        cfg = vbench.copy()
        OmegaConf.update(cfg, key, value, force_add=True)
        with pytest.raises(error, match=f"eval.{key}"):
            check_config(cfg)
    with pytest.raises(ConfigError, match="eval.foo is not a field of eval"):
        check_config(OmegaConf.create({"name": "none", "foo": 1}))
    check_config(OmegaConf.create({"name": "none"}))


def test_check_config_builds_once_and_the_evaluation_reuses_it(monkeypatch, video, tmp_path):
    builds = []
    real = bench.evaluation.builder.build_setup
    monkeypatch.setattr(bench.evaluation.builder, "build_setup", lambda s: builds.append(1) or real(s))
    cfg = offline(dimensions=["dynamic_degree"], reencode=False)
    check_config(cfg)
    assert len(builds) == 1
    evaluate_videos(cfg, [video], tmp_path / "m.json")
    assert len(builds) == 1  # the networks check_config built
    evaluate_videos(cfg, [video], tmp_path / "m.json")
    assert len(builds) == 2  # handed over once, then released: a later call builds afresh


def test_without_the_brisque_wheel_imaging_quality_is_missing_with_the_hint(monkeypatch, video, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "brisque" else real_find_spec(name, *a)
    )
    monkeypatch.setitem(sys.modules, "brisque", None)  # `import brisque` now fails, as on a bare install
    cfg = offline()  # the default eval=offline, every dimension
    check_config(cfg)
    metrics = evaluate_videos(cfg, [video], tmp_path / "m.json")
    dims = metrics["dimensions"]
    imaging = dims["imaging_quality"]
    assert imaging["score"] is None and imaging["backbone"] is None and imaging["exact"] is None
    assert "pip install 'relaxbench[quality]'" in imaging["reason"] and "C compiler" in imaging["reason"]
    assert "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth" in imaging["reason"]
    assert dims["temporal_flickering"]["score"] is not None
    assert dims["dynamic_degree"]["score"] == 1.0  # 6 px per frame > 6 * 64 / 256 = 1.5 px
    assert dims["motion_smoothness"]["backbone"].endswith("(substitute for AMT-S)")
    assert 0.0 < dims["motion_smoothness"]["score"] <= 1.0
    assert metrics["quality_score"] is None  # a missing dimension is never 0


def test_a_weights_file_holding_another_object_fails_check_config(tmp_path):
    weights = tmp_path / "weights"
    for key, obj in [("raft_model/models/raft-things.pth", [1, 2, 3]), ("amt_model/amt-s.pth", "text")]:
        path = weights / key
        path.parent.mkdir(parents=True)
        torch.save(obj, path)
    for dimension, name in [("dynamic_degree", "raft-things.pth"), ("motion_smoothness", "amt-s.pth")]:
        with pytest.raises(ConfigError, match=f"eval.weights_dir: .*{name} is not a usable checkpoint") as info:
            check_config(offline(dimensions=[dimension], weights_dir=str(weights)))
        assert "\n" not in str(info.value)


def evaluate_cli(monkeypatch, capsys, *overrides: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["bench.evaluate", *overrides])
    with pytest.raises(SystemExit) as exit_info:
        bench.evaluate.main()
    return exit_info.value.code, capsys.readouterr().err


def test_bench_evaluate_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, video):
    weights = tmp_path / "weights" / "raft_model/models"
    weights.mkdir(parents=True)
    torch.save({"not": "raft"}, weights / "raft-things.pth")
    cases = [
        ((), "videos_dir"),
        ((f"videos_dir={video.parent}", f"output={tmp_path}"), f"output: {tmp_path} is a directory"),
        (
            (f"videos_dir={video.parent}", "eval.dimensions=[dynamic_degree]", f"eval.weights_dir={tmp_path / 'weights'}"),
            "raft-things.pth is not a usable checkpoint",
        ),
        ((f"videos_dir={video.parent}", "+eval.foo=1"), "eval.foo is not a field of eval"),
        ((f"videos_dir={video.parent}", "+foo=1"), "foo is not a field of bench.evaluate"),
    ]
    for overrides, expected in cases:
        code, err = evaluate_cli(monkeypatch, capsys, *overrides)
        last = err.strip().splitlines()[-1]
        assert code == 2, err
        assert last.startswith("error: ") and expected in last and "Traceback" not in err, err
