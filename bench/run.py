"""The main job: `python -m bench.run [overrides]` generates, evaluates and times one configuration.

Writes into the Hydra run directory: videos/*.mp4, plan_trace.jsonl, metrics.json (unless
eval=none), timing.json and, last and atomically, once the logger has succeeded, summary.json (one
flat row for analysis). Nothing looks complete unless it is: a run holds the folder's lock for its
life (a second live run into it is refused), removes an earlier run's results before it writes,
marks the folder running.json while it works (left behind, it says "interrupted"), and a run that
fails anywhere leaves error.json and no summary.json. See bench/runs/state.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bench.cli import USER_ERRORS, describe, hydra_app, instantiate_checked
from bench.generation.sampler import SECONDS_PER_LATENT_FRAME, ARSampler
from bench.models.backend import Backend
from bench.perf.profiler import Profiler
from bench.prompts import load_prompts
from bench.runs.loggers import LocalLogger, RunLogger, make_logger
from bench.runs.outputs import (
    PER_CHUNK_FILE,
    OutputError,
    PlanTrace,
    atomic_write_json,
    provenance,
    video_name,
    writing,
)
from bench.runs.state import claimed, clear_results, mark_running, unmark
from bench.runs.study import completed_summary, in_study
from bench.runs.videos import VideoWriter
from bench.schema import validate
from memory_policies.reach import first_unseen

log = logging.getLogger(__name__)


def config_hash(cfg: DictConfig) -> str:
    """Identity of what a run computes: same hash, same results. The resolved config with the prompts as
    loaded (a prompts file is its lines) and each `_target_` cut to its class name (where a class lives
    is not what a run means: moving it keeps every finished run); the logger is left out."""
    meaning = OmegaConf.to_container(cfg, resolve=True)
    meaning.pop("logger", None)
    meaning["prompts"] = load_prompts(cfg.prompts)
    text = json.dumps(without_import_paths(meaning), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def without_import_paths(node: object) -> object:
    """`_target_: a.b.Class` becomes `Class`, at any depth."""
    if isinstance(node, dict):
        return {
            key: value.rpartition(".")[2] if key == "_target_" and isinstance(value, str) else without_import_paths(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [without_import_paths(value) for value in node]
    return node


def build(cfg: DictConfig) -> tuple[object, ARSampler, list[str]]:
    """Instantiate and check everything that can be checked before a model is loaded."""
    validate(cfg)  # every field on its own (bench/schema.py); what relates fields is checked as objects are built
    sampler = instantiate_checked(cfg.sampler)
    policy = instantiate_checked(cfg.policy, chunk=sampler.chunk_frames)  # the chunk's one home is the sampler
    sampler.check(policy, cfg.num_latent_frames)
    warn_unseen_distances(cfg, policy, sampler)
    if cfg.eval.name != "none":
        from bench.evaluation import check_config

        check_config(cfg.eval)
    return policy, sampler, load_prompts(cfg.prompts)


def warn_unseen_distances(cfg: DictConfig, policy, sampler: ARSampler) -> None:
    """One line when the policy makes the model attend farther back than it was trained to
    (`model.trained_frames`); relaxbench runs it at any position, the model may not cope."""
    trained = cfg.model.get("trained_frames")
    reach = trained and first_unseen(policy, cfg.num_latent_frames, trained, sampler.lookahead)
    if reach:
        log.warning(
            f"policy {policy.name} attends {reach.distance} latent frames back at chunk t={reach.t} (the first such "
            f"chunk); model {cfg.model.name} saw distances up to {trained - 1} in training (model.trained_frames)"
        )


def generate_all(
    cfg: DictConfig, run_dir: Path, backend: Backend, policy, sampler: ARSampler, prompts: list[str], profiler: Profiler
) -> list[Path]:
    """Every video, streamed: each chunk is decoded and appended to its mp4 as soon as it is generated,
    and the plan trace is written as it goes, so no tensor or frame array of a whole video is held."""
    videos, trace_path = [], run_dir / "plan_trace.jsonl"
    text_all = backend.encode_text(prompts)
    with writing(trace_path), open(trace_path, "w") as trace_file:
        trace = PlanTrace(trace_file)
        for first in tqdm(range(0, len(prompts), cfg.batch_size), desc="videos", unit="batch"):
            batch = list(range(first, min(first + cfg.batch_size, len(prompts))))
            # Video v's noise is its own stream, seeded seed + v: batch_size changes speed, not videos (the
            # plan is shared, see docs/studies.md), and batch_size=1 draws exactly what earlier versions did.
            generators = [torch.Generator(device=backend.device).manual_seed(cfg.seed + v) for v in batch]
            paths = [run_dir / "videos" / video_name(v, prompts[v]) for v in batch]
            trace.videos = [path.stem for path in paths]
            text = text_all[batch[0] : batch[-1] + 1]
            reservoir = sampler.prepare(backend, policy, text, cfg.num_latent_frames)
            push = backend.decoder()
            with ExitStack() as stack:
                writers = [stack.enter_context(VideoWriter(path, backend.fps)) for path in paths]
                for _, latents in sampler.chunks(
                    backend, policy, text, cfg.num_latent_frames, reservoir, generators,
                    trace=trace, profiler=profiler, progress=f"video {first + 1}/{len(prompts)}",
                ):
                    with profiler.section("decode"):
                        frames = push(latents)
                    with profiler.section("write"):
                        for writer, rows in zip(writers, frames):
                            writer.append(rows)
            profiler.record_reservoir(reservoir)
            videos += paths
    return videos


def execute(cfg: DictConfig, run_dir: Path) -> dict:
    """Generate, evaluate and time one configuration into `run_dir`; returns the summary row (which
    `run_in_folder` writes as summary.json once the logger has succeeded)."""
    policy, sampler, prompts = build(cfg)
    with writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    backend: Backend = instantiate_checked(cfg.model.backend)
    chunks_path = run_dir / PER_CHUNK_FILE
    with writing(chunks_path), open(chunks_path, "w") as chunk_rows:
        profiler = Profiler(backend.device, rows_to=chunk_rows)
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
        "chunks": profiler.chunks,
        "per_chunk_file": PER_CHUNK_FILE,  # one JSON row per chunk, written as it ended
        "per_chunk_mean_s": profiler.per_chunk_mean(),
        "kv_peak_frames": profiler.peak_frames,
        "kv_peak_bytes": profiler.peak_bytes,
        # of those, the most on the device at once (all of them but with store=offload)
        "kv_device_peak_frames": profiler.device_peak_frames,
        "kv_device_peak_bytes": profiler.device_peak_bytes,
        # the chunk's memory K/V gathered and re-roped once for all its forwards (sampler.prepare_memory)
        "prepared_peak_bytes": profiler.prepared_peak_bytes,
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
        "attended_frames": profiler.max_attended,
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
        "kv_device_peak_frames": timing["kv_device_peak_frames"],
        "prepared_peak_bytes": timing["prepared_peak_bytes"],
        "commit": prov["commit"],
        "device": prov["device"],
    }
    return summary


def run_in_folder(cfg: DictConfig, run_dir: Path) -> dict:
    """Run one configuration into `run_dir` so that nothing looks complete unless it is; returns the
    summary (an earlier complete run of the same config_hash is kept and returned as it is).

    Raises FolderBusy (nothing touched) while another live run writes the folder; any other failure
    leaves error.json (if the folder takes it), no summary.json, and is raised again."""
    with claimed(run_dir):
        logger: RunLogger = LocalLogger()
        identity = None
        try:
            validate(cfg)  # every field, before the logger or anything else is made
            identity = config_hash(cfg)
            if (done := completed_summary(run_dir, identity)) is not None:
                print(f"skipped, already complete with the same config ({identity}): {run_dir}")
                return done
            clear_results(run_dir)
            mark_running(run_dir, identity)
            logger = make_logger(cfg, run_dir)
            summary = execute(cfg, run_dir)
            logger.finished(summary)
            atomic_write_json(run_dir / "summary.json", summary)
        except Exception as err:
            if identity is None:  # failed before the skip check: nothing of this run is there yet
                clear_results(run_dir)
            record_failure(run_dir, err, identity, logger)
            raise
        unmark(run_dir)
        return summary


def record_failure(run_dir: Path, err: Exception, identity: str | None, logger: RunLogger) -> None:
    """Tell the logger, then write error.json and drop the running marker; a logger that fails too is
    recorded in error.json, a folder that takes no file is left to the raised error's one line."""
    record = {"error": str(err), "type": type(err).__name__, "config_hash": identity}
    if not isinstance(err, USER_ERRORS):  # bad input: its message is the whole story
        record["traceback"] = traceback.format_exc()
    try:
        logger.failed(err)
    except Exception as logger_err:  # noqa: BLE001 - whatever the logger raises, the run's own error comes first
        record["logger_error"] = f"{type(logger_err).__name__}: {logger_err}"
    try:
        atomic_write_json(run_dir / "error.json", record)
        unmark(run_dir)
    except OutputError:
        pass


@hydra_app("config")
def main(cfg: DictConfig) -> dict | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        summary = run_in_folder(cfg, run_dir)
    except Exception as err:
        if not in_study():
            raise  # bad input: one line from hydra_app; a bug: its traceback (error.json has it too)
        # the study goes on; error.json records this run
        known = isinstance(err, USER_ERRORS)
        print(f"error: {describe(err)}" if known else f"error: {type(err).__name__}: {err} (traceback in "
              f"{run_dir / 'error.json'})", file=sys.stderr)
        return None
    print(f"run directory: {run_dir}")
    print(f"videos: {run_dir / 'videos'}  ({summary['num_videos']} x {summary['seconds']:.0f} s)")
    for key in ("metrics.json", "timing.json", PER_CHUNK_FILE, "summary.json", "plan_trace.jsonl"):
        if (run_dir / key).exists():
            print(f"{key}: {run_dir / key}")
    if (run_dir / "metrics.json").exists():
        from bench.evaluation import score_lines

        print("\n".join(score_lines(json.loads((run_dir / "metrics.json").read_text()))))
    print(f"  {'latent frames / s':24s} {summary['latent_frames_per_s']:>10.1f}  on {summary['device']}")
    return summary


if __name__ == "__main__":
    main()
