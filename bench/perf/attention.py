"""Attention microbenchmark: `python -m bench.perf.attention [key=value ...]`.

At the 1.3B model's shapes (by default), for a dense window of each attended-frame count in
`frames` and for every policy configured (`relaxed` and each of `policies`: the project's own
policy configs), it times per layer and DiT forward:
- `kernel_ms`: `scaled_dot_product_attention` alone, on tensors laid out as the processor passes them;
- `step1_ms` and `processor_ms`: the self-attention path as the harness runs it, the project's
  `PlannedAttnProcessor` on a `WanAttention` of the right size reading a real `KVReservoir` (q/k/v,
  norms, RoPE, gather, re-RoPE of the memory, SDPA, output projection), in the chunk's first forward
  (which re-selects a token memory from that layer's queries: Deep Forcing's scoring) and in a
  forward that reuses the plan (the other steps and the clean pass);
- `self_attn_ms`: the mean over a chunk's forwards of those two, plus the per-forward RoPE tables
  shared by all layers (/ `layers`) and the per-chunk selection step (/ `layers` x forwards per chunk).
Each policy's reservoir is brought to the planned chunk `t` by the samplers' own loop
(`ARSampler.generate`) on a one-layer stand-in DiT (`WarmupDiT`), so synthesised entries and token
memories are there as a run would leave them; the selection step is timed in that loop.
It also estimates selection's share of a chunk's DiT time from one whole DiT block's forward.
Writes `attention.json` and `attention.png` into the Hydra run directory and prints a table.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from functools import partial
from pathlib import Path
from types import SimpleNamespace

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
from bench.generation.sampler import ARSampler, select
from bench.generation.token_memory import TokenStore
from bench.generation.wan_attention import (
    AttentionState,
    PlannedAttnProcessor,
    StateSlot,
)
from bench.models.backend import Backend
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

    @property
    def attn(self):
        return self.block.attn1

    def randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=self.dtype)

    def self_attention(self, state: AttentionState, hidden: torch.Tensor) -> torch.Tensor:
        """The block's self-attention on `hidden` under `state` (whose RoPE tables are placed)."""
        self.slot.state = state
        try:
            return self.attn(hidden)
        finally:
            self.slot.state = None


def frame_grid(tokens: int) -> tuple[int, int]:
    """The most square rows x columns with `tokens` cells."""
    rows = max(r for r in range(1, math.isqrt(tokens) + 1) if tokens % r == 0)
    return rows, tokens // rows


def check(cfg: DictConfig, chunk: int) -> list[int]:
    """Validate the sizes; returns the sweep's attended-frame counts."""
    for name in ("tokens_per_frame", "heads", "head_dim", "ffn_dim", "text_tokens", "layers", "repeats",
                 "selection_repeats"):
        check_int(name, cfg[name], 1)
    check_int("steps", cfg.steps, 1, 1000)  # timesteps 1000, 1000 - 1000/steps, ... in the loop that leads to t
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


class WarmupDiT(torch.nn.Module):
    """A one-layer stand-in DiT that lets the samplers' loop bring a reservoir to chunk `t` quickly.

    A clean pass stores what a real one leaves behind, random K/V and query sums, without attending;
    the first forward of a chunk whose plan re-selects a token memory runs the real processor (the
    selection reads its queries) on the chunk and the token memory, the memory frames left out; every
    other forward does nothing (its output, the velocity, is zero).
    """

    def __init__(self, layer: Layer, hidden: torch.Tensor) -> None:
        super().__init__()
        self.layer, self.hidden = layer, hidden
        attn = layer.attn
        self.config = SimpleNamespace(num_layers=1, num_attention_heads=attn.heads,
                                      attention_head_dim=attn.inner_dim // attn.heads)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, state: AttentionState):
        layer = self.layer
        if state.write_frames:
            shape = (1, len(state.write_frames) * layer.tokens_per_frame, *state.reservoir.frame_shape[1:])
            state.reservoir.write(0, state.write_frames, layer.randn(*shape), layer.randn(*shape))
            state.reservoir.write_queries(0, state.write_frames, layer.randn(*shape))
        elif state.select_tokens and state.tokens is not None and state.tokens.select is not None:
            chunk_only = dataclasses.replace(state, memory_frames=(), memory_positions=())
            chunk_only.place(layer.rope, *layer.grid, layer.device)
            layer.self_attention(chunk_only, self.hidden)
        return torch.zeros_like(latents)


def warmed_reservoir(layer: Layer, policy: MemoryPolicy, cfg: DictConfig, hidden: torch.Tensor) -> tuple[KVReservoir, float]:
    """A one-layer reservoir as the samplers' loop leaves it before chunk `t` under `policy`, and the
    median selection step (ms) over the last `selection_repeats` chunks of that loop (none at t = 0)."""
    sampler = ARSampler(chunk_frames=layer.chunk, steps=[1000 - i * 1000 // cfg.steps for i in range(cfg.steps)])
    backend = Backend("attention-benchmark", WarmupDiT(layer, hidden), None, None,  # type: ignore[arg-type]
                      (1, *layer.grid), 16.0, layer.dtype, layer.device)
    profiler = Profiler(layer.device)
    text = torch.zeros(1, 1, 1, device=layer.device)
    if cfg.t == 0:
        reservoir = sampler.new_reservoir(backend, policy, 1)
    else:
        _, reservoir = sampler.generate(backend, policy, text, cfg.t, torch.Generator(layer.device).manual_seed(cfg.seed),
                                        profiler=profiler)
    selections = [row["selection"] * 1000 for row in profiler.chunk_rows()[-cfg.selection_repeats :]]
    return reservoir, statistics.median(selections) if selections else 0.0


@dataclasses.dataclass
class Point:
    """One policy's plan at the benchmarked chunk, ready to time."""

    policy: MemoryPolicy
    reservoir: KVReservoir
    first: AttentionState  # the chunk's first forward: re-selects a token memory if the plan has one
    reuse: AttentionState  # every other forward of the chunk
    tokens: TokenStore  # the reservoir's token memories before the first forward
    selection_ms: float
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # SDPA inputs laid out as the processor passes them

    @property
    def keys(self) -> int:
        """Attended key rows of a reused forward, the current chunk included."""
        return self.qkv[1].shape[2]

    def step1(self, layer: Layer, hidden: torch.Tensor) -> torch.Tensor:
        """The chunk's first forward from the token memories it started from."""
        self.reservoir.tokens = copied(self.tokens)
        return layer.self_attention(self.first, hidden)


def copied(store: TokenStore) -> TokenStore:
    """A store holding the same token rows (they are immutable), so re-selecting in it leaves `store` as it is."""
    copy = TokenStore(store.num_layers)
    copy.memories = {entry: list(layers) for entry, layers in store.memories.items()}
    return copy


def prepare(cfg: DictConfig, layer: Layer, policy: MemoryPolicy, hidden: torch.Tensor) -> Point:
    reservoir, selection_ms = warmed_reservoir(layer, policy, cfg, hidden)
    untimed = Profiler(enabled=False)
    plan = select(policy, reservoir, cfg.t, untimed)
    first = AttentionState.planned(plan, reservoir, untimed, select_tokens=True)
    reuse = AttentionState.planned(plan, reservoir, untimed)
    for state in (first, reuse):
        state.place(layer.rope, *layer.grid, layer.device)
    point = Point(policy, reservoir, first, reuse, copied(reservoir.tokens), selection_ms, ())
    point.step1(layer, hidden)  # the token memory the chunk's other forwards attend
    tokens = 0 if plan.tokens is None else reservoir.tokens.get(plan.tokens.entry, 0).k.shape[1]
    keys = (len(plan.attended) + layer.chunk) * layer.tokens_per_frame + tokens
    head_dim = layer.attn.inner_dim // layer.attn.heads
    shapes = (layer.chunk * layer.tokens_per_frame, keys, keys)
    point.qkv = tuple(layer.randn(1, n, layer.attn.heads, head_dim).transpose(1, 2) for n in shapes)
    return point


@torch.inference_mode()
def measure(cfg: DictConfig, layer: Layer, points: dict[str, Point], hidden: torch.Tensor) -> dict[str, dict]:
    """Per point, ms per layer and DiT forward unless named otherwise; all points timed round-robin."""
    fns = {}
    for name, point in points.items():
        fns[name, "kernel_ms"] = partial(F.scaled_dot_product_attention, *point.qkv)
        fns[name, "step1_ms"] = partial(point.step1, layer, hidden)
        fns[name, "processor_ms"] = partial(layer.self_attention, point.reuse, hidden)
        fns[name, "rope_tables_ms"] = partial(point.reuse.place, layer.rope, *layer.grid, layer.device)
    times = medians_ms(fns, layer.device, cfg.warmup, cfg.repeats)
    forwards = cfg.steps + 1
    rows = {}
    for name, point in points.items():
        row = {"frames": point.keys / layer.tokens_per_frame, "keys": point.keys}
        row |= {key: times[name, key] for key in ("kernel_ms", "step1_ms", "processor_ms", "rope_tables_ms")}
        row["selection_ms"] = point.selection_ms  # per chunk
        row["self_attn_ms"] = (
            (row["step1_ms"] + (forwards - 1) * row["processor_ms"]) / forwards
            + row["rope_tables_ms"] / cfg.layers + row["selection_ms"] / (cfg.layers * forwards)
        )
        # K/V the policy held at most up to chunk t, for the whole model (`layers` layers)
        row["kv_peak_frames"] = point.reservoir.peak_frames
        row["kv_peak_bytes"] = point.reservoir.peak_bytes * cfg.layers
        rows[name] = row
    return rows


@torch.inference_mode()
def selection_share(cfg: DictConfig, layer: Layer, point: Point, selection_ms: float) -> dict:
    """Selection's share of a chunk's DiT time: one block's forward x `layers` x forwards per chunk.

    The key prototypes scoring reads are computed by the layer-0 reservoir write; the whole write
    (copy included) is counted with the selection, so the share is an upper bound. The DiT time
    leaves out the patch embedding, head and conditioning, so it is an underestimate: both err
    on the side of a larger share.
    """
    dim = layer.attn.inner_dim
    frames = list(range(cfg.t, cfg.t + layer.chunk))
    point.reservoir.allocate(frames)
    shape = (1, layer.chunk * layer.tokens_per_frame, *point.reservoir.frame_shape[1:])
    k, v = layer.randn(*shape), layer.randn(*shape)
    write = partial(point.reservoir.write, 0, frames, k, v)
    write_ms = medians_ms({"write": write}, layer.device, 1, cfg.selection_repeats)["write"]
    hidden, text = layer.randn(1, layer.chunk * layer.tokens_per_frame, dim), layer.randn(1, cfg.text_tokens, dim)
    layer.slot.state = point.reuse
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

    policies = result["policies"]
    colors = plt.get_cmap("tab20").colors
    fig, ax = plt.subplots(figsize=(8.4, 4.6))
    series = (("self_attn_ms", "s", "self-attention path"), ("kernel_ms", "o", "SDPA kernel"))
    for (key, marker, label), color in zip(series, ("0.2", "0.6")):
        ax.plot(result["frames"], result[key], f"{marker}-", color=color, label=f"{label}, dense window")
    for i, (name, row) in enumerate(policies.items()):
        color = colors[i % len(colors)]
        for key, marker, _ in series:
            ax.plot([row["frames"]], [row[key]], marker, color=color, ms=9, mfc="none" if key == "kernel_ms" else color,
                    label=name if key == "self_attn_ms" else None)
    ax.set_xlabel("attended latent frames' worth of keys (current chunk included)")
    ax.set_ylabel("ms per layer and DiT forward")
    ax.set_title(f"{result['device']}, {result['dtype']}, {result['tokens_per_frame']} tokens/frame, "
                 "filled = self-attention, hollow = kernel", fontsize=8)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(result: dict) -> str:
    policies, targets = result["policies"], result["targets"]
    header = (f"{'policy':<16}{'frames':>7}{'kernel ms':>11}{'step-1 ms':>11}{'reuse ms':>10}{'self-attn ms':>14}"
              f"{'selection ms':>14}{'K/V peak':>22}")
    title = f"device: {result['device']}  dtype: {result['dtype']}  tokens/frame: {result['tokens_per_frame']}"
    lines = [f"{title}  chunk t={result['t']}", header]
    for frames, kernel, self_attn in zip(result["frames"], result["kernel_ms"], result["self_attn_ms"]):
        lines.append(f"{f'dense-{frames}':<16}{frames:>7}{kernel:>11.2f}{'':>11}{'':>10}{self_attn:>14.2f}")
    for name, row in policies.items():
        lines.append(f"{name:<16}{row['frames']:>7.4g}{row['kernel_ms']:>11.2f}{row['step1_ms']:>11.2f}"
                     f"{row['processor_ms']:>10.2f}{row['self_attn_ms']:>14.2f}{row['selection_ms']:>14.3f}"
                     f"{row['kv_peak_frames']:>9} fr {row['kv_peak_bytes'] / 1e9:>7.2f} GB")
    dense, relaxed = policies["dense"], policies["relaxed"]
    name = f"dense-{dense['frames']:g} / relaxed-{relaxed['frames']:g}"
    for key, label, fmt in (("kernel_ratio", f"{name} kernel", "{:.2f}x"),
                            ("self_attn_ratio", f"{name} self-attention", "{:.2f}x"),
                            ("selection_fraction", "relaxed selection / chunk DiT time", "{:.4%}")):
        target = targets[key]
        bound = ">=" if key.endswith("ratio") else "<="
        verdict = "met" if target["met"] else "MISSED"
        value, goal = fmt.format(target["value"]), fmt.format(target["target"])
        lines.append(f"{label}: {value} (target {bound} {goal}: {verdict})")
    return "\n".join(lines)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    chunk = check_int("sampler.chunk_frames", cfg.sampler.chunk_frames, 1, MAX_MEMORY_FRAMES)
    dense_policy = instantiate_checked(cfg.dense, chunk=chunk)
    policies = {"relaxed": instantiate_checked(cfg.relaxed, chunk=chunk)}
    policies |= {name: instantiate_checked(node, chunk=chunk) for name, node in cfg.policies.items()}
    if dense_policy.window is None:
        raise ConfigError("dense.window must be an integer for the benchmark (the dense-window ratio needs one)")
    sweep = sorted(set(check(cfg, chunk)) | {dense_policy.window})
    device = resolve_device(cfg.device, field="device")
    dtype = resolve_dtype(cfg.dtype, device, field="dtype")
    torch.manual_seed(cfg.seed)
    layer = build_layer(cfg, chunk, device, dtype)
    hidden = layer.randn(1, chunk * layer.tokens_per_frame, layer.attn.inner_dim)
    with torch.inference_mode():
        points = {f"dense-{f}": prepare(cfg, layer, dataclasses.replace(dense_policy, window=f), hidden) for f in sweep}
        points |= {name: prepare(cfg, layer, policy, hidden) for name, policy in policies.items()}
    measured = measure(cfg, layer, points, hidden)
    rows = [measured[f"dense-{f}"] for f in sweep]
    by_policy = {"dense": measured[f"dense-{dense_policy.window}"]} | {name: measured[name] for name in policies}
    relaxed, dense = by_policy["relaxed"], by_policy["dense"]
    relaxed["selection_estimate"] = selection_share(cfg, layer, points["relaxed"], relaxed["selection_ms"])
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
        "frames": sweep,  # the dense-window sweep, as lists
        **{key: [r[key] for r in rows] for key in ("kernel_ms", "self_attn_ms", "processor_ms", "rope_tables_ms",
                                                     "selection_ms")},
        "policies": by_policy,
        "targets": targets,
        "device": prov["device"],
        "dtype": str(dtype).removeprefix("torch."),
        "tokens_per_frame": cfg.tokens_per_frame,
        "heads": cfg.heads,
        "head_dim": cfg.head_dim,
        "layers": cfg.layers,
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
