"""Constant cost at any length: the sampler hands each chunk over as soon as it is clean, a run decodes
and writes it at once (the same pixels as decoding the whole video), and a failure leaves no video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir

from bench.generation.sampler import ARSampler
from bench.perf.profiler import Profiler
from bench.run import run_in_folder
from bench.runs.videos import read_video, write_video
from memory_policies import RelaxedPolicy

PROMPTS = ["a red square moving fast", "a blue circle moving slow"]


def make_cfg(overrides):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


class CountingDiT:
    """The backend's DiT, counting its forwards."""

    def __init__(self, dit) -> None:
        self.dit, self.calls = dit, 0

    def __getattr__(self, name):
        return getattr(self.dit, name)

    def __call__(self, *args):
        self.calls += 1
        return self.dit(*args)


def test_each_chunk_is_handed_over_before_the_next_is_generated(random_toy, monkeypatch):
    counting = CountingDiT(random_toy.dit)
    monkeypatch.setattr(random_toy, "dit", counting)
    sampler, policy = ARSampler(steps=[1000, 500]), RelaxedPolicy()
    text = random_toy.encode_text(PROMPTS[:1])
    reservoir = sampler.prepare(random_toy, policy, text, 12)
    profiler = Profiler()
    generator = torch.Generator().manual_seed(0)
    chunks = sampler.chunks(random_toy, policy, text, 12, reservoir, generator, None, profiler, None)
    seen = []
    for t, latents in chunks:
        seen.append((t, counting.calls, profiler.chunks))
        assert latents.shape == (1, 3, 3, 32, 32)
    # 2 steps + 1 clean pass per chunk; a chunk's profile row closes once the caller is done with it
    assert seen == [(0, 3, 0), (3, 6, 1), (6, 9, 2), (9, 12, 3)] and profiler.chunks == 4


def test_streamed_videos_are_the_whole_video_decoded_at_once(random_toy_weights, random_toy, tmp_path):
    run_in_folder(make_cfg([f"model.backend.weights={random_toy_weights}", "eval=none", "num_latent_frames=15",
                            f"prompts=[{','.join(PROMPTS)}]", "batch_size=2"]), tmp_path / "run")
    latents, _ = ARSampler(steps=list(make_cfg([]).model.steps), shift=3.0).generate(
        random_toy, RelaxedPolicy(), random_toy.encode_text(PROMPTS), 15,
        [torch.Generator().manual_seed(v) for v in range(2)],
    )
    whole = random_toy.decode(latents)
    for row, video in enumerate(sorted((tmp_path / "run" / "videos").glob("*.mp4"))):
        write_video(tmp_path / "whole.mp4", whole[row], random_toy.fps)
        assert np.array_equal(read_video(video)[0], read_video(tmp_path / "whole.mp4")[0])
    assert len((tmp_path / "run" / "per_chunk.jsonl").read_text().splitlines()) == 5


def test_a_run_that_fails_midway_leaves_no_video(random_toy_weights, tmp_path, monkeypatch):
    from bench.generation import sampler as sampler_module

    real = sampler_module.ARSampler.chunk

    def failing(self, backend, policy, text, t, *args):
        if t == 6:
            raise RuntimeError("out of memory at chunk t=6")
        return real(self, backend, policy, text, t, *args)

    monkeypatch.setattr(sampler_module.ARSampler, "chunk", failing)
    with pytest.raises(RuntimeError, match="chunk t=6"):
        run_in_folder(make_cfg([f"model.backend.weights={random_toy_weights}", "eval=none", "num_latent_frames=12",
                                "prompts=[a red square moving fast]", "sampler.steps=[1000]"]), tmp_path)
    assert list(tmp_path.rglob("*.mp4")) == []  # neither the video nor its temporary file
    assert not (tmp_path / "summary.json").exists()
    assert json.loads((tmp_path / "error.json").read_text())["type"] == "RuntimeError"
    assert len((tmp_path / "per_chunk.jsonl").read_text().splitlines()) == 2  # what was generated is on record
