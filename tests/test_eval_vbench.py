"""The real vbench 0.1.5 (in its own environment, built by scripts/vbench_env.sh) against relaxbench's
kernels on the same clips: temporal_flickering equal, dynamic_degree end to end with a random RAFT in
vbench's layout, and the RAFT / CLIP / AMT-S / MUSIQ ports equal to vbench's own on shared random
weights. Slow."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from bench.evaluation import evaluate_videos
from bench.evaluation.backbones.amt import AMTS, AMTInterpolator
from bench.evaluation.backbones.clip import ClipFeatures
from bench.evaluation.backbones.musiq import MUSIQ, MUSIQQuality
from bench.evaluation.backbones.raft import RAFT, RAFTFlow
from bench.evaluation.consistency import first_previous_similarity
from bench.evaluation.dimensions.imaging_quality import ImagingQuality
from bench.evaluation.dimensions.motion_smoothness import MotionSmoothness
from bench.evaluation.dimensions.temporal_flickering import TemporalFlickering
from bench.evaluation.vbench_runner import default_python
from bench.runs.videos import read_video, write_clip, write_video

REPO = Path(__file__).resolve().parent.parent
VBENCH_PYTHON = default_python()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not VBENCH_PYTHON.is_file(),
        reason=f"vbench's environment is absent ({VBENCH_PYTHON}); build it with scripts/vbench_env.sh",
    ),
]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Both sides on one thread: with several, torch 2.13 here and 2.14 there split the convolutions'
    sums differently, and AMT-S's uint8-truncated prediction can then differ in a pixel."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def in_vbench_env(code: str, cwd: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(
        [str(VBENCH_PYTHON), "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]


def random_musiq() -> MUSIQ:
    """A full-size MUSIQ whose random scores differ between frames by more than float rounding."""
    torch.manual_seed(0)
    model = MUSIQ()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05 if p.dim() > 1 else 0.1)
    torch.nn.init.normal_(model.head.weight, std=5.0)
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vbench_cache")
    torch.manual_seed(0)
    (root / "raft_model/models").mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in RAFT().state_dict().items()}, root / "raft_model/models/raft-things.pth")
    (root / "amt_model").mkdir()
    torch.save({"state_dict": AMTS().state_dict()}, root / "amt_model/amt-s.pth")
    (root / "pyiqa_model").mkdir()
    torch.save(random_musiq().state_dict(), root / "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth")
    # A small random CLIP made by openai-clip itself, weights rounded to half precision and traced into
    # a TorchScript archive like OpenAI's (clip.load reads an archive; its state-dict fallback is broken).
    (root / "clip_model").mkdir()
    in_vbench_env(
        """
        import torch
        from clip.model import CLIP
        torch.manual_seed(0)
        model = CLIP(embed_dim=32, image_resolution=224, vision_layers=2, vision_width=64, vision_patch_size=32,
                     context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
        model = model.half().float().eval()
        image, text = torch.rand(1, 3, 224, 224), torch.zeros(1, 77, dtype=torch.long)
        torch.jit.trace(model, (image, text), check_trace=False).save("clip_model/ViT-B-32.pt")
        """,
        root,
    )
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (64, 220, 3), dtype=np.uint8)
    moving = np.stack([texture[:, 3 * t : 3 * t + 96] for t in range(36)])  # 36 frames at 8 fps: 3 clips of 16
    flicker = np.stack([np.full((64, 96, 3), 90 + 30 * (t % 2), np.uint8) for t in range(20)])
    write_video(folder / "moving.mp4", moving, 8)
    write_video(folder / "flicker.mp4", flicker, 8)
    return sorted(folder.glob("*.mp4"))


def vbench_cfg(weights: Path, dims: list[str]):
    return OmegaConf.create(
        {
            "name": "vbench",
            "dimensions": dims,
            "weights_dir": str(weights),
            "python": str(VBENCH_PYTHON),
            "reencode": True,
            "work_dir": None,
            "device": "cpu",
        }
    )


def our_clips(video: Path) -> list[np.ndarray]:
    """The clips the runner hands vbench, decoded back (same writer, same settings)."""
    from bench.evaluation.clips import clip_bounds

    frames, info = read_video(video)
    clips = []
    for i, (start, stop) in enumerate(clip_bounds(len(frames), info.fps)):
        path = video.parent / f".check_{video.stem}_{i}.mp4"
        write_clip(path, frames[start:stop], int(info.fps), reencode=True)
        clips.append(read_video(path)[0])
        path.unlink()
    return clips


def test_vbench_flickering_equals_ours_and_dynamic_degree_runs(tmp_path, weights, videos):
    metrics = evaluate_videos(
        vbench_cfg(weights, ["temporal_flickering", "dynamic_degree"]), videos, tmp_path / "metrics.json"
    )
    assert metrics["evaluator"].startswith("vbench 0.1.5")
    flick = metrics["dimensions"]["temporal_flickering"]
    for video in videos:
        ours = [TemporalFlickering().score_clip(clip, 8) for clip in our_clips(video)]
        theirs = flick["per_clip"][video.name]
        assert [theirs[str(i)] for i in range(len(ours))] == ours  # bit for bit
    dyn = metrics["dimensions"]["dynamic_degree"]
    assert dyn["exact"] is True and dyn["backbone"] == "raft-things (vbench 0.1.5)"
    assert set(dyn["per_clip"]["moving.mp4"]) == {"0", "1", "2"}
    assert all(v in (0.0, 1.0) for v in dyn["per_clip"]["moving.mp4"].values())
    # Ours on the same random RAFT decides the same for every clip.
    ours = evaluate_videos(
        OmegaConf.create(
            dict(
                OmegaConf.load(REPO / "conf/eval/offline.yaml"),
                dimensions=["dynamic_degree"],
                weights_dir=str(weights),
                exact="always",
            )
        ),
        videos,
        tmp_path / "ours.json",
    )
    for video in videos:
        assert ours["dimensions"]["dynamic_degree"]["per_clip"][video.name] == dyn["per_clip"][video.name]


def test_raft_port_equals_vbench_raft(tmp_path, weights):
    rng = np.random.default_rng(1)
    pair = rng.integers(0, 256, (2, 60, 92, 3), dtype=np.uint8)  # not multiples of 8: padding exercised
    np.save(tmp_path / "pair.npy", pair)
    in_vbench_env(
        f"""
        import numpy as np, torch
        from easydict import EasyDict
        from vbench.third_party.RAFT.core.raft import RAFT
        from vbench.third_party.RAFT.core.utils_core.utils import InputPadder
        model = RAFT(EasyDict(small=False, mixed_precision=False, alternate_corr=False))
        state = torch.load("{weights}/raft_model/models/raft-things.pth", map_location="cpu")
        model.load_state_dict({{k.replace("module.", ""): v for k, v in state.items()}})
        model.eval()
        a, b = [torch.from_numpy(f).permute(2, 0, 1).float()[None] for f in np.load("pair.npy")]
        a, b = InputPadder(a.shape).pad(a, b)
        with torch.no_grad():
            _, flow = model(a, b, iters=20, test_mode=True)
        np.save("flow.npy", flow[0].permute(1, 2, 0).numpy())
        """,
        tmp_path,
    )
    ours = RAFTFlow(weights / "raft_model/models/raft-things.pth").flow(pair[0], pair[1])
    np.testing.assert_allclose(ours, np.load(tmp_path / "flow.npy"), atol=1e-4, rtol=1e-4)


def test_clip_port_equals_openai_clip_in_vbench(tmp_path, weights, videos):
    metrics = evaluate_videos(vbench_cfg(weights, ["background_consistency"]), videos, tmp_path / "metrics.json")
    theirs = metrics["dimensions"]["background_consistency"]["per_clip"]["moving.mp4"]
    features = ClipFeatures(weights / "clip_model/ViT-B-32.pt", "vitb32")
    ours = [first_previous_similarity(features.features(clip)) for clip in our_clips(videos[1])]
    assert [theirs[str(i)] for i in range(len(ours))] == pytest.approx(ours, abs=1e-4)
    assert json.loads((tmp_path / "metrics.json").read_text())["dimensions"]["background_consistency"]["exact"] is True


def test_amt_port_equals_vbench_motion_smoothness(tmp_path, weights, tmp_path_factory):
    # 128x128 (AMT's 1/64 correlation level needs at least 2x2 cells), 16 frames at 8 fps: one clip.
    folder = tmp_path_factory.mktemp("amt_videos")
    texture = np.random.default_rng(2).integers(0, 256, (128, 200, 3), dtype=np.uint8)
    write_video(folder / "pan.mp4", np.stack([texture[:, 2 * t : 2 * t + 128] for t in range(16)]), 8)
    metrics = evaluate_videos(
        vbench_cfg(weights, ["motion_smoothness"]), [folder / "pan.mp4"], tmp_path / "metrics.json"
    )
    theirs = metrics["dimensions"]["motion_smoothness"]["per_clip"]["pan.mp4"]["0"]
    rule = MotionSmoothness(AMTInterpolator(weights / "amt_model/amt-s.pth"))
    assert theirs == pytest.approx(rule.score_clip(our_clips(folder / "pan.mp4")[0], 8), abs=1e-9)


def test_musiq_port_equals_vbench_imaging_quality(tmp_path, weights, videos, tmp_path_factory):
    # Besides the small videos, one whose longer side (640) exceeds 512, so vbench's resize runs too.
    folder = tmp_path_factory.mktemp("musiq_videos")
    texture = np.random.default_rng(3).integers(0, 256, (96, 700, 3), dtype=np.uint8)
    write_video(folder / "wide.mp4", np.stack([texture[:, 4 * t : 4 * t + 640] for t in range(12)]), 8)
    all_videos = [*videos, folder / "wide.mp4"]
    metrics = evaluate_videos(vbench_cfg(weights, ["imaging_quality"]), all_videos, tmp_path / "metrics.json")
    entry = metrics["dimensions"]["imaging_quality"]
    assert entry["exact"] is True and entry["backbone"] == "musiq-spaq (vbench 0.1.5)"
    rule = ImagingQuality(MUSIQQuality(weights / "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth"))
    scores = []
    for video in all_videos:
        ours = [rule.score_clip(clip, 8) for clip in our_clips(video)]
        theirs = [entry["per_clip"][video.name][str(i)] for i in range(len(ours))]
        assert theirs == pytest.approx(ours, abs=1e-6), video.name
        scores += ours
    assert max(scores) - min(scores) > 1e-3  # the random network does tell the clips apart
