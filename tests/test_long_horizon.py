"""Long-horizon metrics (relaxbench's own: drift, freeze, collapse) on videos of known motion, with the
values worked out by hand, and the streaming evaluation that reads them clip by clip.

All videos run at 4 fps: every frame is sampled for flow, a clip is 8 frames = 2 s."""

from __future__ import annotations

import math
import tracemalloc

import cv2
import numpy as np
import pytest
import torch
from test_eval_kernels import offline_cfg
from test_motion_magnitude import panning

from bench.evaluation import evaluate_videos, score_lines, summary_fields
from bench.evaluation.backbones import BackboneInfo
from bench.evaluation.long_horizon import (
    NetworkMeanFeature,
    PixelMeanFrame,
    SimilarityTrack,
    collapse,
    freeze,
    window_mean,
)
from bench.runs.videos import write_video

FPS = 4
DIAGONAL = 128 * math.sqrt(2)


def evaluate(tmp_path, frames: np.ndarray, *dimensions: str) -> dict:
    write_video(tmp_path / "video.mp4", frames, FPS)
    return evaluate_videos(offline_cfg(*dimensions), [tmp_path / "video.mp4"], tmp_path / "metrics.json")


def per_clip_steps(speeds: list[int]) -> list[int]:
    """Frame-to-frame steps (px) of a video whose clip k moves speeds[k] px per frame."""
    return [speeds[i // 8] for i in range(8 * len(speeds) - 1)]  # the step out of a clip belongs to none


def test_linear_slow_down_gives_hand_computed_series_slope_drift_and_freeze(tmp_path):
    # Clip k moves 7 - k px per frame (7, 6, ..., 3 over 10 s): motion magnitude per clip is
    # (7 - k) / diagonal, falling 1 px per 2 s, i.e. -30 px / diagonal per minute.
    # Δ_drift: the first 5 s are clips 0, 1 (2 s each) and half of clip 2 (1 s): (7*2 + 6*2 + 5*1) / 5
    # = 6.2 px; the last 5 s are half of clip 2 and clips 3, 4: (5*1 + 4*2 + 3*2) / 5 = 3.8 px: 2.4 px.
    # Freeze: below half of 7 px only clip 4 (3 px), from 8 s to the end: 8 s, 1 of 5 clips.
    # DIS's top-5 % flow errs a few percent high, a little more at higher speeds: 10 % per clip, 15 %
    # on the slope and on Δ_drift.
    speeds = [7, 6, 5, 4, 3]
    metrics = evaluate(tmp_path, panning(128, per_clip_steps(speeds)), "motion_magnitude")
    video = metrics["long_horizon"]["per_video"]["video.mp4"]
    assert video["clip_start_s"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert video["duration_s"] == 10.0
    series = video["series"]["motion_magnitude"]
    assert series == pytest.approx([v / DIAGONAL for v in speeds], rel=0.1)
    assert series == [metrics["dimensions"]["motion_magnitude"]["per_clip"]["video.mp4"][str(i)] for i in range(5)]
    assert video["slope_per_min"]["motion_magnitude"] == pytest.approx(-30 / DIAGONAL, rel=0.15)
    assert video["delta_drift"]["motion_magnitude"] == pytest.approx(2.4 / DIAGONAL, rel=0.15)
    assert (video["time_to_freeze_s"], video["frozen_fraction"]) == (8.0, pytest.approx(0.2))
    fields = summary_fields(metrics)
    assert fields["slope_per_min.motion_magnitude"] == video["slope_per_min"]["motion_magnitude"]
    assert fields["delta_drift.motion_magnitude"] == video["delta_drift"]["motion_magnitude"]
    assert fields["delta_drift.temporal_flickering"] is None  # not evaluated: None, never 0
    assert metrics["long_horizon"]["exact"] is False and "not VBench" in metrics["long_horizon"]["label"]


def test_steady_motion_never_freezes(tmp_path):
    metrics = evaluate(tmp_path, panning(128, [4] * 31), "motion_magnitude")  # 4 clips at 4 px per frame
    video = metrics["long_horizon"]["per_video"]["video.mp4"]
    assert video["frozen_fraction"] == 0.0
    assert video["time_to_freeze_s"] is None and video["reasons"]["time_to_freeze_s"].startswith("never")
    overall = metrics["long_horizon"]["overall"]
    assert overall["time_to_freeze_s"] is None and overall["frozen_videos"] == 0
    assert overall["reasons"]["time_to_freeze_s"].startswith("never")


def test_video_that_freezes_at_12_s_gives_the_hand_computed_time_and_fraction(tmp_path):
    # 4 px per frame for clips 0-5, then still from frame 48 on (clips 6-9): frozen from 12 s, 4 of 10 clips.
    frames = panning(128, [4] * 47 + [0] * 32)
    metrics = evaluate(tmp_path, frames, "motion_magnitude", "temporal_flickering")
    video = metrics["long_horizon"]["per_video"]["video.mp4"]
    assert video["time_to_freeze_s"] == 12.0
    assert video["frozen_fraction"] == pytest.approx(0.4)
    overall = metrics["long_horizon"]["overall"]
    assert (overall["time_to_freeze_s"], overall["frozen_fraction"], overall["frozen_videos"]) == (12.0, 0.4, 1)
    # Δ_drift of motion: 4 px over the first 5 s, nothing over the last 5 s
    assert video["delta_drift"]["motion_magnitude"] == pytest.approx(4 / DIAGONAL, rel=0.1)
    fields = summary_fields(metrics)
    assert (fields["time_to_freeze_s"], fields["frozen_fraction"]) == (12.0, pytest.approx(0.4))
    printed = [line.split()[:2] for line in score_lines(metrics)]
    assert ["time_to_freeze_s", "12.0000"] in printed and ["frozen_fraction", "0.4000"] in printed


def smooth_texture(height: int, width: int) -> np.ndarray:
    """Noise blurred over ~12 px: clips 16 px apart look alike, clips 48 px or more apart do not."""
    noise = np.random.default_rng(1).random((height, width, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 12)
    return ((smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255).astype(np.uint8)


def test_cut_back_to_the_first_clip_gives_the_hand_computed_collapse_fraction(tmp_path):
    # Clips 0-5 pan 2 px per frame (16 px per clip); clip 6 replays clip 0's frames. The video is 14 s,
    # the late clips (centre >= 7 s) are clips 3, 4, 5, 6: clips 3-5 are closer to their predecessor
    # (16 px away) than to the first clip (>= 48 px away); clip 6 is the first clip again: 1 of 4.
    base = smooth_texture(128, 128 + 2 * 48)
    panned = np.stack([base[:, 2 * i : 2 * i + 128] for i in range(48)])
    frames = np.concatenate([panned, panned[:8]])
    metrics = evaluate(tmp_path, frames, "temporal_flickering")
    lh = metrics["long_horizon"]
    video = lh["per_video"]["video.mp4"]
    to_first, to_previous = video["series"]["similarity_to_first"], video["series"]["similarity_to_previous"]
    assert to_first[0] == pytest.approx(1.0) and to_previous[0] is None
    assert to_first[6] > 0.99 and to_previous[6] < to_first[6] - 0.3
    assert all(to_previous[i] > to_first[i] for i in (3, 4, 5))
    assert video["collapse_fraction"] == 0.25
    assert summary_fields(metrics)["collapse_fraction"] == 0.25
    assert lh["similarity_backbone"] == PixelMeanFrame.info.name  # no weights: the labelled substitute
    assert summary_fields(metrics)["long_horizon.backbone"].startswith("relaxbench pixel substitute")


def test_short_video_gives_null_with_the_reason_never_zero(tmp_path):
    metrics = evaluate(tmp_path, panning(128, [3] * 15), "motion_magnitude")  # 2 clips, 4 s
    video = metrics["long_horizon"]["per_video"]["video.mp4"]
    assert video["delta_drift"]["motion_magnitude"] is None
    assert video["reasons"]["delta_drift.motion_magnitude"] == "the video is 4 s; Δ_drift needs at least 10 s"
    assert video["collapse_fraction"] is None and "needs 3 clips" in video["reasons"]["collapse_fraction"]
    assert video["slope_per_min"]["motion_magnitude"] is not None  # two clips are enough for a slope
    overall = metrics["long_horizon"]["overall"]
    assert overall["delta_drift"]["motion_magnitude"] is None and overall["reasons"]["delta_drift.motion_magnitude"]
    fields = summary_fields(metrics)
    assert fields["delta_drift.motion_magnitude"] is None and fields["collapse_fraction"] is None


def test_window_mean_weights_clips_by_their_overlap():
    starts, ends = np.array([0.0, 2.0, 4.0, 5.0]), np.array([2.0, 4.0, 6.0, 7.0])
    # [0, 5]: clip 0 for 2 s, clip 1 for 2 s, clip 2 for 1 s, clip 3 not at all
    assert window_mean([1.0, 2.0, 4.0, 100.0], starts, ends, 0.0, 5.0) == pytest.approx((2 + 4 + 4) / 5)
    assert window_mean([None, None, 4.0, 100.0], starts, ends, 0.0, 5.0) == 4.0
    assert window_mean([None, None, None, 1.0], starts, ends, 0.0, 5.0) is None


def test_freeze_needs_the_motion_to_stay_below_half():
    starts = np.arange(6) * 2.0
    values, _ = freeze([0.1, 0.04, 0.06, 0.04, 0.03, 0.02], starts)  # dips at clip 1, frozen for good from clip 3
    assert values == {"time_to_freeze_s": 6.0, "frozen_fraction": pytest.approx(4 / 6)}
    values, reasons = freeze([0.1, 0.04, 0.06], starts[:3])
    assert values["time_to_freeze_s"] is None and values["frozen_fraction"] == pytest.approx(1 / 3)
    values, reasons = freeze(None, starts)
    assert values == {"time_to_freeze_s": None, "frozen_fraction": None}
    assert reasons["frozen_fraction"].startswith("motion_magnitude was not evaluated")
    values, reasons = freeze([0.0, 0.0], starts[:2])
    assert values["frozen_fraction"] is None and "first clip has no motion_magnitude" in reasons["frozen_fraction"]


class Features:
    """Each 'clip' is its own feature vector."""

    info = PixelMeanFrame.info

    def feature(self, frames: np.ndarray) -> np.ndarray:
        return frames


def test_collapse_counts_late_clips_strictly_closer_to_the_first():
    track = SimilarityTrack(Features())
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    for feature in (e1, e2, e2, e1, (e1 + e2) / 2 ** 0.5, e2):
        track.add(feature)
    assert track.to_first == pytest.approx([1, 0, 0, 1, 2 ** -0.5, 0])
    assert track.to_previous[1:] == pytest.approx([0, 1, 0, 2 ** -0.5, 2 ** -0.5])
    starts = np.arange(6) * 2.0
    # late clips: centres 7, 9, 11 s of a 12 s video: clip 3 (1 > 0) collapses, clip 4 ties, clip 5 does not
    values, _ = collapse(track, starts, starts + 2, 12.0)
    assert values["collapse_fraction"] == pytest.approx(1 / 3)


class TokenNetwork:
    """A feature network stand-in: per frame the L2-normalised (mean red, mean green) of the frame."""

    info = BackboneInfo("dino-vitb16 (VBench)", exact=True)

    def features(self, frames: np.ndarray) -> torch.Tensor:
        tokens = torch.tensor(frames[..., :2].mean(axis=(1, 2)), dtype=torch.float64)
        return torch.nn.functional.normalize(tokens, dim=-1)


def test_network_similarity_averages_per_frame_features_and_is_never_labelled_vbench():
    similarity = NetworkMeanFeature(TokenNetwork())
    assert similarity.info == BackboneInfo("relaxbench metric on dino-vitb16", exact=False)
    red, green = np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0], green[..., 1] = 200, 50
    # per-frame features (1, 0) and (0, 1): their mean (0.5, 0.5), whatever the frames' brightness
    assert similarity.feature(np.concatenate([red, green])) == pytest.approx([0.5, 0.5])


def peak_bytes(tmp_path, clips: int) -> int:
    video = tmp_path / f"v{clips}.mp4"
    write_video(video, np.random.default_rng(0).integers(0, 256, (8 * clips, 64, 64, 3), dtype=np.uint8), FPS)
    tracemalloc.start()
    try:
        evaluate_videos(offline_cfg("temporal_flickering"), [video], tmp_path / f"m{clips}.json")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_video_length(tmp_path):
    # Held whole, the long video would need 28 clips x 8 frames x 12 KiB = 2.6 MiB more than the short one.
    short, long = peak_bytes(tmp_path, 4), peak_bytes(tmp_path, 32)
    assert long - short < 256 * 1024, (short, long)
