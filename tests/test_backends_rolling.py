"""Rolling Forcing's joint-window sampler against the release's window arithmetic
(TencentARC/RollingForcing, pipeline/rolling_forcing_inference.py and wan/modules/causal_model.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.generation.rolling_sampler import RollingSampler
from bench.generation.sampler import ARSampler
from bench.generation.wan_attention import AttentionState
from memory_policies import ConfigError, DensePolicy, RelaxedPolicy

STEPS = [1000, 800, 600, 400, 200]
SHIFT = 5.0


class Recorder:
    """Wraps a backend's DiT and records what each forward was given."""

    def __init__(self, dit) -> None:
        self.dit, self.calls = dit, []

    def __getattr__(self, name):
        return getattr(self.dit, name)

    def __call__(self, latents, timestep, text, state: AttentionState):
        frames = latents.shape[2]
        per_frame = timestep[0].view(frames, -1)[:, 0] if timestep.ndim == 2 else timestep[0].repeat(frames)
        self.calls.append({
            "timesteps": [round(float(v), 3) for v in per_frame],
            "positions": list(state.positions),
            "memory": list(zip(state.memory_frames, state.memory_positions)),
            "writes": list(state.write_frames),
        })
        return self.dit(latents, timestep, text, state)


def warped(step: int) -> float:
    """The release's `timesteps[1000 - step]` of its shift-5 flow-matching scheduler."""
    s = step / 1000
    return SHIFT * s / (1 + (SHIFT - 1) * s) * 1000


def release_calls(num_blocks: int) -> list[dict]:
    """The forwards `inference_rolling_forcing` makes, with the attention its causal model builds."""
    depth, steps = len(STEPS), [warped(s) for s in STEPS]
    shared = steps[::-1]  # oldest block of a full window at the cleanest level
    calls = []
    for wi in range(num_blocks + depth - 1):
        start, end = max(0, wi - depth + 1), min(num_blocks - 1, wi)
        num = end - start + 1
        levels = shared if num == depth else shared[-num:] if start == 0 else shared[:num]
        t = 3 * start
        room = 21 - 3 * num - 3  # max_attention_size - query - anchor: 3 frames, more while draining
        working = list(range(max(3, t - room), t))  # the committed frames before the window, anchor excluded
        anchor = [] if t == 0 else [(f, t - len(working) - 3 + f) for f in range(3)]  # re-roped before them
        calls.append({
            "timesteps": [round(v, 3) for v in levels for _ in range(3)],
            "positions": list(range(t, 3 * (end + 1))),
            "memory": anchor + [(f, f) for f in working],
            "writes": [],
        })
        if wi >= depth - 1:  # the clean pass of the oldest block: its cache window, 18 frames + itself
            calls.append({
                "timesteps": [0.0] * 3, "positions": [t, t + 1, t + 2],
                "memory": [(f, f) for f in range(max(0, t - 18), t)], "writes": [t, t + 1, t + 2],
            })
    return calls


def rolling_configs(*overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["model=rolling_forcing", "sampler=rolling", "policy=rolling_forcing", *overrides])
    sampler = instantiate(cfg.sampler)
    return sampler, instantiate(cfg.policy, chunk=sampler.chunk_frames)


def test_windows_levels_memory_and_commits_follow_the_release(random_toy):
    sampler, policy = rolling_configs()
    assert sampler.steps == STEPS and sampler.commit_window == 21
    recorder = Recorder(random_toy.dit)
    backend = dataclasses.replace(random_toy, dit=recorder)
    trace = []
    text = backend.encode_text(["a red square moving fast"])
    video, reservoir = sampler.generate(
        backend, policy, text, 27, torch.Generator().manual_seed(0), trace=lambda c, t, p: trace.append((c, t))
    )
    release = release_calls(9)
    assert len(recorder.calls) == len(release)
    for ours, theirs in zip(recorder.calls, release):
        draining = not theirs["writes"] and 0 < theirs["positions"][0] and len(theirs["positions"]) < 15
        if draining:  # the release widens its tail to fill 21 frames; the policy keeps anchor + 3
            t = theirs["positions"][0]
            theirs = theirs | {"memory": [(f, t - 6 + f) for f in range(3)] + theirs["memory"][-3:]}
        assert ours == theirs
    assert trace == [(c, 3 * c) for c in range(9)]
    assert torch.isfinite(video).all() and reservoir.peak_frames <= policy.max_frames()


def test_one_level_is_the_chunkwise_sampler():
    """With one step the window is one chunk: the same forwards, noise draws and commits as ARSampler."""
    from bench.toy.model import build_toy, toy_backend

    torch.manual_seed(0)
    backend = toy_backend(*build_toy())
    text = backend.encode_text(["a blue circle moving slow"])
    policy = DensePolicy(window=21)
    a, _ = ARSampler(steps=[1000], shift=SHIFT).generate(backend, policy, text, 30, torch.Generator().manual_seed(1))
    b, _ = RollingSampler(steps=[1000], shift=SHIFT).generate(backend, policy, text, 30, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_per_token_timesteps_are_the_same_model_as_one_timestep(random_toy):
    latents = torch.randn(1, 3, 6, 32, 32, generator=torch.Generator().manual_seed(2))
    text = random_toy.encode_text(["a red square moving fast"])
    tokens = 6 * random_toy.tokens_per_frame
    with torch.no_grad():
        one = random_toy.dit(latents, torch.tensor([600.0]), text, AttentionState(positions=range(6)))
        per_token = random_toy.dit(latents, torch.full((1, tokens), 600.0), text, AttentionState(positions=range(6)))
    torch.testing.assert_close(per_token, one, rtol=1e-5, atol=1e-5)


def test_the_clean_pass_needs_its_frames_kept():
    sampler, _ = rolling_configs()
    with pytest.raises(ConfigError) as err:
        sampler.check(RelaxedPolicy(store="attendable"), 120)
    message = str(err.value)
    assert "\n" not in message and message.startswith("sampler.commit_window=21: the clean pass at t=")
    assert "set sampler.commit_window=null" in message
    RollingSampler(steps=STEPS, commit_window=None).check(RelaxedPolicy(store="attendable"), 120)
    with pytest.raises(ConfigError, match="sampler.commit_window must be an integer >= 3"):
        RollingSampler(commit_window=2)
