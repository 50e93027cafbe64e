"""VBench-Long's clip rule, and the Quality score / Table-1 Average, against hand-computed values."""

from __future__ import annotations

import pytest

from bench.evaluation.clips import clip_bounds, clip_length
from bench.evaluation.scores import average6, quality_score
from memory_policies import ConfigError


@pytest.mark.parametrize(
    ("seconds", "fps", "clips", "clip_frames"),
    [(30, 16, 15, 32), (60, 16, 30, 32), (30, 4, 15, 8), (60, 4, 30, 8)],
)
def test_whole_clips(seconds, fps, clips, clip_frames):
    bounds = clip_bounds(seconds * fps, fps)
    assert clip_length(fps) == clip_frames
    assert bounds == [(i * clip_frames, (i + 1) * clip_frames) for i in range(clips)]


def test_remainder_becomes_a_full_clip_ending_on_the_last_frame():
    # 477 frames at 16 fps: 14 clips of 32 (448 frames) and 29 left -> one more clip [445, 477).
    bounds = clip_bounds(477, 16)
    assert len(bounds) == 15
    assert bounds[13] == (416, 448)
    assert bounds[-1] == (445, 477)
    assert all(stop - start == 32 for start, stop in bounds)


def test_short_video_is_kept_whole_and_fps_is_truncated():
    assert clip_bounds(20, 16) == [(0, 20)]
    assert clip_length(15.78) == 30  # int(15.78) * 2
    assert clip_bounds(61, 15.78) == [(0, 30), (30, 60), (31, 61)]


def test_bad_clip_inputs():
    with pytest.raises(ConfigError, match="fps"):
        clip_length(0.5)
    with pytest.raises(ConfigError, match="frame"):
        clip_bounds(0, 16)


RAW = {
    "subject_consistency": 0.95,
    "background_consistency": 0.96,
    "temporal_flickering": 0.97,
    "motion_smoothness": 0.98,
    "dynamic_degree": 0.40,
    "aesthetic_quality": 0.60,
    "imaging_quality": 0.70,
}


def test_quality_score_uses_vbench_normalisation():
    expected = (
        (0.95 - 0.1462) / (1 - 0.1462)
        + (0.96 - 0.2615) / (1 - 0.2615)
        + (0.97 - 0.6293) / (1 - 0.6293)
        + (0.98 - 0.706) / (0.9975 - 0.706)
        + 0.5 * 0.40
        + 0.60
        + 0.70
    ) / 6.5
    assert quality_score(RAW) == pytest.approx(expected, abs=1e-12)


def test_average6_is_the_plain_mean_without_flickering():
    assert average6(RAW) == pytest.approx((0.95 + 0.96 + 0.60 + 0.70 + 0.98 + 0.40) / 6, abs=1e-12)
    # The paper's Self Forcing 30 s row: 97.34, 96.47, 59.44, 68.58, 98.63, 36.62 -> 76.18.
    row = dict(
        zip(
            [
                "subject_consistency",
                "background_consistency",
                "aesthetic_quality",
                "imaging_quality",
                "motion_smoothness",
                "dynamic_degree",
            ],
            [97.34, 96.47, 59.44, 68.58, 98.63, 36.62],
        )
    )
    assert average6(row) == pytest.approx(76.18, abs=0.005)


def test_missing_dimension_makes_summaries_none_not_zero():
    partial = dict(RAW, subject_consistency=None)
    assert quality_score(partial) is None
    assert average6(partial) is None
    assert quality_score({k: v for k, v in RAW.items() if k != "imaging_quality"}) is None
