"""Every real backend, from stand-in files in its release's layout, through the whole `bench.run` job on the CPU."""

from __future__ import annotations

import json

import imageio.v2 as imageio
import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from wan_standins import HEIGHT, PROMPTS, TINY_DIT, WIDTH, write_all

from bench.generation.sampler import ARSampler
from bench.models.wan import load_wan
from bench.run import execute
from memory_policies import DensePolicy, ReservoirView

# model, base layout, and the sampler / policy its Table 1 row uses
RUNS = [
    ("self_forcing", "original", ["policy=dense"]),
    ("causvid", "diffusers", ["policy=dense"]),
    ("rolling_forcing", "original", ["sampler=rolling", "policy=rolling_forcing"]),
    ("longlive", "diffusers", ["policy=longlive"]),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("wan"))


def overrides(files, model, layout, extra):
    paths = files["releases"][model]
    arch = ",".join(f"{k}:{v}" for k, v in TINY_DIT.items())
    lora = [f"model.backend.lora={paths['lora']}"] if "lora" in paths else []
    return [
        f"model={model}", f"model.backend.checkpoint={paths['checkpoint']}", f"model.backend.base={files[layout]}",
        f"model.backend.architecture={{{arch}}}", f"model.backend.height={HEIGHT}", f"model.backend.width={WIDTH}",
        "model.backend.device=cpu", "eval=none", "num_latent_frames=9", f"prompts=[{PROMPTS[0]}]", *lora, *extra,
    ]


@pytest.mark.parametrize("model,layout,extra", RUNS, ids=[run[0] for run in RUNS])
def test_each_backend_generates_videos_through_the_run(files, tmp_path, model, layout, extra):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides(files, model, layout, extra))
    summary = execute(cfg, tmp_path)
    assert summary["status"] == "complete" and summary["model"] == model
    assert summary["sampler.steps"] == list(cfg.model.steps)

    (video,) = sorted((tmp_path / "videos").glob("*.mp4"))
    frames = imageio.mimread(video)
    assert len(frames) == 4 * 9 - 3 and frames[0].shape == (HEIGHT, WIDTH, 3)
    rows = [json.loads(line) for line in (tmp_path / "plan_trace.jsonl").read_text().splitlines()]
    assert [row["t"] for row in rows] == [0, 3, 6]
    timing = json.loads((tmp_path / "timing.json").read_text())
    provenance = timing["provenance"]
    assert provenance["release"] == model and provenance["base_layout"] == layout
    assert provenance["checkpoint"] == str(files["releases"][model]["checkpoint"])
    assert len(provenance["checkpoint_sha256"]) == 16
    assert ("lora_sha256" in provenance) == (model == "longlive")
    assert timing["chunks"] == 3


def test_the_longlive_policy_is_its_release_window():
    """LongLive (wan/modules/causal_model.py, local_attn_size 12, sink_size 3): the sink frames and the newest
    frames of a 12-frame window, all at their absolute (cached, already rotated) positions."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        policy = instantiate(compose("config", overrides=["model=longlive", "policy=longlive"]).policy)
    assert policy.max_frames() == 12
    frames: list[int] = []
    for t in range(0, 90, 3):
        frames = policy.retain(frames, t)
        plan = policy.plan(t, ReservoirView(frames=tuple(frames)))
        window = [f for f in range(3) if f < t] + list(range(max(3, t - 6), t))
        assert plan.attended == tuple((f, f) for f in window) and plan.current_positions == [t, t + 1, t + 2]
        frames += [t, t + 1, t + 2]


def test_bfloat16_runs_the_whole_backend(files):
    """The GPU dtype, on the CPU: text, DiT, reservoir and VAE all in bf16, float32 modules kept."""
    paths = files["releases"]["self_forcing"]
    backend = load_wan(
        "self_forcing", checkpoint=str(paths["checkpoint"]), base=str(files["diffusers"]), height=HEIGHT, width=WIDTH,
        device="cpu", dtype="bfloat16", architecture=TINY_DIT,
    )
    assert backend.dtype == torch.bfloat16 and backend.provenance["dtype"] == "bfloat16"
    text = backend.encode_text(PROMPTS)
    assert text.dtype == torch.bfloat16
    latents, reservoir = ARSampler().generate(backend, DensePolicy(), text, 6, torch.Generator().manual_seed(0))
    assert latents.dtype == reservoir.k.dtype == torch.bfloat16 and torch.isfinite(latents).all()
    frames = backend.decode(latents)
    assert frames.shape == (2, 21, HEIGHT, WIDTH, 3) and frames.dtype.name == "uint8"
