"""bench.runs.videos, the one video I/O module, and the videos the evaluation refuses or cannot score:
a file cut short, frames too small to score, a single frame."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from omegaconf import OmegaConf

from bench.evaluation import evaluate_videos
from bench.runs.videos import (
    VideoError,
    h264_roundtrip,
    probe,
    read_frames,
    read_video,
    write_video,
)
from memory_policies import ConfigError

REPO = Path(__file__).resolve().parent.parent


def offline(*dimensions: str):
    cfg = OmegaConf.load(REPO / "conf/eval/offline.yaml")
    cfg.dimensions, cfg.reencode = list(dimensions), False
    return cfg


def panning(frames: int, height: int = 32, width: int = 48) -> np.ndarray:
    world = np.random.default_rng(0).integers(0, 256, (height, width + 2 * frames, 3), dtype=np.uint8)
    return np.stack([world[:, 2 * t : 2 * t + width] for t in range(frames)])


def test_write_then_read_keeps_count_rate_and_near_lossless_pixels(tmp_path):
    frames = panning(10)
    write_video(tmp_path / "v.mp4", frames, 4)
    decoded, info = read_video(tmp_path / "v.mp4")
    assert (info.fps, info.frame_count, info.width, info.height) == (4.0, 10, 48, 32)
    assert probe(tmp_path / "v.mp4") == info
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    # CRF 10 yuv444: every pixel within a few codes of what was written (random texture is the worst case).
    assert np.abs(decoded.astype(int) - frames).mean() < 3
    # An independent decoder (imageio's ffmpeg binary) gives the same pixels.
    assert np.array_equal(decoded, np.stack(imageio.mimread(tmp_path / "v.mp4", memtest=False)))
    picked = read_frames(tmp_path / "v.mp4", [0, 5, 9])
    assert all(np.array_equal(p, decoded[i]) for p, i in zip(picked, (0, 5, 9)))
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_h264_roundtrip_is_lossy_like_upstream_and_needs_even_sizes():
    frames = panning(4)
    again = h264_roundtrip(frames, 4)
    assert again.shape == frames.shape and not np.array_equal(again, frames)  # yuv420p at CRF 23 loses detail
    with pytest.raises(ConfigError, match="eval.reencode: .*even frame sizes, got 47x32"):
        h264_roundtrip(frames[:, :, :47], 4)


def faststart_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """As other tools write mp4s: the index (moov) first, so a file cut short still decodes partly."""
    writer = imageio.get_writer(
        path, fps=fps, codec="libx264", macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-crf", "10", "-movflags", "+faststart"],
    )
    for frame in frames:
        writer.append_data(frame)
    writer.close()


def test_truncated_video_is_an_error_naming_it_not_a_shorter_video(tmp_path):
    whole = tmp_path / "whole.mp4"
    faststart_video(whole, panning(40), 4)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    assert probe(cut).frame_count == 40  # the header still declares all of them
    with pytest.raises(VideoError, match=r"video .*cut\.mp4 is truncated: \d+ of the 40 frames it declares decode"):
        read_video(cut)
    with pytest.raises(ConfigError, match=r"cut\.mp4 is truncated") as info:
        evaluate_videos(offline("temporal_flickering"), [whole, cut], tmp_path / "m.json")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m.json").exists()
    # The file written with the index at the end loses the index when cut: unreadable, also one line.
    write_video(tmp_path / "run.mp4", panning(40), 4)
    (tmp_path / "run_cut.mp4").write_bytes((tmp_path / "run.mp4").read_bytes()[:5000])
    with pytest.raises(VideoError, match=r"run_cut\.mp4 is not a readable video"):
        read_video(tmp_path / "run_cut.mp4")


def test_tiny_frames_are_one_line_naming_the_file_and_size(tmp_path):
    write_video(tmp_path / "tiny.mp4", panning(8, 4, 4), 4)
    with pytest.raises(ConfigError, match=r"tiny\.mp4 is 4x4 pixels; the evaluation needs frames of at least 16x16"):
        evaluate_videos(offline("dynamic_degree", "temporal_flickering"), [tmp_path / "tiny.mp4"], tmp_path / "m.json")


def test_one_frame_video_has_no_scorable_clip_in_any_frame_pair_dimension(tmp_path):
    write_video(tmp_path / "one.mp4", panning(1), 4)
    dims = ("dynamic_degree", "temporal_flickering", "motion_smoothness")
    metrics = evaluate_videos(offline(*dims), [tmp_path / "one.mp4"], tmp_path / "m.json")
    for name in dims:
        entry = metrics["dimensions"][name]
        assert entry["score"] is None, name  # dynamic_degree used to say 0.0 here
        assert entry["per_clip"] == {"one.mp4": {"0": None}}
        assert entry["reason"].startswith("no clip could be scored")
