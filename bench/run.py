"""The main job: `python -m bench.run [overrides]` generates, evaluates and times one configuration.

Writes into the Hydra run directory: videos/*.mp4, plan_trace.jsonl, metrics.json (unless
eval=none), timing.json and, last and atomically, summary.json (one flat row for analysis).
A run that fails leaves error.json and no summary.json, so it never looks complete.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bench.cli import instantiate_checked
from bench.generation.sampler import ARSampler
from bench.models.backend import Backend
from bench.perf.profiler import Profiler
from bench.prompts import load_prompts
from bench.runs.loggers import LocalLogger, RunLogger, make_logger
from bench.runs.outputs import atomic_write_json, provenance, video_name, write_video
from bench.runs.study import completed_summary, in_study
from memory_policies import ConfigError

SECONDS_PER_LATENT_FRAME = 0.25


def config_hash(cfg: DictConfig) -> str:
    """Identity of a run's configuration (logging choices excluded): same hash, same results."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("logger", None)
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build(cfg: DictConfig) -> tuple[object, ARSampler, list[str]]:
    """Instantiate and check everything that can be checked before a model is loaded."""
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {cfg.seed!r}")
    if isinstance(cfg.batch_size, bool) or not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {cfg.batch_size!r}")
    policy = instantiate_checked(cfg.policy)
    sampler = instantiate_checked(cfg.sampler)
    if isinstance(cfg.num_latent_frames, bool) or not isinstance(cfg.num_latent_frames, int):
        raise ConfigError(f"num_latent_frames must be an integer, got {cfg.num_latent_frames!r}")
    sampler.check(policy, cfg.num_latent_frames)
    if cfg.eval.name != "none":
        from bench.evaluation import check_config

        check_config(cfg.eval)
    return policy, sampler, load_prompts(cfg.prompts)


def generate_all(
    cfg: DictConfig, run_dir: Path, backend: Backend, policy, sampler: ARSampler, prompts: list[str], profiler: Profiler
) -> list[Path]:
    videos, trace_path = [], run_dir / "plan_trace.jsonl"
    text_all = backend.encode_text(prompts)
    with open(trace_path, "w") as trace_file:
        for first in tqdm(range(0, len(prompts), cfg.batch_size), desc="videos", unit="batch"):
            batch = list(range(first, min(first + cfg.batch_size, len(prompts))))
            generator = torch.Generator(device=backend.device).manual_seed(cfg.seed + first)

            def trace(chunk: int, t: int, plan) -> None:
                for v in batch:
                    row = {"video": video_name(v, prompts[v])[:-4], "chunk": chunk, "t": t} | plan.trace_fields()
                    trace_file.write(json.dumps(row) + "\n")

            latents, _ = sampler.generate(
                backend, policy, text_all[batch[0] : batch[-1] + 1], cfg.num_latent_frames, generator,
                trace=trace, profiler=profiler, progress=f"video {first + 1}/{len(prompts)}",
            )
            with profiler.section("decode"):
                frames = backend.decode(latents)
            for row, v in enumerate(batch):
                path = run_dir / "videos" / video_name(v, prompts[v])
                write_video(path, frames[row], backend.fps)
                videos.append(path)
    return videos


def execute(cfg: DictConfig, run_dir: Path) -> dict:
    """Run one configuration into `run_dir`; returns the summary row."""
    policy, sampler, prompts = build(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").unlink(missing_ok=True)
    (run_dir / "error.json").unlink(missing_ok=True)
    torch.manual_seed(cfg.seed)
    backend: Backend = instantiate_checked(cfg.model.backend)
    profiler = Profiler(backend.device)
    start = time.perf_counter()
    videos = generate_all(cfg, run_dir, backend, policy, sampler, prompts, profiler)
    generation_s = time.perf_counter() - start

    metrics_fields: dict = {}
    if cfg.eval.name != "none":
        from bench.evaluation import evaluate_videos, summary_fields

        with profiler.section("evaluation"):
            metrics = evaluate_videos(cfg.eval, videos, run_dir / "metrics.json")
        metrics_fields = summary_fields(metrics)

    prov = provenance(backend.device) | {"model": backend.name} | backend.provenance
    generated = cfg.num_latent_frames * len(prompts)
    timing = {
        "end_to_end_s": time.perf_counter() - start,
        "generation_s": generation_s,
        "latent_frames_per_s": generated / generation_s,
        "sections_s": dict(profiler.totals),
        "per_chunk": profiler.chunk_rows(),
        "per_chunk_mean_s": profiler.per_chunk_mean(),
        "kv_peak_frames": profiler.peak_frames,
        "kv_peak_bytes": profiler.peak_bytes,
        # all of the device's allocations (weights, activations, reservoir); null on CPU
        "gpu_peak_bytes": torch.cuda.max_memory_allocated(backend.device) if backend.device.type == "cuda" else None,
        "provenance": prov,
    }
    atomic_write_json(run_dir / "timing.json", timing)
    summary = {
        "status": "complete",
        "config_hash": config_hash(cfg),
        "run_dir": str(run_dir),
        "model": backend.name,
        "policy": policy.name,
        **{f"policy.{k}": v for k, v in OmegaConf.to_container(cfg.policy, resolve=True).items() if k != "_target_"},
        "attended_frames": max(row["attended"] for row in profiler.chunk_rows()),
        "num_latent_frames": cfg.num_latent_frames,
        "seconds": cfg.num_latent_frames * SECONDS_PER_LATENT_FRAME,
        "video_fps": backend.fps,
        "seed": cfg.seed,
        "num_videos": len(prompts),
        "sampler.steps": list(sampler.steps),
        "sampler.shift": sampler.shift,
        **metrics_fields,
        "end_to_end_s": timing["end_to_end_s"],
        "latent_frames_per_s": timing["latent_frames_per_s"],
        "kv_peak_frames": timing["kv_peak_frames"],
        "kv_peak_bytes": timing["kv_peak_bytes"],
        "commit": prov["commit"],
        "device": prov["device"],
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> dict | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    identity = config_hash(cfg)
    if (done := completed_summary(run_dir, identity)) is not None:
        print(f"skipped, already complete with the same config ({identity}): {run_dir}")
        return done
    logger: RunLogger = LocalLogger()
    try:
        logger = make_logger(cfg, run_dir)
        summary = execute(cfg, run_dir)
    except (ConfigError, FileNotFoundError) as err:
        atomic_write_json(run_dir / "error.json", {"error": str(err), "type": type(err).__name__, "config_hash": identity})
        logger.failed(err)
        print(f"error: {err}", file=sys.stderr)
        if in_study():  # the study goes on; error.json records this run
            return None
        raise SystemExit(2) from None
    except Exception as err:
        atomic_write_json(
            run_dir / "error.json", {"error": str(err), "traceback": traceback.format_exc(), "config_hash": identity}
        )
        logger.failed(err)
        if in_study():
            print(f"error: {type(err).__name__}: {err} (traceback in {run_dir / 'error.json'})", file=sys.stderr)
            return None
        raise
    logger.finished(summary)
    print(f"run directory: {run_dir}")
    print(f"videos: {run_dir / 'videos'}  ({summary['num_videos']} x {summary['seconds']:.0f} s)")
    for key in ("metrics.json", "timing.json", "summary.json", "plan_trace.jsonl"):
        if (run_dir / key).exists():
            print(f"{key}: {run_dir / key}")
    for key, value in summary.items():
        if f"{key}.backbone" in summary:
            shown = "missing (no backbone)" if value is None else f"{value:.4f}"
            print(f"  {key:24s} {shown:>10s}  {summary[f'{key}.backbone'] or ''}")
    print(f"  {'latent frames / s':24s} {summary['latent_frames_per_s']:>10.1f}  on {summary['device']}")
    return summary


if __name__ == "__main__":
    main()
