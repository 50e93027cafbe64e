"""Procedural training data and the toy text encoder's vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from bench.toy.data import COLOURS, VOCABULARY, make_clip, render, sample_scene
from bench.toy.model import ToyTextEncoder
from bench.toy.stats import mean_speed
from memory_policies import ConfigError


def test_clips_are_deterministic_per_seed():
    a, b = make_clip(7, 12), make_clip(7, 12)
    assert np.array_equal(a[0], b[0]) and a[2] == b[2]
    assert not np.array_equal(a[0], make_clip(8, 12)[0])


def test_prompt_describes_the_pixels():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scene = sample_scene(rng)
        video, mask = render(scene, 12)
        words = scene.prompt.split()
        for sprite in scene.sprites:
            assert sprite.colour in words and sprite.shape in words
        colours = {tuple(np.round(video[0, :, y, x].astype(np.float64), 2)) for y, x in zip(*np.nonzero(mask[0, 0]))}
        assert colours <= {tuple(np.round(COLOURS[s.colour], 2)) for s in scene.sprites}
        assert scene.speed in words
        assert ("striped" in words) == (scene.background == "striped")


def test_fast_sprites_move_farther_than_slow_ones():
    speeds = {"slow": [], "fast": []}
    rng = np.random.default_rng(1)
    while min(len(v) for v in speeds.values()) < 5:
        scene = sample_scene(rng)
        if len(scene.sprites) == 1:
            _, mask = render(scene, 12)
            speeds[scene.speed].append(mean_speed(mask[:, 0] > 0))
    assert max(speeds["slow"]) <= 1.1 and min(speeds["fast"]) >= 1.5


def test_sprites_bounce_inside_the_frame():
    video, mask, _ = make_clip(3, 120)
    assert (mask.reshape(120, -1).sum(1) > 20).all()  # never leaves the frame


def test_unknown_words_list_the_vocabulary():
    encoder = ToyTextEncoder()
    with pytest.raises(ConfigError) as err:
        encoder.tokenize(["a purple hexagon moving fast"])
    message = str(err.value)
    assert "purple" in message and "hexagon" in message and " ".join(VOCABULARY) in message
    with pytest.raises(ConfigError, match="no words"):
        encoder.tokenize(["!!!"])
    ids = encoder.tokenize(["A red square, moving FAST."])
    assert (ids[0, :5] > 0).all() and (ids[0, 5:] == 0).all()
