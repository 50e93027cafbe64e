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

from tqdm import tqdm

from bench.runs.videos import write_clip
from memory_policies import ConfigError

from .backbones import WEIGHT_FILES, BackboneInfo
from .clips import stream_clips
from .dimensions import REGISTRY
from .results import dimension_entry, finish
from .suite import clip_settings

DRIVER = Path(__file__).with_name("vbench_driver.py")
RUN_NAME = "relaxbench"
DINO_HUB_DIR = "dino_model/facebookresearch_dino_main"  # torch.hub source='local' repo for DINO
IMPORT_CHECK_S = 300  # importing vbench and torch in a cold environment


def default_python() -> Path:
    """Where scripts/vbench_env.sh puts the environment by default."""
    env = os.environ.get("RELAXBENCH_VBENCH_ENV") or Path.home() / ".cache/relaxbench/vbench-env"
    return Path(env) / "bin/python"


def driver_env(weights: Path) -> dict:
    env = os.environ | {"VBENCH_CACHE_DIR": str(weights), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    return env


def check_inputs(settings: dict) -> tuple[Path, Path]:
    """vbench's interpreter, that it imports vbench and each requested dimension's module, and every
    weight file those need (vbench would wget a missing one): all before any video is made."""
    dims = settings["dimensions"]
    python = Path(settings["python"] or default_python())
    if not python.is_file():
        raise FileNotFoundError(
            f"eval.python: {python} not found (build vbench's environment with scripts/vbench_env.sh)"
        )
    if not settings["weights_dir"]:
        raise ConfigError("eval.weights_dir is required for eval=vbench (a folder in VBench's weight layout)")
    weights = Path(settings["weights_dir"])
    for path in (weights / WEIGHT_FILES[key] for dim in dims for key in REGISTRY[dim].weights):
        if not path.is_file():
            raise FileNotFoundError(
                f"eval.weights_dir: {path} not found (vbench needs it and relaxbench never downloads)"
            )
    if "subject_consistency" in dims and not (weights / DINO_HUB_DIR / "hubconf.py").is_file():
        raise FileNotFoundError(
            f"eval.weights_dir: {weights / DINO_HUB_DIR}/hubconf.py not found (DINO's torch.hub repo)"
        )
    with tempfile.TemporaryDirectory(prefix="relaxbench-vbench-check-") as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"dimensions": dims, "error_file": str(Path(tmp) / "error.txt")}))
        try:
            done = subprocess.run(
                [str(python), str(DRIVER), "--check", str(request)],
                env=driver_env(weights), cwd=tmp, capture_output=True, text=True, timeout=IMPORT_CHECK_S,
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ConfigError(f"eval.python: {python} cannot run vbench's import check ({type(err).__name__})") from None
        error = Path(tmp) / "error.txt"
        if error.is_file():
            raise ConfigError(f"eval.dimensions: {error.read_text().strip()} (install it there, or drop the dimension)")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise ConfigError(f"eval.python: {python} does not import vbench ({last})")
    return python, weights


def split_videos(
    videos: list[Path], clips_dir: Path, reencode_clips: bool, settings: dict
) -> dict[str, tuple[str, int]]:
    """Write every clip as `<video stem>__clip<i>.mp4`; returns clip file name -> (video name, clip index)."""
    index: dict[str, tuple[str, int]] = {}
    for video in videos:
        fps, bounds, stream = stream_clips(video, settings)
        for i, clip in enumerate(tqdm(stream, total=len(bounds), desc=f"clips {video.name}", unit="clip")):
            name = f"{video.stem}__clip{i:03d}.mp4"
            write_clip(clips_dir / name, clip, int(fps), reencode_clips)
            index[name] = (video.name, i)
    return index


def read_results(path: Path, dims: list[str], index: dict[str, tuple[str, int]], videos: list[Path]) -> dict:
    """vbench's `<name>_eval_results.json` ({dim: [mean, [{video_path, video_results}, ...]]}) -> per-clip scores."""
    results = json.loads(path.read_text())
    dimensions = {}
    for dim in dims:
        spec = REGISTRY[dim]
        clips = {video.name: {} for video in videos}
        for item in results[dim][1]:
            video, clip = index[Path(item["video_path"]).name]
            clips[video][clip] = float(item["video_results"]) / spec.vbench_scale
        info = BackboneInfo(f"{spec.vbench_backbone} (vbench 0.1.5)", exact=True)
        fusion = "off (vbench custom_input mode: slow branch only)" if spec.fast_choices else None
        dimensions[dim] = dimension_entry(info, clips, fusion=fusion)
    return dimensions


def evaluate_with_vbench(settings: dict, python: Path, weights: Path, videos: list[Path], out_path: Path) -> dict:
    """Score `videos` with vbench at `python` (checked by check_inputs) for the checked config `settings`."""
    dims, reencode_clips = settings["dimensions"], settings["reencode"]
    clip_info = clip_settings(reencode_clips)
    if not reencode_clips:
        clip_info["clip_files"] = "libx264rgb crf 0 (lossless), as vbench reads clips from files"
    with tempfile.TemporaryDirectory(prefix="relaxbench-vbench-", dir=settings["work_dir"]) as tmp:
        clips_dir, output_dir = Path(tmp) / "clips", Path(tmp) / "vbench_output"
        clips_dir.mkdir()
        index = split_videos(videos, clips_dir, reencode_clips, clip_info)
        request, error_file = Path(tmp) / "request.json", Path(tmp) / "driver_error.txt"
        request.write_text(
            json.dumps(
                {
                    "clips_dir": str(clips_dir),
                    "output_dir": str(output_dir),
                    "name": RUN_NAME,
                    "dimensions": dims,
                    "device": settings["device"],
                    "error_file": str(error_file),
                }
            )
        )
        done = subprocess.run([str(python), str(DRIVER), str(request)], env=driver_env(weights), cwd=tmp, stdout=sys.stderr)
        if error_file.is_file():
            raise ConfigError(
                f"eval.dimensions: {error_file.read_text().strip()} (install it there, or drop the dimension)"
            )
        results = output_dir / f"{RUN_NAME}_eval_results.json"
        if done.returncode != 0 or not results.is_file():
            raise RuntimeError(f"vbench failed (exit {done.returncode}); its output is above")
        dimensions = read_results(results, dims, index, videos)
    return finish(dimensions, clip_info, "vbench 0.1.5 (separate environment)", settings, out_path)
