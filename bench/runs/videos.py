"""Every video the harness reads or writes goes through here: the run's mp4 writer, the reader the
evaluation and analysis use (frames, frame rate, declared frame count), and the H.264 round trip
VBench-Long gives each clip.

Reading is OpenCV's in-process FFmpeg, writing imageio-ffmpeg's `ffmpeg` binary (OpenCV's writer
cannot choose the H.264 CRF or pixel format). Both decode to the same pixels; the evaluation's scores
depend on these exact pixels."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from memory_policies import ConfigError

from .outputs import writing

VIDEO_SUFFIXES = (".mp4",)
# The run's videos: near-lossless H.264, yuv444 so that small sprites keep their colours.
RUN_VIDEO = {"codec": "libx264", "pix_fmt": "yuv444p", "crf": 10}
# Upstream writes every clip with torchvision.io.write_video: libx264, yuv420p, x264's default CRF.
REENCODE = {"codec": "libx264", "pix_fmt": "yuv420p", "crf": 23}
# A clip file that must not change the pixels (eval=vbench with eval.reencode=false).
LOSSLESS = {"codec": "libx264rgb", "pix_fmt": "rgb24", "crf": 0}


class VideoError(ConfigError):
    """A video file that cannot be used as it is; the message is one line naming the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header declares."""

    fps: float
    frame_count: int  # 0 when the container does not say
    width: int
    height: int


def list_videos(videos_dir: Path) -> list[Path]:
    """The mp4 files directly inside `videos_dir`, sorted by name."""
    videos_dir = Path(videos_dir).expanduser()
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"videos_dir: {videos_dir} is not a directory (give a folder of .mp4 files)")
    videos = sorted(p for p in videos_dir.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise ConfigError(f"videos_dir: {videos_dir} holds no .mp4 file")
    return videos


def _open(path: Path) -> tuple[cv2.VideoCapture, VideoInfo]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} not found")
    # FFmpeg's own complaints about a broken file would precede our one-line error on stderr.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    info = VideoInfo(
        fps=float(capture.get(cv2.CAP_PROP_FPS)),
        frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
        width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )
    if not capture.isOpened() or not np.isfinite(info.fps) or info.fps <= 0:
        capture.release()
        raise VideoError(f"video {path} is not a readable video (no frames or no frame rate decoded)")
    return capture, info


def probe(path: Path) -> VideoInfo:
    """The header of `path` (frame rate, declared frame count, size) without decoding it."""
    capture, info = _open(path)
    capture.release()
    return info


def _next_rgb(capture: cv2.VideoCapture) -> np.ndarray | None:
    ok, frame = capture.read()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None


def stream_video(path: Path) -> Iterator[np.ndarray]:
    """The frames of `path` one at a time as uint8 (H, W, 3) RGB, decoded as they are asked for. A file
    that decodes short of the frame count it declares (a truncated download or copy) is an error once
    it runs out, not a shorter video."""
    capture, info = _open(path)
    count = 0
    try:
        while (frame := _next_rgb(capture)) is not None:
            count += 1
            yield frame
    finally:
        capture.release()
    if not count:
        raise VideoError(f"video {path} is not a readable video (no frames or no frame rate decoded)")
    if count < info.frame_count:
        raise VideoError(f"video {path} is truncated: {count} of the {info.frame_count} frames it declares decode")


def read_video(path: Path) -> tuple[np.ndarray, VideoInfo]:
    """All frames of `path` as uint8 (T, H, W, 3) RGB and its header (see `stream_video`)."""
    frames = list(stream_video(path))
    return np.stack(frames), probe(path)


def read_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    """Only the frames at `indices` (sorted, within the declared count), decoding no further than the last."""
    capture, info = _open(path)
    wanted, frames = set(indices), {}
    try:
        for index in range(max(indices) + 1):
            frame = _next_rgb(capture)
            if frame is None:
                raise VideoError(f"video {path} is truncated: frame {index} of {info.frame_count} does not decode")
            if index in wanted:
                frames[index] = frame
    finally:
        capture.release()
    return [frames[i] for i in indices]


def _writer(path: Path, fps: float, settings: dict, extra: tuple[str, ...] = ()):
    return imageio.get_writer(
        path,
        fps=fps,
        codec=settings["codec"],
        pixelformat=settings["pix_fmt"],
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-crf", str(settings["crf"]), *extra],
    )


def _write(path: Path, frames: np.ndarray, fps: float, settings: dict) -> None:
    writer = _writer(path, fps, settings)
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


class VideoWriter:
    """The run's near-lossless H.264 mp4, written as the video is generated (`append` each chunk's
    frames; ffmpeg encodes as they come, nothing of the whole video is held) into a temporary file
    that becomes `path` only when the block ends without an error, so a reader never sees half a video.
    A file system error is one OutputError line naming the video."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp.mp4")
        self.fps = fps

    def __enter__(self) -> VideoWriter:
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = _writer(self.tmp, self.fps, RUN_VIDEO, ("-preset", "medium"))
        return self

    def append(self, frames: np.ndarray) -> None:
        """uint8 frames (T, H, W, 3), the next of the video."""
        with writing(self.path):
            for frame in frames:
                self.writer.append_data(frame)

    def __exit__(self, kind, err, tb) -> None:
        try:
            with writing(self.path):
                self.writer.close()
                if kind is None:
                    os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)  # left only when writing failed


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """uint8 frames (T, H, W, 3) to the run's mp4 at once (`VideoWriter`)."""
    with VideoWriter(path, fps) as writer:
        writer.append(frames)


def write_clip(path: Path, frames: np.ndarray, fps: int, reencode: bool) -> None:
    """A clip file as upstream writes it (H.264 yuv420p CRF 23), or losslessly when not re-encoding."""
    _write(Path(path), frames, fps, REENCODE if reencode else LOSSLESS)


def h264_roundtrip(frames: np.ndarray, fps: int) -> np.ndarray:
    """`frames` written as upstream writes each clip (`REENCODE`) and decoded again."""
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ConfigError(
            f"eval.reencode: H.264 {REENCODE['pix_fmt']} needs even frame sizes, got {width}x{height}; "
            "set eval.reencode=false"
        )
    with tempfile.TemporaryDirectory(prefix="relaxbench-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        write_clip(path, frames, fps, reencode=True)
        return read_video(path)[0]
