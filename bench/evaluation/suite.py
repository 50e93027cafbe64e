"""The in-process evaluator (eval=offline): decode each video once, cut VBench-Long clips, score every
clip on every dimension, fuse the consistency branches, write metrics.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.runs.videos import REENCODE, h264_roundtrip

from .builder import Setup
from .clips import CLIP_SECONDS, read_clipped
from .results import ClipScores, dimension_entry, finish, mean_or_none, missing_entry


def clip_settings(reencode_clips: bool) -> dict:
    return {
        "clip_seconds": CLIP_SECONDS,
        "rule": "clips of int(fps)*2 frames; a remainder becomes one more full clip ending on the last frame; "
        "a video shorter than one clip is kept whole",
        "reencode": dict(REENCODE) if reencode_clips else None,
        "videos": {},
    }


def evaluate_in_process(settings: dict, setup: Setup, videos: list[Path], out_path: Path) -> dict:
    """Score `videos` with the dimensions `setup` built from the checked config `settings`."""
    reencode_clips = settings["reencode"]
    clip_info = clip_settings(reencode_clips)
    clips: dict[str, ClipScores] = {name: {} for name in setup.dimensions}
    fused: dict[str, dict[str, dict]] = {name: {} for name in setup.dimensions}
    for video in videos:
        frames, fps, bounds = read_clipped(video, clip_info)
        rate = int(fps)
        first_frames = []
        for name in clips:
            clips[name][video.name] = {}
        for index, (start, stop) in enumerate(tqdm(bounds, desc=f"eval {video.name}", unit="clip")):
            clip = frames[start:stop]
            if reencode_clips:
                clip = h264_roundtrip(clip, rate)
            first_frames.append(clip[0])
            for name, dimension in setup.dimensions.items():
                clips[name][video.name][index] = dimension.score_clip(clip, rate)
        for name, dimension in setup.dimensions.items():
            slow = mean_or_none(clips[name][video.name].values())
            if getattr(dimension, "fast", None) is not None and slow is not None:
                firsts = np.stack(first_frames)
                if reencode_clips and len(firsts) > 1:
                    firsts = h264_roundtrip(firsts, rate)  # upstream writes the first frames as a video too
                fused[name][video.name] = dimension.fused(slow, firsts)

    dimensions = {}
    for name in settings["dimensions"]:
        if name in setup.missing:
            dimensions[name] = missing_entry(setup.missing[name])
            continue
        dimension = setup.dimensions[name]
        dimensions[name] = dimension_entry(
            dimension.info, clips[name], fused[name] or None, fusion=getattr(dimension, "fusion", None)
        )
    return finish(dimensions, clip_info, "relaxbench in-process", settings, out_path)
