"""Any length, every policy: past the 1024 positions of the releases' RoPE table, and a warning exactly
where a policy makes the model attend farther back than it was trained to."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from bench.generation.rolling_sampler import RollingSampler
from bench.generation.sampler import ARSampler
from memory_policies import DensePolicy, RelaxedPolicy
from memory_policies.reach import Reach, first_unseen

POLICIES = sorted(path.stem for path in (REPO / "conf" / "policy").glob("*.yaml"))
PAST_TABLE = 1035  # latent frames: the last chunk starts at 1032, beyond the 1024-entry table


@pytest.fixture(scope="module")
def one_layer_toy():
    """The toy's architecture cut to one thin layer: the same code paths at a fraction of the cost."""
    from diffusers import WanTransformer3DModel

    from bench.toy.model import DIT_CONFIG, ToyTextEncoder, toy_backend

    torch.manual_seed(0)
    config = DIT_CONFIG | {"num_layers": 1, "num_attention_heads": 2, "attention_head_dim": 16, "ffn_dim": 64}
    return toy_backend(WanTransformer3DModel(**config), ToyTextEncoder(DIT_CONFIG["text_dim"]))


def make_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def policy_of(name: str, *overrides: str):
    cfg = make_cfg([f"policy={name}", *(f"policy.{o}" for o in overrides)])
    return instantiate(cfg.policy, chunk=3)


@pytest.mark.parametrize("name", POLICIES)
def test_every_policy_runs_past_1024_latent_frames(one_layer_toy, name):
    policy = policy_of(name)
    sampler = (RollingSampler if name == "rolling_forcing" else ARSampler)(steps=[1000])
    plans: dict[int, object] = {}
    latents, _ = sampler.generate(
        one_layer_toy, policy, one_layer_toy.encode_text(["a red square moving fast"]), PAST_TABLE,
        torch.Generator().manual_seed(0), trace=lambda chunk, t, plan: plans.__setitem__(t, plan),
    )
    assert latents.shape[2] == PAST_TABLE and bool(torch.isfinite(latents).all())
    last = plans[PAST_TABLE - 3]
    assert [f for f, _ in last.current] == [1032, 1033, 1034]
    # every policy but those that re-index the chunk (Infinity-RoPE: 3..5, MemRoPE: after its 9 entries)
    # places the last chunk at its absolute index
    reindexed = {"infinity_rope": [3, 4, 5], "memrope": [9, 10, 11]}
    assert last.current_positions == reindexed.get(name, [1032, 1033, 1034])


@pytest.mark.parametrize(
    ("policy", "lookahead", "expected"),
    [
        # dense 21 = 18 memory frames + the chunk: at t, keys from t-18, queries up to t+2: 20, never more
        (DensePolicy(window=21), 0, None),
        # one frame more: at t=21 the keys start at 2 (19 frames), the last query is 23
        (DensePolicy(window=22), 0, Reach(21, 21)),
        # unbounded: frame 0 stays; t=18 reaches 20 - 0 = 20, t=21 reaches 23
        (DensePolicy(window=None), 0, Reach(21, 23)),
        # Relax Forcing packs sinks, history and tail just before the chunk: at most 6 frames back
        (RelaxedPolicy(), 0, None),
        # its contiguous ablation keeps the sinks at positions 0 and 1: 23 - 0 at t=21
        (RelaxedPolicy(rope="contiguous"), 0, Reach(21, 23)),
        # Rolling Forcing's anchor (3) + tail (3) + chunk (3) + 4 younger chunks (12) = 21 frames: distance 20;
        # one frame more of look-ahead and t=6 (anchor 0..2, tail 3..5, queries up to 8 + 13) reaches 21
        (RelaxedPolicy(sink=3, history=0, tail=3, warmup=False, reservoir=24), 12, None),
        (RelaxedPolicy(sink=3, history=0, tail=3, warmup=False, reservoir=24), 13, Reach(6, 21)),
    ],
)
def test_first_unseen_distance_is_found_where_it_is(policy, lookahead, expected):
    assert first_unseen(policy, 1200, 21, lookahead) == expected


def test_deep_forcing_reaches_one_frame_past_the_horizon_between_compressions():
    # docs/policies.md: the release re-places the sinks 0..9 at 5..14 when it compresses at t=21; the chunk
    # after it (t=24, queries up to 26) attends them 26 - 5 = 21 frames back, one more than training saw
    assert first_unseen(policy_of("deep_forcing"), 1200, 21) == Reach(24, 21)


def test_the_horizon_is_the_models():
    longlive = policy_of("longlive")  # frame sink 0..2 at absolute positions
    assert first_unseen(longlive, 1200, 21) == Reach(21, 23)  # the toy and Self-Forcing: 21 frames
    assert first_unseen(longlive, 1200, 240) == Reach(240, 242)  # LongLive's long tuning: 240 frames


def run_warnings(caplog, *overrides: str) -> list[str]:
    from bench.run import build

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bench.run"):
        build(make_cfg(["eval=none", *overrides]))
    return [record.getMessage() for record in caplog.records if record.name == "bench.run"]


def test_start_up_warns_once_for_unseen_distances_and_never_otherwise(caplog):
    [line] = run_warnings(caplog, "policy=dense", "policy.window=null", "num_latent_frames=240")
    assert "dense attends 23 latent frames back at chunk t=21" in line and "up to 20" in line and "\n" not in line
    assert run_warnings(caplog, "policy=dense", "policy.window=null", "num_latent_frames=21") == []  # ends before
    assert run_warnings(caplog, "policy=relaxed", "num_latent_frames=14400") == []
    assert run_warnings(caplog, "policy=dense", "num_latent_frames=14400") == []
