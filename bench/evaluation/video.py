"""Reading videos into uint8 RGB frames, and the H.264 round trip that VBench-Long gives every clip."""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from memory_policies import ConfigError

from .clips import clip_bounds, clip_length

VIDEO_SUFFIXES = (".mp4",)
# Upstream writes clips with torchvision.io.write_video: libx264, yuv420p, x264's default CRF.
REENCODE = {"codec": "libx264", "pix_fmt": "yuv420p", "crf": 23}


def list_videos(videos_dir: Path) -> list[Path]:
    """The mp4 files directly inside `videos_dir`, sorted by name."""
    videos_dir = Path(videos_dir).expanduser()
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"videos_dir: {videos_dir} is not a directory (give a folder of .mp4 files)")
    videos = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise ConfigError(f"videos_dir: {videos_dir} holds no .mp4 file")
    return videos


def read_video(path: Path) -> tuple[np.ndarray, float]:
    """All frames of `path` as uint8 (T, H, W, 3) RGB, and the frame rate the file declares."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} not found")
    capture = cv2.VideoCapture(str(path))
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames or not np.isfinite(fps) or fps <= 0:
        raise ConfigError(f"video {path} is not a readable video (no frames or no frame rate decoded)")
    return np.stack(frames), fps


def read_clipped(path: Path, settings: dict) -> tuple[np.ndarray, float, list[tuple[int, int]]]:
    """Frames, fps and VBench-Long clip bounds of a video; records them in `settings["videos"]`."""
    frames, fps = read_video(path)
    bounds = clip_bounds(len(frames), fps)
    settings["videos"][path.name] = {
        "frames": len(frames),
        "fps": fps,
        "clip_frames": clip_length(fps),
        "clips": [list(b) for b in bounds],
    }
    return frames, fps, bounds


def reencode(frames: np.ndarray, fps: int) -> np.ndarray:
    """Write `frames` to H.264 as upstream does for each clip and decode them again."""
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ConfigError(
            f"eval.reencode: H.264 {REENCODE['pix_fmt']} needs even frame sizes, got {width}x{height}; "
            "set eval.reencode=false"
        )
    with tempfile.TemporaryDirectory(prefix="relaxbench-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        writer = imageio.get_writer(
            path,
            fps=fps,
            codec=REENCODE["codec"],
            pixelformat=REENCODE["pix_fmt"],
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-crf", str(REENCODE["crf"])],
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        decoded, _ = read_video(path)
    return decoded
