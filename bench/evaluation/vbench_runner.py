"""eval=vbench: relaxbench cuts the videos into VBench-Long clips, vbench 0.1.5 scores each clip with
its own kernels in its own environment (its numpy<2 / transformers pins stay out of ours), and
relaxbench aggregates `<name>_eval_results.json` by the VBench-Long rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from memory_policies import ConfigError

from .backbones import WEIGHT_FILES, BackboneInfo
from .registry import requested_dimensions
from .results import dimension_entry, finish
from .suite import clip_settings
from .video import REENCODE, read_clipped

DRIVER = Path(__file__).with_name("vbench_driver.py")
RUN_NAME = "relaxbench"
# What each vbench kernel needs under VBENCH_CACHE_DIR in local mode (checked first: vbench would wget).
NEEDS = {
    "dynamic_degree": ("raft",),
    "motion_smoothness": ("amt_s",),
    "subject_consistency": ("dino_vitb16",),
    "background_consistency": ("clip_vitb32",),
    "aesthetic_quality": ("clip_vitl14", "laion_head"),
    "imaging_quality": ("musiq_spaq",),
    "temporal_flickering": (),
}
DINO_HUB_DIR = "dino_model/facebookresearch_dino_main"  # torch.hub source='local' repo for DINO
BACKBONES = {
    "dynamic_degree": "raft-things",
    "motion_smoothness": "amt-s",
    "subject_consistency": "dino-vitb16",
    "background_consistency": "clip-vitb32",
    "aesthetic_quality": "clip-vitl14 + laion-aesthetic head",
    "imaging_quality": "musiq-spaq",
    "temporal_flickering": "none (pixel formula)",
}


def default_python() -> Path:
    """Where scripts/vbench_env.sh puts the environment by default."""
    env = os.environ.get("RELAXBENCH_VBENCH_ENV") or Path.home() / ".cache/relaxbench/vbench-env"
    return Path(env) / "bin/python"


def check_inputs(cfg: DictConfig, dims: list[str]) -> tuple[Path, Path]:
    python = Path(cfg.get("python") or default_python()).expanduser()
    if not python.is_file():
        raise FileNotFoundError(
            f"eval.python: {python} not found (build vbench's environment with scripts/vbench_env.sh)"
        )
    if not cfg.get("weights_dir"):
        raise ConfigError("eval.weights_dir is required for eval=vbench (a folder in VBench's weight layout)")
    weights = Path(cfg.weights_dir).expanduser()
    if not weights.is_dir():
        raise FileNotFoundError(f"eval.weights_dir: {weights} is not a directory (VBench's weight layout)")
    needed = [weights / WEIGHT_FILES[key] for dim in dims for key in NEEDS[dim]]
    for path in needed:
        if not path.is_file():
            raise FileNotFoundError(
                f"eval.weights_dir: {path} not found (vbench needs it and relaxbench never downloads)"
            )
    if "subject_consistency" in dims and not (weights / DINO_HUB_DIR / "hubconf.py").is_file():
        raise FileNotFoundError(
            f"eval.weights_dir: {weights / DINO_HUB_DIR}/hubconf.py not found (DINO's torch.hub repo)"
        )
    return python, weights


def write_clip(path: Path, frames: np.ndarray, fps: int, reencode_clips: bool) -> None:
    """H.264 as upstream (yuv420p crf 23), or losslessly (libx264rgb crf 0) when re-encoding is off."""
    if reencode_clips:
        codec, pixfmt, params = REENCODE["codec"], REENCODE["pix_fmt"], ["-crf", str(REENCODE["crf"])]
    else:
        codec, pixfmt, params = "libx264rgb", "rgb24", ["-crf", "0"]
    writer = imageio.get_writer(
        path,
        fps=fps,
        codec=codec,
        pixelformat=pixfmt,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=params,
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def split_videos(
    videos: list[Path], clips_dir: Path, reencode_clips: bool, settings: dict
) -> dict[str, tuple[str, int]]:
    """Write every clip as `<video stem>__clip<i>.mp4`; returns clip file name -> (video name, clip index)."""
    index: dict[str, tuple[str, int]] = {}
    for video in videos:
        frames, fps, bounds = read_clipped(video, settings)
        for i, (start, stop) in enumerate(tqdm(bounds, desc=f"clips {video.name}", unit="clip")):
            name = f"{video.stem}__clip{i:03d}.mp4"
            write_clip(clips_dir / name, frames[start:stop], int(fps), reencode_clips)
            index[name] = (video.name, i)
    return index


def read_results(path: Path, dims: list[str], index: dict[str, tuple[str, int]], videos: list[Path]) -> dict:
    """vbench's `<name>_eval_results.json` ({dim: [mean, [{video_path, video_results}, ...]]}) -> per-clip scores."""
    results = json.loads(path.read_text())
    dimensions = {}
    for dim in dims:
        clips = {video.name: {} for video in videos}
        for item in results[dim][1]:
            video, clip = index[Path(item["video_path"]).name]
            value = float(item["video_results"])
            clips[video][clip] = value / 100.0 if dim == "imaging_quality" else value  # MUSIQ is 0..100 per clip
        info = BackboneInfo(f"{BACKBONES[dim]} (vbench 0.1.5)", exact=True)
        fusion = "off (vbench custom_input mode: slow branch only)" if dim.endswith("_consistency") else None
        dimensions[dim] = dimension_entry(info, clips, fusion=fusion)
    return dimensions


def evaluate_with_vbench(cfg: DictConfig, videos: list[Path], out_path: Path) -> dict:
    dims = requested_dimensions(cfg)
    python, weights = check_inputs(cfg, dims)
    reencode_clips = bool(cfg.get("reencode", True))
    settings = clip_settings(reencode_clips)
    if not reencode_clips:
        settings["reencode"] = None
        settings["clip_files"] = "libx264rgb crf 0 (lossless), as vbench reads clips from files"
    work_root = cfg.get("work_dir")
    with tempfile.TemporaryDirectory(prefix="relaxbench-vbench-", dir=work_root) as tmp:
        clips_dir, output_dir = Path(tmp) / "clips", Path(tmp) / "vbench_output"
        clips_dir.mkdir()
        index = split_videos(videos, clips_dir, reencode_clips, settings)
        request, error_file = Path(tmp) / "request.json", Path(tmp) / "driver_error.txt"
        request.write_text(
            json.dumps(
                {
                    "clips_dir": str(clips_dir),
                    "output_dir": str(output_dir),
                    "name": RUN_NAME,
                    "dimensions": dims,
                    "device": str(cfg.get("device", "cpu")),
                    "error_file": str(error_file),
                }
            )
        )
        env = os.environ | {"VBENCH_CACHE_DIR": str(weights), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.pop("PYTHONPATH", None)
        done = subprocess.run([str(python), str(DRIVER), str(request)], env=env, cwd=tmp, stdout=sys.stderr)
        if error_file.is_file():
            raise ConfigError(
                f"eval.dimensions: {error_file.read_text().strip()} (install it there, or drop the dimension)"
            )
        results = output_dir / f"{RUN_NAME}_eval_results.json"
        if done.returncode != 0 or not results.is_file():
            raise RuntimeError(f"vbench failed (exit {done.returncode}); its output is above")
        dimensions = read_results(results, dims, index, videos)
    config = OmegaConf.to_container(cfg, resolve=True)
    return finish(
        dimensions, settings, "vbench 0.1.5 (separate environment)", config, str(cfg.get("device", "cpu")), out_path
    )
