"""Speed of the offline evaluation: `python -m bench.perf.eval_speed [--seconds 60] [--size 128] [--fps 4]`.

Scores one synthetic video shaped like the toy model's (a 32x32 random world panning half a pixel
per frame, upscaled 4x nearest) with conf/eval/offline.yaml and prints the evaluation's seconds per
second of video, with the device and the backbones that ran. Building the backbones is timed apart
(it happens once per run, before generation). A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.evaluation import check_config, evaluate_videos
from bench.runs.outputs import device_name
from bench.runs.videos import write_video

CONF = Path(__file__).resolve().parents[2] / "conf/eval/offline.yaml"


def toy_like_video(seconds: int, fps: int, size: int) -> np.ndarray:
    frames = seconds * fps
    small = size // 4
    world = np.random.default_rng(0).integers(0, 256, (small, small + frames, 3), dtype=np.uint8)
    pan = np.stack([world[:, t // 2 : t // 2 + small] for t in range(frames)])
    return pan.repeat(4, axis=1).repeat(4, axis=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="video length (default 60)")
    parser.add_argument("--fps", type=int, default=4, help="frame rate (the toy's 4)")
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels (a multiple of 4)")
    parser.add_argument("overrides", nargs="*", help="eval.<key>=<value> overrides, e.g. reencode=false")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.fps < 1 or args.size < 16 or args.size % 4:
        parser.error("--seconds and --fps must be >= 1, --size a multiple of 4 and >= 16")
    cfg = OmegaConf.merge(OmegaConf.load(CONF), OmegaConf.from_dotlist(args.overrides))
    with tempfile.TemporaryDirectory(prefix="relaxbench-eval-speed-") as tmp:
        video = Path(tmp) / "toy_like.mp4"
        write_video(video, toy_like_video(args.seconds, args.fps, args.size), args.fps)
        start = time.perf_counter()
        check_config(cfg)
        built = time.perf_counter()
        metrics = evaluate_videos(cfg, [video], Path(tmp) / "metrics.json")
        scored = time.perf_counter()
    clips = len(metrics["clip_settings"]["videos"][video.name]["clips"])
    print(f"device: {device_name(torch.device(cfg.device))}")
    for name, entry in metrics["dimensions"].items():
        print(f"  {name:24s} {entry['backbone'] or 'missing'}")
    print(f"backbones built in {built - start:.2f} s")
    print(
        f"{args.seconds} s video at {args.fps} fps, {args.size}x{args.size}, {clips} clips, "
        f"reencode {'on' if cfg.reencode else 'off'}: {scored - built:.2f} s, "
        f"{(scored - built) / args.seconds:.3f} s per video-second"
    )


if __name__ == "__main__":
    main()
