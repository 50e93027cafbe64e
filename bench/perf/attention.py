"""Attention microbenchmark: `python -m bench.perf.attention [key=value ...]`.

At the 1.3B model's shapes (by default), for a dense window of each attended-frame count in
`frames` and for the relaxed policy's plan, it times per layer and DiT forward:
- `kernel_ms`: `scaled_dot_product_attention` alone, on tensors laid out as the processor passes them;
- `self_attn_ms`: the self-attention path as the harness runs it: the project's `PlannedAttnProcessor`
  on a `WanAttention` of the right size reading a real `KVReservoir` (q/k/v, norms, RoPE, gather,
  re-RoPE of the memory, SDPA, output projection), plus the per-forward RoPE tables shared by all
  layers (/ `layers`) and the per-chunk selection (/ `layers` x forwards per chunk).
It also estimates selection's share of a chunk's DiT time from one whole DiT block's forward.
Writes `attention.json` and `attention.png` into the Hydra run directory and prints a table.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.transformers.transformer_wan import (
    WanRotaryPosEmbed,
    WanTransformerBlock,
)
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig

from bench.cli import hydra_app, instantiate_checked, reject_added_keys
from bench.generation.reservoir import KVReservoir
from bench.generation.sampler import select
from bench.generation.wan_attention import (
    AttentionState,
    PlannedAttnProcessor,
    StateSlot,
)
from bench.models.execution import resolve_device, resolve_dtype
from bench.runs.outputs import atomic_write_json, provenance
from memory_policies import ConfigError, MemoryPolicy
from memory_policies.plan import MAX_MEMORY_FRAMES, check_int

from .profiler import Profiler
from .timer import medians_ms


@dataclasses.dataclass
class Layer:
    """One DiT block of the benchmarked size whose self-attention is the harness's processor."""

    block: WanTransformerBlock
    slot: StateSlot
    rope: WanRotaryPosEmbed
    grid: tuple[int, int]  # token rows x columns of a latent frame (only their product costs)
    chunk: int
    device: torch.device
    dtype: torch.dtype

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=self.dtype)


def frame_grid(tokens: int) -> tuple[int, int]:
    """The most square rows x columns with `tokens` cells."""
    rows = max(r for r in range(1, math.isqrt(tokens) + 1) if tokens % r == 0)
    return rows, tokens // rows


def check(cfg: DictConfig, chunk: int) -> list[int]:
    """Validate the sizes; returns the sweep's attended-frame counts."""
    for name in ("tokens_per_frame", "heads", "head_dim", "ffn_dim", "text_tokens", "layers", "steps", "repeats",
                 "selection_repeats"):
        check_int(name, cfg[name], 1)
    for name in ("warmup", "t", "seed"):
        check_int(name, cfg[name], 0)
    if cfg.head_dim < 6 or cfg.head_dim % 2:
        raise ConfigError(f"head_dim must be an even integer >= 6 (Wan splits it into 3 RoPE axes), got {cfg.head_dim}")
    frames = cfg.frames
    if not isinstance(frames, (list, ListConfig)) or not frames:
        raise ConfigError(f"frames must be a non-empty list of integers >= the chunk ({chunk}), got {frames}")
    for i, f in enumerate(frames):
        check_int(f"frames[{i}]", f, chunk)
    if cfg.t % chunk:
        raise ConfigError(f"t must be a multiple of the chunk ({chunk}), got {cfg.t}")
    return sorted(set(frames))


def build_layer(cfg: DictConfig, chunk: int, device: torch.device, dtype: torch.dtype) -> Layer:
    dim = cfg.heads * cfg.head_dim
    block = WanTransformerBlock(dim, cfg.ffn_dim, cfg.heads, qk_norm="rms_norm_across_heads", cross_attn_norm=True)
    slot = StateSlot()
    block.attn1.set_processor(PlannedAttnProcessor(0, slot))
    rope = WanRotaryPosEmbed(cfg.head_dim, (1, 2, 2), 1024)
    return Layer(block.eval().to(device, dtype), slot, rope, frame_grid(cfg.tokens_per_frame), chunk, device, dtype)


def filled_reservoir(layer: Layer, policy: MemoryPolicy, t: int) -> KVReservoir:
    """A one-layer reservoir holding random K/V for every frame `policy` retains before chunk `t`."""
    attn = layer.block.attn1
    reservoir = KVReservoir(
        1, 1, layer.tokens_per_frame, attn.heads, attn.inner_dim // attn.heads,
        capacity=policy.max_frames(), dtype=layer.dtype, device=layer.device,
    )
    kept = policy.retain(range(t), t)
    for first in range(0, len(kept), layer.chunk):
        frames = kept[first : first + layer.chunk]
        reservoir.allocate(frames)
        shape = (1, len(frames) * layer.tokens_per_frame, *reservoir.frame_shape[1:])
        reservoir.write(0, frames, layer.randn(*shape), layer.randn(*shape))
    return reservoir


@dataclasses.dataclass
class Point:
    """One policy's plan at the benchmarked chunk, ready to time."""

    policy: MemoryPolicy
    reservoir: KVReservoir
    state: AttentionState
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # SDPA inputs laid out as the processor passes them

    @property
    def frames(self) -> int:
        """Attended latent frames, the current chunk included."""
        return len(self.state.memory_frames) + len(self.state.positions)


def prepare(cfg: DictConfig, layer: Layer, policy: MemoryPolicy) -> Point:
    reservoir, untimed = filled_reservoir(layer, policy, cfg.t), Profiler(enabled=False)
    state = AttentionState.planned(select(policy, reservoir, cfg.t, untimed), reservoir, untimed)
    state.place(layer.rope, *layer.grid, layer.device)
    attn, tokens = layer.block.attn1, layer.tokens_per_frame
    queries = layer.chunk * tokens
    keys = (len(state.memory_frames) + layer.chunk) * tokens
    head_dim = attn.inner_dim // attn.heads
    qkv = tuple(layer.randn(1, n, attn.heads, head_dim).transpose(1, 2) for n in (queries, keys, keys))
    return Point(policy, reservoir, state, qkv)


@torch.inference_mode()
def measure(cfg: DictConfig, layer: Layer, points: dict[str, Point]) -> dict[str, dict]:
    """Per point, ms per layer and DiT forward unless named otherwise; all points timed round-robin."""
    hidden = layer.randn(1, layer.chunk * layer.tokens_per_frame, layer.block.attn1.inner_dim)

    def processor(point: Point) -> torch.Tensor:
        layer.slot.state = point.state
        return layer.block.attn1(hidden)

    fns = {}
    for name, point in points.items():
        fns[name, "kernel_ms"] = partial(F.scaled_dot_product_attention, *point.qkv)
        fns[name, "processor_ms"] = partial(processor, point)
        fns[name, "rope_tables_ms"] = partial(point.state.place, layer.rope, *layer.grid, layer.device)
    times = medians_ms(fns, layer.device, cfg.warmup, cfg.repeats)
    untimed = Profiler(enabled=False)  # the sampler's step, its section a no-op as in an unprofiled run
    selections = medians_ms(
        {name: partial(select, point.policy, point.reservoir, cfg.t, untimed) for name, point in points.items()},
        layer.device, 1, cfg.selection_repeats,
    )
    forwards = cfg.steps + 1
    rows = {}
    for name, point in points.items():
        row = {"frames": point.frames}
        row |= {key: times[name, key] for key in ("kernel_ms", "processor_ms", "rope_tables_ms")}
        row["selection_ms"] = selections[name]  # per chunk
        row["self_attn_ms"] = (
            row["processor_ms"] + row["rope_tables_ms"] / cfg.layers + row["selection_ms"] / (cfg.layers * forwards)
        )
        rows[name] = row
    layer.slot.state = None
    return rows


@torch.inference_mode()
def selection_share(cfg: DictConfig, layer: Layer, point: Point, selection_ms: float) -> dict:
    """Selection's share of a chunk's DiT time: one block's forward x `layers` x forwards per chunk.

    The key prototypes scoring reads are computed by the layer-0 reservoir write; the whole write
    (copy included) is counted with the selection, so the share is an upper bound. The DiT time
    leaves out the patch embedding, head and conditioning, so it is an underestimate: both err
    on the side of a larger share.
    """
    dim = layer.block.attn1.inner_dim
    frames = list(range(cfg.t, cfg.t + layer.chunk))
    point.reservoir.allocate(frames)
    shape = (1, layer.chunk * layer.tokens_per_frame, *point.reservoir.frame_shape[1:])
    k, v = layer.randn(*shape), layer.randn(*shape)
    write = partial(point.reservoir.write, 0, frames, k, v)
    write_ms = medians_ms({"write": write}, layer.device, 1, cfg.selection_repeats)["write"]
    hidden, text = layer.randn(1, layer.chunk * layer.tokens_per_frame, dim), layer.randn(1, cfg.text_tokens, dim)
    layer.slot.state = point.state
    block = partial(layer.block, hidden, text, layer.randn(1, 6, dim), None)
    block_ms = medians_ms({"block": block}, layer.device, cfg.warmup, cfg.repeats)["block"]
    layer.slot.state = None
    forwards = cfg.steps + 1
    chunk_dit_ms = block_ms * cfg.layers * forwards
    return {
        "selection_ms": selection_ms,
        "layer0_write_ms": write_ms,
        "block_ms": block_ms,
        "layers": cfg.layers,
        "forwards_per_chunk": forwards,
        "chunk_dit_ms": chunk_dit_ms,
        "fraction": (selection_ms + write_ms) / chunk_dit_ms,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    relaxed = result["relaxed"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = (("self_attn_ms", "s", "C0", "self-attention path"), ("kernel_ms", "o", "C1", "SDPA kernel"))
    for key, marker, color, label in series:
        ax.plot(result["frames"], result[key], f"{marker}-", color=color, label=f"{label}, dense window")
        ax.plot([relaxed["frames"]], [relaxed[key]], marker, color=color, ms=11, mfc="none", label=f"{label}, relaxed")
    ax.set_xlabel("attended latent frames (current chunk included)")
    ax.set_ylabel("ms per layer and DiT forward")
    ax.set_title(f"{result['device']}, {result['dtype']}, {result['tokens_per_frame']} tokens/frame", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result: dict) -> str:
    dense, relaxed, targets = result["dense"], result["relaxed"], result["targets"]
    lines = [f"device: {result['device']}  dtype: {result['dtype']}  tokens/frame: {result['tokens_per_frame']}",
             f"{'policy':<10}{'frames':>7}{'kernel ms':>12}{'self-attn ms':>14}{'selection ms':>14}"]
    for frames, kernel, self_attn in zip(result["frames"], result["kernel_ms"], result["self_attn_ms"]):
        lines.append(f"{'dense':<10}{frames:>7}{kernel:>12.2f}{self_attn:>14.2f}")
    lines.append(f"{'relaxed':<10}{relaxed['frames']:>7}{relaxed['kernel_ms']:>12.2f}"
                 f"{relaxed['self_attn_ms']:>14.2f}{relaxed['selection_ms']:>14.3f}")
    name = f"dense-{dense['frames']} / relaxed-{relaxed['frames']}"
    for key, label, fmt in (("kernel_ratio", f"{name} kernel", "{:.2f}x"),
                            ("self_attn_ratio", f"{name} self-attention", "{:.2f}x"),
                            ("selection_fraction", "selection / chunk DiT time", "{:.4%}")):
        target = targets[key]
        bound = ">=" if key.endswith("ratio") else "<="
        verdict = "met" if target["met"] else "MISSED"
        value, goal = fmt.format(target["value"]), fmt.format(target["target"])
        lines.append(f"{label}: {value} (target {bound} {goal}: {verdict})")
    return "\n".join(lines)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    chunk = check_int("sampler.chunk_frames", cfg.sampler.chunk_frames, 1, MAX_MEMORY_FRAMES)
    relaxed_policy, dense_policy = (instantiate_checked(cfg[name], chunk=chunk) for name in ("relaxed", "dense"))
    if dense_policy.window is None:
        raise ConfigError("dense.window must be an integer for the benchmark (the dense-window ratio needs one)")
    sweep = sorted(set(check(cfg, chunk)) | {dense_policy.window})
    device = resolve_device(cfg.device, field="device")
    dtype = resolve_dtype(cfg.dtype, device, field="dtype")
    torch.manual_seed(cfg.seed)
    layer = build_layer(cfg, chunk, device, dtype)
    points = {f"dense-{f}": prepare(cfg, layer, dataclasses.replace(dense_policy, window=f)) for f in sweep}
    points["relaxed"] = prepare(cfg, layer, relaxed_policy)
    measured = measure(cfg, layer, points)
    rows = [measured[f"dense-{f}"] for f in sweep]
    relaxed = measured["relaxed"]
    relaxed["selection_estimate"] = selection_share(cfg, layer, points["relaxed"], relaxed["selection_ms"])
    dense = measured[f"dense-{dense_policy.window}"]
    values = {
        "kernel_ratio": dense["kernel_ms"] / relaxed["kernel_ms"],
        "self_attn_ratio": dense["self_attn_ms"] / relaxed["self_attn_ms"],
        "selection_fraction": relaxed["selection_estimate"]["fraction"],
    }
    targets = {
        key: {"value": value, "target": cfg.targets[key],
              "met": value >= cfg.targets[key] if key.endswith("ratio") else value <= cfg.targets[key]}
        for key, value in values.items()
    }
    prov = provenance(device)
    result = {
        "frames": sweep,
        "kernel_ms": [r["kernel_ms"] for r in rows],
        "self_attn_ms": [r["self_attn_ms"] for r in rows],
        "processor_ms": [r["processor_ms"] for r in rows],
        "rope_tables_ms": [r["rope_tables_ms"] for r in rows],
        "selection_ms": [r["selection_ms"] for r in rows],
        "dense": dense,
        "relaxed": relaxed,
        "targets": targets,
        "device": prov["device"],
        "dtype": str(dtype).removeprefix("torch."),
        "tokens_per_frame": cfg.tokens_per_frame,
        "heads": cfg.heads,
        "head_dim": cfg.head_dim,
        "chunk": chunk,
        "t": cfg.t,
        "warmup": cfg.warmup,
        "repeats": cfg.repeats,
        "provenance": prov,
    }
    atomic_write_json(run_dir / "attention.json", result)
    plot(result, run_dir / "attention.png")
    return result


@hydra_app("attention")
def main(cfg: DictConfig) -> None:
    reject_added_keys(cfg)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    result = run(cfg, run_dir)
    print(report(result))
    print(f"attention.json, attention.png: {run_dir}")


if __name__ == "__main__":
    main()
