"""Infinity-RoPE as a preset of relaxed: block-relative positions are a constant shift per chunk of
relaxed's hybrid layout, so the generated video is the same up to float rounding."""

from __future__ import annotations

import dataclasses

import torch

from bench.generation.sampler import ARSampler
from memory_policies import RelaxedPolicy

INFINITY_ROPE = RelaxedPolicy(sink=1, history=0, tail=2, warmup=False, reservoir=6, positions="relative",
                              name="infinity_rope")


def generate(backend, policy, frames: int = 15):
    trace = []
    text = backend.encode_text(["a red square moving fast"])
    video, _ = ARSampler(steps=[1000, 500]).generate(
        backend, policy, text, frames, torch.Generator().manual_seed(3), trace=lambda c, t, plan: trace.append(plan)
    )
    return video, trace


def test_relative_positions_leave_the_latents_unchanged(random_toy):
    relative, relative_plans = generate(random_toy, INFINITY_ROPE)
    absolute, absolute_plans = generate(random_toy, dataclasses.replace(INFINITY_ROPE, positions="absolute"))
    # the runs really placed the chunks differently: 3, 4, 5 against t, t+1, t+2 from t = 6 on
    assert [p.current_positions for p in relative_plans[2:]] == [[3, 4, 5]] * 3
    assert [p.current_positions for p in absolute_plans[2:]] == [[t, t + 1, t + 2] for t in (6, 9, 12)]
    # float32 RoPE of positions up to 14 versus up to 5: the rotations round differently, nothing else
    # (measured: 8e-7 at most, on latents up to 4.2)
    torch.testing.assert_close(relative, absolute, rtol=1e-5, atol=1e-5)
    # and the toy tells positions apart: other differences (memory at absolute positions) change the video
    contiguous, _ = generate(random_toy, dataclasses.replace(INFINITY_ROPE, rope="contiguous"))
    assert (contiguous - absolute).abs().max() > 100 * 1e-5
