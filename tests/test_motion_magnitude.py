"""motion_magnitude (relaxbench's own metric) on videos of known motion, with the expected values
worked out by hand from the motion, and its place beside the VBench dimensions (labels, Quality score,
one flow computation shared with dynamic_degree)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf
from test_eval_kernels import REPO, offline_cfg, score, texture

from bench.evaluation import evaluate_videos, summary_fields
from bench.evaluation.backbones import BackboneInfo
from bench.evaluation.config import validate
from bench.evaluation.dimensions.dynamic_degree import DynamicDegree
from bench.evaluation.dimensions.motion_magnitude import MotionMagnitude
from bench.evaluation.motion import PairMotions
from bench.evaluation.scores import quality_score
from bench.runs.videos import write_video
from memory_policies import ConfigError


def panning(size: int, steps: list[int]) -> np.ndarray:
    """A window over a texture moving steps[i] pixels between frame i and i+1 (len(steps) + 1 frames)."""
    offsets = np.concatenate([[0], np.cumsum(steps)])
    base = texture(size, size + int(offsets[-1]) + 1)
    return np.stack([base[:, x : x + size] for x in offsets])


def test_still_video_has_no_motion(tmp_path):
    frames = np.repeat(texture(128, 128)[None], 16, axis=0)
    entry = score(tmp_path, frames, 4, "motion_magnitude")["dimensions"]["motion_magnitude"]
    assert entry["score"] == pytest.approx(0.0, abs=2e-4)  # the H.264 file's few-code noise, nothing more


def test_translation_slowing_down_gives_the_hand_computed_magnitude_per_clip(tmp_path):
    # 4 fps: every frame is sampled, clips of 8 frames. Clip 0 moves 6 px per frame, clip 1 3 px
    # (the step between frames 7 and 8 belongs to no clip). Diagonal of 128x128: 128 * sqrt(2).
    # The top 5 % of a flow field are its largest estimates, so the substitute's errors (at the edge
    # where new texture enters) lift it a few percent above the true step: 10 % tolerance.
    frames = panning(128, [6] * 8 + [3] * 7)
    entry = score(tmp_path, frames, 4, "motion_magnitude")["dimensions"]["motion_magnitude"]
    diagonal = 128 * math.sqrt(2)
    clips = entry["per_clip"]["video.mp4"]
    assert clips["0"] == pytest.approx(6 / diagonal, rel=0.1)
    assert clips["1"] == pytest.approx(3 / diagonal, rel=0.1)
    assert clips["0"] / clips["1"] == pytest.approx(2, rel=0.1)
    assert entry["score"] == pytest.approx(4.5 / diagonal, rel=0.1)
    assert entry["backbone"] == "relaxbench metric on opencv-dis (substitute for RAFT)" and entry["exact"] is False


def test_sampled_pairs_at_16_fps_move_twice_the_per_frame_step(tmp_path):
    # 16 fps keeps every 2nd frame (about 8 per second): a sampled pair moves 2 x 2 px.
    frames = panning(256, [2] * 31)
    entry = score(tmp_path, frames, 16, "motion_magnitude")["dimensions"]["motion_magnitude"]
    assert entry["score"] == pytest.approx(4 / (256 * math.sqrt(2)), rel=0.1)


class CountingFlow:
    """A flow stand-in: 20 of 400 pixels (the top 5 %) move by (3, 4), 5 px; the rest by (0.1, 0)."""

    info = BackboneInfo("counting flow", exact=True)

    def __init__(self) -> None:
        self.calls = 0

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        self.calls += 1
        field = np.zeros((20, 20, 2), np.float32)
        field[..., 0] = 0.1
        field[0, :, :] = (3.0, 4.0)
        return field


def test_both_motion_dimensions_read_one_flow_computation_per_clip():
    flow = CountingFlow()
    motions = PairMotions(flow)
    dynamic, magnitude = DynamicDegree(motions), MotionMagnitude(motions)
    clip = np.zeros((8, 20, 20, 3), np.uint8)
    assert magnitude.score_clip(clip, 4) == pytest.approx(5 / math.hypot(20, 20))
    # thres 6 * 20 / 256 = 0.47 px < 5 px in all 7 pairs, count_num round(4 * 8 / 16) = 2
    assert dynamic.score_clip(clip, 4) == 1.0
    assert flow.calls == 7  # 7 pairs, flowed once for both dimensions
    assert magnitude.score_clip(clip.copy(), 4) is not None and flow.calls == 14  # another clip is flowed anew
    assert magnitude.info.exact is False and dynamic.info.exact is True  # never labelled VBench itself


def test_summary_labels_it_relaxbench_and_the_quality_score_ignores_it(tmp_path):
    frames = panning(128, [6] * 15)
    write_video(tmp_path / "video.mp4", frames, 4)
    metrics = evaluate_videos(offline_cfg("dynamic_degree", "motion_magnitude"), [tmp_path / "video.mp4"], tmp_path / "m.json")
    fields = summary_fields(metrics)
    assert fields["motion_magnitude"] == pytest.approx(6 / (128 * math.sqrt(2)), rel=0.1)
    assert fields["motion_magnitude.backbone"].startswith("relaxbench metric on ")
    assert fields["motion_magnitude.exact"] is False
    raw = {"subject_consistency": 0.9, "background_consistency": 0.9, "temporal_flickering": 0.9,
           "motion_smoothness": 0.9, "dynamic_degree": 1.0, "aesthetic_quality": 0.5, "imaging_quality": 0.5}
    assert quality_score(raw) == quality_score(raw | {"motion_magnitude": 0.3}) is not None


def test_eval_vbench_refuses_it_in_one_line():
    cfg = OmegaConf.load(REPO / "conf/eval/vbench.yaml")
    cfg.dimensions = ["dynamic_degree", "motion_magnitude"]
    with pytest.raises(ConfigError, match=r"^eval.dimensions: motion_magnitude is relaxbench's own metric[^\n]*$"):
        validate(cfg)


def test_it_is_in_the_default_offline_evaluation():
    assert "motion_magnitude" in OmegaConf.load(REPO / "conf/eval/offline.yaml").dimensions
