"""End-to-end speed of dense vs relaxed memory in one process: `python -m bench.perf.e2e [key=value ...]`.

Each policy generates (and decodes) the same prompts with the same seed, with its chunks' memory K/V
prepared once per chunk (`sampler.prepare_memory=true`, whatever the config says) and without; after
one short warm-up generation of each, the timed generations are interleaved in ABBA order
(`bench.perf.timer`) so that drift in the machine's speed falls on all alike, and the medians are
compared: dense / relaxed (prepared, and not) and, per policy, not prepared / prepared. With the
profile on, it also gives what dense / relaxed would be if the two differed only in their attention
kernel (`kernel_bound`): the speed-up left once memory handling costs nothing. Writes `e2e.json`
into the Hydra run directory and prints the speed-ups.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from bench.cli import hydra_app, instantiate_checked, reject_added_keys
from bench.generation.sampler import ARSampler
from bench.models.backend import Backend
from bench.prompts import load_prompts
from bench.runs.outputs import atomic_write_json, provenance
from memory_policies import ConfigError, MemoryPolicy
from memory_policies.plan import check_int

from .profiler import Profiler
from .timer import rounds_ms


def generate(
    backend: Backend,
    sampler: ARSampler,
    policy: MemoryPolicy,
    text: torch.Tensor,
    frames: int,
    seed: int,
    profiler: Profiler,
) -> None:
    generator = torch.Generator(device=backend.device).manual_seed(seed)
    latents, _ = sampler.generate(backend, policy, text, frames, generator, profiler=profiler)
    with profiler.section("decode"):
        backend.decode(latents)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    check_int("warmup_frames", cfg.warmup_frames, 0)
    check_int("repeats", cfg.repeats, 1)
    sampler: ARSampler = instantiate_checked(cfg.sampler)
    policies: dict[str, MemoryPolicy] = {
        name: instantiate_checked(node, chunk=sampler.chunk_frames) for name, node in cfg.policies.items()
    }
    prompts = load_prompts(cfg.prompts)
    for policy in policies.values():
        sampler.check(policy, cfg.num_latent_frames)
        if cfg.warmup_frames:
            sampler.check(policy, cfg.warmup_frames)
    if set(policies) != {"dense", "relaxed"}:
        raise ConfigError(f"policies must be exactly dense and relaxed, got {sorted(policies)}")
    torch.manual_seed(cfg.seed)
    backend: Backend = instantiate_checked(cfg.model.backend)
    text = backend.encode_text(prompts)

    samplers = {prepared: replace(sampler, prepare_memory=prepared) for prepared in (True, False)}
    candidates = [(name, prepared) for prepared in (True, False) for name in policies]
    profiles: dict[tuple[str, bool], list[dict]] = {key: [] for key in candidates}

    def timed(name: str, prepared: bool) -> None:
        profiler = Profiler(backend.device, enabled=cfg.profile)
        generate(backend, samplers[prepared], policies[name], text, cfg.num_latent_frames, cfg.seed, profiler)
        profiles[name, prepared].append({
            "per_chunk_mean_s": profiler.per_chunk_mean(),
            "kv_peak_frames": profiler.peak_frames,
            "kv_peak_bytes": profiler.peak_bytes,
            "prepared_peak_bytes": profiler.prepared_peak_bytes,
        })

    with torch.inference_mode():
        if cfg.warmup_frames:
            for name, prepared in candidates:
                generate(backend, samplers[prepared], policies[name], text, cfg.warmup_frames, cfg.seed,
                         Profiler(enabled=False))
        times = rounds_ms({key: partial(timed, *key) for key in candidates}, backend.device, 0, cfg.repeats)

    generated = cfg.num_latent_frames * text.shape[0]

    def summary(key: tuple[str, bool]) -> dict:
        rows = [{"seconds": ms / 1000} | profile for ms, profile in zip(times[key], profiles[key])]
        seconds = statistics.median(r["seconds"] for r in rows)
        return {"seconds": seconds, "latent_frames_per_s": generated / seconds} | {
            key: rows[0][key] for key in ("kv_peak_frames", "kv_peak_bytes", "prepared_peak_bytes")
        } | {"runs": rows}

    result: dict = {"policies": {}}
    for name in policies:  # the prepared runs at the top level, as a run has them by default
        row = summary((name, True))
        row["unprepared"] = summary((name, False))
        row["prep_speedup"] = row["unprepared"]["seconds"] / row["seconds"]
        result["policies"][name] = row
    dense, relaxed = result["policies"]["dense"], result["policies"]["relaxed"]
    speedup = dense["seconds"] / relaxed["seconds"]
    chunks = math.ceil(cfg.num_latent_frames / sampler.chunk_frames)
    prov = provenance(backend.device) | {"model": backend.name} | backend.provenance
    result |= {
        "speedup": speedup,
        "speedup_rounds": [d / r for d, r in zip(times["dense", True], times["relaxed", True])],
        "kernel_bound": kernel_bound(dense, relaxed, chunks),
        "speedup_unprepared": dense["unprepared"]["seconds"] / relaxed["unprepared"]["seconds"],
        "target_speedup": cfg.target_speedup,
        "met": speedup >= cfg.target_speedup,
        "num_latent_frames": cfg.num_latent_frames,
        "num_videos": text.shape[0],
        "repeats": cfg.repeats,
        "device": prov["device"],
        "provenance": prov,
    }
    atomic_write_json(run_dir / "e2e.json", result)
    return result


def section_seconds(row: dict, section: str) -> float | None:
    """Seconds per chunk in a profiler section, the median over a policy's runs (None unprofiled)."""
    per_run = [run["per_chunk_mean_s"].get(section) for run in row["runs"]]
    return None if None in per_run else statistics.median(per_run)


def kernel_bound(dense: dict, relaxed: dict, chunks: int) -> float | None:
    """Dense / relaxed if the two differed only in their self-attention kernel: relaxed's seconds with
    dense's kernel time in place of its own. What the speed-up would be with no memory handling at
    all (relaxed's own, in its time, is counted as shared); None without the profile."""
    kernel_dense, kernel_relaxed = section_seconds(dense, "kernel"), section_seconds(relaxed, "kernel")
    if kernel_dense is None or kernel_relaxed is None:
        return None
    return (relaxed["seconds"] + chunks * (kernel_dense - kernel_relaxed)) / relaxed["seconds"]


def report(result: dict) -> str:
    sections = ("selection", "dit", "attention", "kernel", "memory_kv", "reservoir_write", "decode")
    lines = [f"device: {result['device']}  model: {result['provenance']['model']}  "
             f"{result['num_latent_frames']} latent frames x {result['num_videos']} video(s), "
             f"median of {result['repeats']}; off = memory K/V not prepared once per chunk",
             f"{'policy':<14}{'seconds':>9}{'frames/s':>10}{'KV peak':>9}{'prepared MB':>13}  ms per chunk: "
             + " ".join(f"{s:>15}" for s in sections)]
    for name, prepared in result["policies"].items():
        for label, row in ((name, prepared), (f"{name} (off)", prepared["unprepared"])):
            median = {s: section_seconds(row, s) for s in sections}  # None with profile=false
            per_chunk = " ".join(f"{'-':>15}" if median[s] is None else f"{1000 * median[s]:>15.2f}" for s in sections)
            lines.append(f"{label:<14}{row['seconds']:>9.2f}{row['latent_frames_per_s']:>10.1f}"
                         f"{row['kv_peak_frames']:>9}{row['prepared_peak_bytes'] / 1e6:>13.2f}{'':16}{per_chunk}")
    verdict = "met" if result["met"] else "MISSED"
    target = result["target_speedup"]
    rounds = result["speedup_rounds"]
    lines.append(f"speed-up dense / relaxed: {result['speedup']:.2f}x (target >= {target}x: {verdict}; "
                 f"rounds {min(rounds):.2f}x to {max(rounds):.2f}x); memory not prepared: {result['speedup_unprepared']:.2f}x")
    if result["kernel_bound"] is not None:
        lines.append(f"the same if dense and relaxed differed only in their attention kernel: {result['kernel_bound']:.2f}x")
    for name, row in result["policies"].items():
        lines.append(f"speed-up of the preparation, {name}: {row['prep_speedup']:.2f}x (not prepared / prepared)")
    return "\n".join(lines)


@hydra_app("e2e")
def main(cfg: DictConfig) -> None:
    reject_added_keys(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    result = run(cfg, run_dir)
    print(report(result))
    print(f"e2e.json: {run_dir}")


if __name__ == "__main__":
    main()
