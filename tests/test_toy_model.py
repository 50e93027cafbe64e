"""The shipped toy weights make real, prompt-following, moving videos (expected values from pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.toy.model import WEIGHTS, load_toy
from bench.toy.stats import largest_blob_fraction, object_mask, video_stats

pytestmark = pytest.mark.skipif(not WEIGHTS.is_file(), reason="shipped toy weights missing")


@pytest.fixture(scope="module")
def generate():
    """prompt, seed -> uint8 frames (21, 32, 32, 3), with the toy's configured sampler and the default policy."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config")
    backend = load_toy(video_scale=1)
    sampler = instantiate(cfg.sampler)
    policy = instantiate(cfg.policy, chunk=sampler.chunk_frames)
    cache = {}

    def run(prompt: str, seed: int) -> np.ndarray:
        if (prompt, seed) not in cache:
            latents, _ = sampler.generate(backend, policy, backend.encode_text([prompt]), 21,
                                          torch.Generator().manual_seed(seed))
            cache[prompt, seed] = backend.decode(latents)[0]
        return cache[prompt, seed]

    return run


SEEDS = (0, 1, 2)


def object_colour(frames: np.ndarray) -> np.ndarray:
    mask = object_mask(frames)
    return frames[mask].astype(float).mean(axis=0)


@pytest.mark.parametrize("colour, channel", [("red", 0), ("green", 1), ("blue", 2)])
def test_object_pixels_have_the_prompted_colour(generate, colour, channel):
    for seed in SEEDS:
        rgb = object_colour(generate(f"a {colour} circle moving slow", seed))
        others = [c for c in range(3) if c != channel]
        assert rgb[channel] > rgb[others].max() + 60, (colour, seed, rgb)


def test_fast_moves_farther_than_slow(generate):
    speed = {s: np.nanmean([video_stats(generate(f"a white square moving {s}", seed))["speed_px_per_frame"]
                            for seed in SEEDS]) for s in ("slow", "fast")}
    assert speed["fast"] > 1.5 * speed["slow"], speed


def test_frames_move_and_are_not_noise(generate):
    for prompt in ("a yellow square moving fast", "a blue circle moving slow"):
        for seed in SEEDS:
            frames = generate(prompt, seed)
            stats = video_stats(frames)
            assert stats["mean_frame_change"] > 0.5, (prompt, seed, stats)  # not frozen
            mask = object_mask(frames)
            solid = np.mean([largest_blob_fraction(m) for m in mask if m.any()])
            assert solid > 0.8, (prompt, seed, solid)  # one coherent sprite, not speckle
            assert 15 < stats["mean_area"] < 600, (prompt, seed, stats)  # a sprite, not a flood of colour


def test_object_stays_visible_for_21_frames(generate):
    for prompt in ("a red square moving slow", "a green circle moving fast", "a white circle moving slow"):
        for seed in SEEDS:
            assert video_stats(generate(prompt, seed))["visible_fraction"] == 1.0, (prompt, seed)
