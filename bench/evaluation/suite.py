"""The in-process evaluator (eval=offline): decode each video once, clip by clip (VBench-Long clips),
score every clip on every dimension, fuse the consistency branches, add the long-horizon metrics,
write metrics.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.runs.videos import REENCODE, h264_roundtrip

from .builder import Setup
from .clips import CLIP_SECONDS, stream_clips
from .long_horizon import SimilarityTrack, long_horizon_entry, video_entry
from .results import ClipScores, dimension_entry, finish, missing_entry
from .scores import mean_or_none


def clip_settings(reencode_clips: bool) -> dict:
    return {
        "clip_seconds": CLIP_SECONDS,
        "rule": "clips of int(fps)*2 frames; a remainder becomes one more full clip ending on the last frame; "
        "a video shorter than one clip is kept whole",
        "reencode": dict(REENCODE) if reencode_clips else None,
        "videos": {},
    }


def evaluate_in_process(settings: dict, setup: Setup, videos: list[Path], out_path: Path) -> dict:
    """Score `videos` with the dimensions `setup` built from the checked config `settings`, one clip
    at a time: a video is never held whole, only its current clip and what the rules keep (each clip's
    first frame for the slow-fast fusion, the first and previous clip's feature for collapse)."""
    reencode_clips = settings["reencode"]
    clip_info = clip_settings(reencode_clips)
    clips: dict[str, ClipScores] = {name: {} for name in setup.dimensions}
    fused: dict[str, dict[str, dict]] = {name: {} for name in setup.dimensions}
    fusing = any(getattr(dimension, "fast", None) is not None for dimension in setup.dimensions.values())
    horizon: dict[str, dict] = {}
    for video in videos:
        fps, bounds, stream = stream_clips(video, clip_info)
        rate = int(fps)
        first_frames = []
        track = SimilarityTrack(setup.similarity)
        for name in clips:
            clips[name][video.name] = {}
        progress = tqdm(stream, total=len(bounds), desc=f"eval {video.name}", unit="clip", mininterval=1.0)
        for index, clip in enumerate(progress):
            if reencode_clips:
                clip = h264_roundtrip(clip, rate)
            if fusing:
                first_frames.append(clip[0])
            track.add(clip)
            for name, dimension in setup.dimensions.items():
                clips[name][video.name][index] = dimension.score_clip(clip, rate)
        for name, dimension in setup.dimensions.items():
            slow = mean_or_none(clips[name][video.name].values())
            if getattr(dimension, "fast", None) is not None and slow is not None:
                firsts = np.stack(first_frames)
                if reencode_clips and len(firsts) > 1:
                    firsts = h264_roundtrip(firsts, rate)  # upstream writes the first frames as a video too
                fused[name][video.name] = dimension.fused(slow, firsts)
        series = {name: [clips[name][video.name][i] for i in range(len(bounds))] for name in setup.dimensions}
        horizon[video.name] = video_entry(series, track, bounds, fps, clip_info["videos"][video.name]["frames"])

    dimensions = {}
    for name in settings["dimensions"]:
        if name in setup.missing:
            dimensions[name] = missing_entry(setup.missing[name])
            continue
        dimension = setup.dimensions[name]
        dimensions[name] = dimension_entry(
            dimension.info, clips[name], fused[name] or None, fusion=getattr(dimension, "fusion", None)
        )
    long_horizon = long_horizon_entry(horizon, setup.similarity.info)
    return finish(dimensions, clip_info, "relaxbench in-process", settings, out_path, long_horizon)
