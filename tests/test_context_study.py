"""The context study (`+experiment=context`): its points attend the numbers of past frames their
files name, every point is a valid configuration, and each repeats over three seeds."""

from __future__ import annotations

import re

import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from study_helpers import compose_cfg, sweep_jobs

from bench.schema import validate
from memory_policies.plan import ReservoirView

POINTS = {"dense": [0, 3, 4, 6, 9, 12, 18, 24, 30], "relaxed": [2, 3, 4, 6, 9, 12, 18, 24, 30]}


def steady_attended(policy, t: int = 90) -> int:
    """Frames the chunk at latent frame `t` attends besides itself, the reservoir holding what the
    policy kept of every earlier frame (past any warm-up)."""
    frames: list[int] = []
    for start in range(0, t, policy.chunk):
        frames = policy.retain(frames, start) + list(range(start, start + policy.chunk))
    frames = policy.retain(frames, t)
    view = ReservoirView(tuple(frames), lambda fs: torch.stack([torch.full((4,), float(f)) for f in fs]))
    return len(policy.plan(t, view).attended)


def test_context_sweeps_every_point_over_three_seeds():
    cfg = compose_cfg(["+experiment=context"])
    jobs = sweep_jobs(cfg)
    points = [f"{policy}_{frames:02d}" for policy, all_frames in POINTS.items() for frames in all_frames]
    assert sorted(jobs) == sorted([f"context={p}", f"seed={s}"] for p in points for s in (0, 1000, 2000))
    assert sorted(p.stem for p in (REPO / "conf" / "context").glob("*.yaml")) == sorted(points)
    assert cfg.hydra.sweep.dir == "outputs/studies/context_toy" and cfg.model.name == "toy"
    assert compose_cfg(["+experiment=context", "model=self_forcing"]).hydra.sweep.dir == "outputs/studies/context_self_forcing"


def test_each_point_attends_the_frames_its_name_says_and_is_valid():
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for point in sorted(p.stem for p in (REPO / "conf" / "context").glob("*.yaml")):
            cfg = compose("config", overrides=["+experiment=context", f"context={point}"])
            validate(cfg)
            policy = instantiate(cfg.policy, chunk=cfg.sampler.chunk_frames)
            name, frames = re.fullmatch(r"(dense|relaxed)_(\d+)", point).groups()
            assert policy.name == name and steady_attended(policy) == int(frames), point
            if name == "dense":
                assert policy.window == int(frames) + 3
            else:
                assert policy.sink + policy.history + policy.tail == int(frames)
    release = compose_cfg(["+experiment=context", "context=relaxed_04"]).policy
    assert (release.sink, release.history, release.tail, release.candidates) == (2, 1, 1, 4)
