"""Exact backbones from a weights_dir in VBench's layout (tiny random networks with the real
architectures and state-dict names), the slow-fast fusion, and the errors bad input gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import bench.evaluation.backbones.dino
from bench.evaluation import evaluate_videos
from bench.evaluation.backbones.amt import AMTS
from bench.evaluation.backbones.clip import VisionTransformer
from bench.evaluation.backbones.dino import DinoFeatures, DinoViT
from bench.evaluation.backbones.musiq import MUSIQ
from bench.evaluation.backbones.raft import RAFT
from bench.evaluation.consistency import first_previous_similarity, fuse, map_fast_score
from bench.evaluation.mapping_tables import SUBJECT_MAPPING
from bench.runs.videos import list_videos, write_video
from memory_policies import ConfigError

REPO = Path(__file__).resolve().parent.parent
EXACT_DIMS = [
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "dynamic_degree",
    "motion_smoothness",
    "imaging_quality",
    "temporal_flickering",
]


def tiny_clip_state(output_dim: int) -> dict:
    torch.manual_seed(1)
    visual = VisionTransformer(resolution=224, patch=32, width=64, layers=1, output_dim=output_dim)
    for p in visual.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return {f"visual.{k}": v for k, v in visual.state_dict().items()}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """VBench's layout with tiny random networks (real RAFT-large and AMT-S: they have one size; MUSIQ
    narrowed to one block of width 48, its 6 heads kept)."""
    root = tmp_path_factory.mktemp("vbench_weights")
    torch.manual_seed(0)
    files = {
        "raft_model/models/raft-things.pth": {f"module.{k}": v for k, v in RAFT().state_dict().items()},
        "amt_model/amt-s.pth": {"state_dict": AMTS().state_dict()},
        "dino_model/dino_vitbase16_pretrain.pth": DinoViT(dim=64, depth=1, heads=1).state_dict(),
        "clip_model/ViT-B-32.pt": tiny_clip_state(32),
        "clip_model/ViT-L-14.pt": tiny_clip_state(768),
        "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth": torch.nn.Linear(768, 1).state_dict(),
        "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth": MUSIQ(dim=48, mlp_dim=96, layers=1).state_dict(),
    }
    for name, state in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, root / name)
    return root


def cfg(**overrides):
    config = OmegaConf.load(REPO / "conf/eval/offline.yaml")
    config.reencode = False
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    return config


@pytest.fixture(scope="module")
def still_video(tmp_path_factory) -> Path:
    """A still, non-square picture (DINO's position embedding must be interpolated): 8 frames at
    2 fps, two clips of 4."""
    path = tmp_path_factory.mktemp("videos") / "still.mp4"
    frame = np.random.default_rng(0).integers(0, 256, (128, 192, 3), dtype=np.uint8)
    write_video(path, np.repeat(frame[None], 8, axis=0), 2)
    return path


def test_exact_backbones_load_from_vbench_layout(tmp_path, weights_dir, still_video):
    metrics = evaluate_videos(
        cfg(dimensions=EXACT_DIMS, weights_dir=str(weights_dir), exact="always"), [still_video], tmp_path / "m.json"
    )
    dims = metrics["dimensions"]
    for name in EXACT_DIMS:
        assert dims[name]["exact"] is True, name
        assert "substitute" not in dims[name]["backbone"]
    assert dims["dynamic_degree"]["backbone"] == "raft-things (VBench)"
    assert dims["motion_smoothness"]["backbone"] == "amt-s (VBench)"
    assert dims["imaging_quality"]["backbone"] == "musiq-spaq (VBench)"
    assert np.isfinite(dims["imaging_quality"]["score"])
    assert 0.0 <= dims["motion_smoothness"]["score"] <= 1.0
    # A still picture is perfectly consistent whatever the network: cos(f, f) = 1.
    assert dims["subject_consistency"]["score"] == pytest.approx(1.0, abs=1e-5)
    assert dims["background_consistency"]["score"] == pytest.approx(1.0, abs=1e-5)
    assert np.isfinite(dims["aesthetic_quality"]["score"])
    assert dims["subject_consistency"]["fusion"].startswith("off (fast backbone dinov2")


class AngleFeatures(DinoFeatures):
    """DINO's place with features known by hand: a flat grey frame of level v is the unit vector at
    v degrees (v rounded to a multiple of 30, which absorbs H.264's +-1 on flat grey)."""

    def __init__(self, path, device="cpu") -> None:
        pass

    def features(self, frames: np.ndarray) -> torch.Tensor:
        angles = np.deg2rad(np.round(frames.mean(axis=(1, 2, 3)) / 30) * 30)
        return torch.from_numpy(np.stack([np.cos(angles), np.sin(angles)], axis=1))


def test_slow_fast_fusion_weights_and_mapping_by_hand(tmp_path, weights_dir, monkeypatch):
    monkeypatch.setattr(bench.evaluation.backbones.dino, "DinoFeatures", AngleFeatures)
    # 12 flat frames at 2 fps: three clips of 4 at 0, 60 and 120 degrees, each ending 30 degrees further.
    levels = [0, 0, 0, 30, 60, 60, 60, 90, 120, 120, 120, 150]
    write_video(tmp_path / "grey.mp4", np.stack([np.full((32, 32, 3), v, np.uint8) for v in levels]), 2)
    config = cfg(
        dimensions=["subject_consistency"], weights_dir=str(weights_dir), **{"fusion.subject_consistency": "dino"}
    )
    entry = evaluate_videos(config, [tmp_path / "grey.mp4"], tmp_path / "m.json")["dimensions"]["subject_consistency"]
    assert entry["fusion"].startswith("on (fast backbone dino-vitb16 (VBench)")
    assert entry["backbone"] == "dino-vitb16 (VBench)"
    # Slow, per clip: pairs (1, 1), (1, 1), (cos 30, cos 30) -> (2 + cos 30) / 3, the same in each clip.
    slow = (2 + np.sqrt(3) / 2) / 3
    # Fast, on the clips' first frames at 0, 60, 120 degrees: ((cos 60 + cos 60) / 2 + (cos 60 + 0) / 2) / 2.
    fast = (0.5 + 0.25) / 2
    # VBench-Long's subject table: 0.37 -> 0.902930005754908, 0.38 -> 0.904255123199727; 0.375 is midway.
    mapped = (0.902930005754908 + 0.904255123199727) / 2
    video = entry["fused"]["grey.mp4"]
    assert video["slow"] == pytest.approx(slow, abs=1e-12)
    assert video["fast"] == pytest.approx(fast, abs=1e-12)
    assert video["mapped_fast"] == pytest.approx(mapped, abs=1e-12)
    assert entry["score"] == pytest.approx(0.5 * slow + 0.5 * mapped, abs=1e-12)  # 0.9351..., not slow alone
    assert entry["per_clip"]["grey.mp4"] == pytest.approx({"0": slow, "1": slow, "2": slow}, abs=1e-12)


def test_consistency_rules_by_hand():
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]]), dim=-1)
    # i=1: (cos(f0,f1)=0.6 + cos(f0,f1)=0.6)/2 = 0.6; i=2: (cos(f1,f2)=0.8 + cos(f0,f2)=0)/2 = 0.4.
    assert first_previous_similarity(f) == pytest.approx(0.5)
    assert first_previous_similarity(torch.tensor([[-1.0, 0.0], [1.0, 0.0]])) == 0.0  # negatives clamp to 0
    assert first_previous_similarity(f[:1]) is None
    assert map_fast_score(0.5, SUBJECT_MAPPING) == SUBJECT_MAPPING[0.5]
    midway = (SUBJECT_MAPPING[0.5] + SUBJECT_MAPPING[0.51]) / 2
    assert map_fast_score(0.505, SUBJECT_MAPPING) == pytest.approx(midway)
    assert map_fast_score(-0.2, SUBJECT_MAPPING) == 0.0
    assert map_fast_score(0.995, SUBJECT_MAPPING) == pytest.approx((0.995516073547993 + 1.0) / 2)
    assert fuse(0.9, 0.8) == pytest.approx(0.85)
    assert fuse(0.9, 0.0) == 0.9  # upstream keeps the slow score when the mapped fast one is 0


def test_exact_always_names_the_missing_file(tmp_path, still_video):
    partial = tmp_path / "weights"
    (partial / "clip_model").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"raft_model/models/raft-things\.pth not found"):
        evaluate_videos(
            cfg(dimensions=["dynamic_degree"], weights_dir=str(partial), exact="always"),
            [still_video],
            tmp_path / "m.json",
        )
    with pytest.raises(FileNotFoundError, match=r"pyiqa_model/musiq_spaq_ckpt-358bb6af\.pth not found"):
        evaluate_videos(
            cfg(dimensions=["imaging_quality"], weights_dir=str(partial), exact="always"),
            [still_video],
            tmp_path / "m.json",
        )
    with pytest.raises(ConfigError, match="needs eval.weights_dir"):
        evaluate_videos(cfg(dimensions=["dynamic_degree"], exact="always"), [still_video], tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_unusable_weights_file_is_one_line_naming_it(tmp_path, still_video):
    weights = tmp_path / "weights"
    musiq = weights / "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth"
    raft = weights / "raft_model/models/raft-things.pth"
    for path in (musiq, raft):
        path.parent.mkdir(parents=True)
    musiq.write_bytes(b"not a checkpoint" * 64)  # corrupt
    torch.save({"weight": torch.zeros(3)}, raft)  # another network's weights
    cases = [("imaging_quality", musiq, "not a readable PyTorch file"), ("dynamic_degree", raft, "RuntimeError: ")]
    for dimension, path, why in cases:
        with pytest.raises(ConfigError, match=f"eval.weights_dir: {path} is not a usable checkpoint \\({why}") as info:
            evaluate_videos(cfg(dimensions=[dimension], weights_dir=str(weights)), [still_video], tmp_path / "m.json")
        assert "\n" not in str(info.value)
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (
            {"dimensions": ["dynamic_degree", "smoothness"]},
            ConfigError,
            r"eval.dimensions must be one of subject_consistency, .*; got 'smoothness'",
        ),
        ({"flow": "raft"}, ConfigError, "eval.flow must be one of dis, farneback; got 'raft'"),
        ({"exact": "yes"}, ConfigError, "eval.exact must be one of auto, always, never; got 'yes'"),
        ({"weights_dir": "/nonexistent/weights"}, FileNotFoundError, "eval.weights_dir: /nonexistent/weights"),
        ({"name": "musiq"}, ConfigError, "eval.name must be one of offline, vbench, none; got 'musiq'"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, still_video, overrides, error, match):
    config = cfg(dimensions=["dynamic_degree"])
    for key, value in overrides.items():
        OmegaConf.update(config, key, value)
    with pytest.raises(error, match=match) as info:
        evaluate_videos(config, [still_video], tmp_path / "m.json")
    assert "\n" not in str(info.value)


def test_bad_videos(tmp_path):
    with pytest.raises(FileNotFoundError, match="videos_dir: .*missing is not a directory"):
        list_videos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no .mp4 file"):
        list_videos(tmp_path / "empty")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    with pytest.raises(ConfigError, match="corrupt.mp4 is not a readable video"):
        evaluate_videos(cfg(dimensions=["temporal_flickering"]), [corrupt], tmp_path / "m.json")


def test_cli_writes_metrics_into_videos_dir_and_reports_errors_in_one_line(tmp_path, still_video):
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.evaluate",
            f"videos_dir={still_video.parent}",
            "eval.dimensions=[temporal_flickering]",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert (still_video.parent / "metrics.json").is_file()
    assert "temporal_flickering" in run.stdout
    assert not list(tmp_path.iterdir())  # Hydra leaves no run folder behind
    bad = subprocess.run(
        [sys.executable, "-m", "bench.evaluate", f"videos_dir={tmp_path / 'nope'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: videos_dir:")


@pytest.mark.parametrize(
    ("make", "inputs"),
    [
        (lambda: RAFT(), lambda d: (torch.rand(1, 3, 64, 96, device=d), torch.rand(1, 3, 64, 96, device=d), 2)),
        (lambda: AMTS(), lambda d: (*torch.rand(2, 1, 3, 128, 128, device=d), torch.full((1, 1, 1, 1), 0.5, device=d))),
        (lambda: DinoViT(dim=64, depth=1, heads=1), lambda d: (torch.rand(1, 3, 64, 96, device=d),)),
        (lambda: VisionTransformer(224, 32, 64, 1, 32), lambda d: (torch.rand(1, 3, 224, 224, device=d),)),
    ],
    ids=["raft", "amt-s", "dino", "clip"],
)
def test_exact_networks_keep_every_tensor_on_the_input_device(make, inputs):
    """On the meta device an op mixing in a tensor made on the CPU fails: eval.device=cuda checked on a CPU."""
    meta = torch.device("meta")
    assert make().to(meta)(*inputs(meta)).device == meta
