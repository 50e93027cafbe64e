"""The shared AR sampler: Self-Forcing's schedule, determinism, and config checks."""

from __future__ import annotations

import pytest
import torch

from bench.generation.sampler import ARSampler, flow_sigmas
from memory_policies import ConfigError, DensePolicy, RelaxedPolicy


def test_self_forcing_warped_schedule():
    # shared/reference/wan_self_forcing.md: [1000, 750, 500, 250] with shift 5 -> 1, .9375, .8333, .625
    assert flow_sigmas([1000, 750, 500, 250], 5.0) == pytest.approx([1.0, 0.9375, 0.833333, 0.625], abs=1e-6)
    assert flow_sigmas([1000, 757, 522], 8.0, warp=False) == pytest.approx([1.0, 0.757, 0.522])


def run(backend, policy, seed, frames=12, sampler=None):
    sampler = sampler or ARSampler(steps=[1000, 500])
    trace = []
    text = backend.encode_text(["a red square moving fast"])
    gen = torch.Generator().manual_seed(seed)
    video, reservoir = sampler.generate(backend, policy, text, frames, gen, trace=lambda c, t, p: trace.append(p))
    return video, trace, reservoir


def test_same_seed_same_video_and_trace(random_toy):
    a, trace_a, _ = run(random_toy, RelaxedPolicy(), 0)
    b, trace_b, _ = run(random_toy, RelaxedPolicy(), 0)
    c, _, _ = run(random_toy, RelaxedPolicy(), 1)
    assert torch.equal(a, b) and trace_a == trace_b
    assert not torch.allclose(a, c)


def test_one_plan_per_chunk_and_reservoir_respects_policy(random_toy):
    video, trace, reservoir = run(random_toy, DensePolicy(window=9), 0, frames=18)
    assert video.shape == (1, 3, 18, 32, 32)
    assert [p.current[0][0] for p in trace] == list(range(0, 18, 3))
    assert reservoir.peak_frames == 9 and reservoir.capacity == 9


def test_a_video_embeds_each_timestep_value_once(random_toy):
    """Steps 1000 and 500 (833.3 once warped by the shift) and the clean pass's 0: three condition
    embeddings for a four-chunk video, kept in its reservoir."""
    calls = []
    hook = random_toy.dit.transformer.condition_embedder.register_forward_hook(lambda *_: calls.append(1))
    try:
        _, _, reservoir = run(random_toy, RelaxedPolicy(), 0)
    finally:
        hook.remove()
    assert len(calls) == 3 and sorted(reservoir.conditions) == [(0.0,), (pytest.approx(833.333, abs=1e-3),), (1000.0,)]


def test_x0_prediction_with_a_known_velocity(random_toy, monkeypatch):
    """With a model that always predicts v = eps - x0 for x0 = 0.5, the sampler must land on 0.5."""

    def fake_dit(x, timestep, text, state):
        sigma = timestep[0] / 1000
        if sigma == 0:
            return torch.zeros_like(x)
        eps = (x - (1 - sigma) * 0.5) / sigma
        return eps - 0.5

    monkeypatch.setattr(random_toy, "dit", _FakeDit(fake_dit, random_toy.dit.config, random_toy.dit.grid))
    for renoise in ("fresh", "ode"):
        video, _, _ = run(random_toy, RelaxedPolicy(), 0, frames=6, sampler=ARSampler(steps=[1000, 750, 500], renoise=renoise))
        torch.testing.assert_close(video, torch.full_like(video, 0.5))


class _FakeDit:
    def __init__(self, fn, config, grid):
        self.fn, self.config, self.grid = fn, config, grid

    def __call__(self, *args):
        return self.fn(*args)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"steps": []}, "sampler.steps"),
        ({"steps": [250, 1000]}, "sampler.steps"),
        ({"steps": [1200]}, "sampler.steps"),
        ({"shift": 0}, "sampler.shift"),
        ({"renoise": "sde"}, "sampler.renoise"),
        ({"chunk_frames": 0}, "sampler.chunk_frames"),
    ],
)
def test_bad_sampler_config(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ARSampler(**kwargs)


def test_length_must_be_a_multiple_of_the_chunk():
    with pytest.raises(ConfigError, match="num_latent_frames"):
        ARSampler().check(RelaxedPolicy(), 40)
    with pytest.raises(ConfigError, match="policy.chunk"):
        ARSampler(chunk_frames=4).check(RelaxedPolicy(), 40)
