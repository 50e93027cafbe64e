"""A chunk's memory K/V prepared once (`sampler.prepare_memory`): identical outputs, one gather per
layer and chunk, and the bytes it holds."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

from bench.cli import instantiate_checked
from bench.generation.reservoir import KVReservoir
from bench.generation.sampler import ARSampler
from bench.perf.profiler import Profiler
from memory_policies import ConfigError, DensePolicy, RelaxedPolicy

CHUNK_WISE = ["dense", "relaxed", "sink", "tail", "attention_sink", "longlive", "deep_forcing", "infinity_rope",
              "rolling_sink", "memrope"]
PROMPTS = ["a red square moving fast", "a blue circle moving slow"]
FRAMES = 24  # up to chunk 21, where Deep Forcing compresses for the first time; MemRoPE averages evicted frames
STEPS = [1000, 500]  # 2 steps + the clean pass: 3 forwards per chunk
TOY = {"layers": 4, "tokens": 64, "heads": 4, "head_dim": 32}


def policy(name: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"policy={name}"])
    return instantiate_checked(cfg.policy, chunk=3)


def generate(backend, memory, prepare: bool, profiler: Profiler | None = None, frames: int = FRAMES):
    traces: list = []
    generators = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
    latents, _ = ARSampler(steps=STEPS, prepare_memory=prepare).generate(
        backend, memory, backend.encode_text(PROMPTS), frames, generators,
        trace=lambda chunk, t, plan: traces.append(plan), profiler=profiler,
    )
    return latents, traces


@pytest.mark.parametrize("name", CHUNK_WISE)
@torch.no_grad()
def test_prepared_memory_leaves_latents_and_plans_bit_identical(random_toy, name):
    memory = policy(name)
    prepared, trace_on = generate(random_toy, memory, prepare=True)
    rebuilt, trace_off = generate(random_toy, memory, prepare=False)
    assert torch.equal(prepared, rebuilt)
    assert trace_on == trace_off


@torch.no_grad()
def test_each_layer_gathers_its_memory_once_per_chunk(random_toy, monkeypatch):
    """Relaxed over 4 chunks (3 forwards each): the memory frames are gathered in the chunk's first
    forward only, once per layer, unless the switch is off; chunk 0 attends no memory."""
    gathered: list[tuple[int, tuple]] = []
    gather = KVReservoir.gather

    def counting(self, layer, frames):
        gathered.append((layer, tuple(frames)))
        return gather(self, layer, frames)

    monkeypatch.setattr(KVReservoir, "gather", counting)
    generate(random_toy, RelaxedPolicy(), prepare=True, frames=12)
    on = list(gathered)
    gathered.clear()
    generate(random_toy, RelaxedPolicy(), prepare=False, frames=12)
    layers = TOY["layers"]
    assert len(on) == 3 * layers  # chunks 3, 6, 9
    # not prepared: every forward gathers again, but the clean pass ends at the last layer's K/V write
    assert len(gathered) == 3 * (layers * len(STEPS) + layers - 1)
    # chunk 3 attends frames 0-2 (sinks 0, 1 + tail 2); each layer reads them once, in layer order
    assert on[:layers] == [(layer, (0, 1, 2)) for layer in range(layers)]


@torch.no_grad()
def test_profiler_records_the_bytes_a_chunk_prepares(random_toy):
    """Dense with window 9 over 18 frames: from chunk 6 on it attends 6 memory frames; their K and V
    are held roped for every layer, in float32, for both batch rows."""
    profiler = Profiler(enabled=False)
    generate(random_toy, DensePolicy(window=9, chunk=3), prepare=True, profiler=profiler, frames=18)
    per_frame = 2 * len(PROMPTS) * TOY["tokens"] * TOY["heads"] * TOY["head_dim"] * 4  # K and V, fp32
    assert profiler.prepared_peak_bytes == 6 * per_frame * TOY["layers"]
    off = Profiler(enabled=False)
    generate(random_toy, DensePolicy(window=9, chunk=3), prepare=False, profiler=off, frames=18)
    assert off.prepared_peak_bytes == 0


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_the_switch_must_be_a_boolean(value):
    with pytest.raises(ConfigError, match="^sampler.prepare_memory"):
        ARSampler(prepare_memory=value)
