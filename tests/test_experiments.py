"""Experiment configs: the Table-1 studies pair checkpoint, sampler and memory as the paper does (on a real
backend, and the same memories on the toy by one override); the `policies` study covers every policy config;
each size sweep builds valid policies with the sizes it names; the toy `policies` study runs end to end."""

from __future__ import annotations

import pytest
from omegaconf import open_dict
from study_helpers import CONF, compose_cfg, run_in_process, sweep_jobs

from analysis.load import load_study
from bench.run import build

# Table 1's rows as the paper pairs them (shared/reference/relax_forcing.md, "Baselines the release
# configures"): model (checkpoint), sampler and its timesteps, memory policy.
SF_STEPS = [1000, 750, 500, 250]
METHODS = {
    "self_forcing": ("self_forcing", "ARSampler", SF_STEPS, "dense"),
    "causvid": ("causvid", "ARSampler", [1000, 757, 522], "dense"),
    "rolling_forcing": ("rolling_forcing", "RollingSampler", [1000, 800, 600, 400, 200], "rolling_forcing"),
    "longlive": ("longlive", "ARSampler", SF_STEPS, "longlive"),
    "deep_forcing": ("self_forcing", "ARSampler", SF_STEPS, "deep_forcing"),
    "relax_forcing": ("self_forcing", "ARSampler", SF_STEPS, "relaxed"),
}
TOY_STEPS = [1000, 917, 833, 750, 667, 583, 500, 417, 333, 250, 167, 83]


def built(*overrides: str):
    """The composed config and the policy and sampler `bench.run` builds from it (every field checked)."""
    cfg = compose_cfg([*overrides, "eval=none"])
    job = cfg.copy()
    with open_dict(job):
        del job["hydra"]  # a job's config, as `bench.run` gets it
    policy, sampler, _ = build(job)
    return cfg, policy, sampler


@pytest.mark.parametrize("name, frames", [("table1_30s", 120), ("table1_60s", 240)])
def test_table1_runs_the_six_methods_as_the_paper_pairs_them(name, frames):
    jobs = sweep_jobs(compose_cfg([f"+experiment={name}", "eval=none"]))
    assert jobs == [[f"method={method}"] for method in METHODS]
    for job in jobs:
        cfg, policy, sampler = built(f"+experiment={name}", *job)
        model, sampler_class, steps, memory = METHODS[job[0].removeprefix("method=")]
        assert (cfg.model.name, type(sampler).__name__, sampler.steps, policy.name) == (model, sampler_class, steps, memory)
        assert cfg.num_latent_frames == frames
        # every method's run lands in the study's one folder, whatever model it loads
        assert cfg.hydra.sweep.dir == f"outputs/studies/{name}"
    _, causvid, _ = built(f"+experiment={name}", "method=causvid")
    _, self_forcing, _ = built(f"+experiment={name}", "method=self_forcing")
    assert causvid.window == self_forcing.window == 21  # both dense 21-frame windows


def test_table1_on_the_toy_keeps_each_memory_and_sampler():
    for method, (_, sampler_class, _, memory) in METHODS.items():
        cfg, policy, sampler = built("+experiment=table1_30s", f"method={method}", "model=toy")
        assert (cfg.model.name, type(sampler).__name__, sampler.steps, policy.name) == ("toy", sampler_class, TOY_STEPS,
                                                                                      memory)
        assert cfg.policy == compose_cfg([f"policy={memory}", "eval=none"]).policy


def test_policies_study_runs_every_policy_config_on_one_model():
    jobs = sweep_jobs(compose_cfg(["+experiment=policies", "eval=none"]))
    names = [job[0].removeprefix("policy=") for job in jobs]
    assert sorted(names) == sorted(path.stem for path in (CONF / "policy").glob("*.yaml"))
    for name in names:
        cfg, policy, sampler = built("+experiment=policies", f"policy={name}")
        assert (policy.name, cfg.model.name, type(sampler).__name__) == (name, "toy", "ARSampler")
        assert cfg.hydra.sweep.dir == "outputs/studies/policies_toy"


# Each size sweep: the policy's fields at every point, listed by hand (one size varied at a time).
SIZE_SWEEPS = {
    "deep_forcing_sizes": (("sink", "capacity", "window", "recent", "max_reuse"),
                           [(0, 16), (4, 16), (7, 16), (10, 16), (10, 15), (10, 17), (10, 18), (10, 21)], (21, 4, 7)),
    "memrope_sizes": (("window", "sink", "long_rate", "short_rate"),
                      [(9, 3), (12, 3), (15, 3), (21, 3), (12, 1), (12, 2), (12, 5)], (0.01, 0.1)),
    "rolling_sink_sizes": (("window",), [(9,), (15,), (21,), (27,), (33,)], ()),
    "infinity_rope_sizes": (("tail", "reservoir", "sink", "history", "positions", "rope"),
                            [(1, 5), (2, 6), (3, 7), (4, 8), (6, 10)], (1, 0, "relative", "hybrid")),
}


@pytest.mark.parametrize("name", sorted(SIZE_SWEEPS))
def test_size_sweep_builds_each_point_it_names(name):
    fields, points, fixed = SIZE_SWEEPS[name]
    policy_name = name.removesuffix("_sizes")
    seen = []
    for job in sweep_jobs(compose_cfg([f"+experiment={name}", "eval=none"])):
        cfg, policy, _ = built(f"+experiment={name}", *job)
        assert policy.name == policy_name and cfg.hydra.sweep.dir == f"outputs/studies/{name}_toy"
        seen.append(tuple(getattr(policy, field) for field in fields))
    assert seen == [point + fixed for point in points]


@pytest.mark.slow  # 11 runs of 27 latent frames: about 2 min on 2 busy cores
def test_toy_policies_study_runs_every_policy(tmp_path, monkeypatch, random_toy_weights):
    """27 latent frames: far enough for every policy to depart from the dense window (Rolling Sink last, at t = 24)."""
    study = tmp_path / "policies"
    run_in_process(monkeypatch, "-m", "+experiment=policies", f"model.backend.weights={random_toy_weights}",
                   "eval=none", "num_latent_frames=27", "prompts=[a red square moving fast]", f"hydra.sweep.dir={study}")
    runs = load_study(study)
    names = sorted(path.stem for path in (CONF / "policy").glob("*.yaml"))
    assert sorted(runs["policy"]) == names and runs["status"].eq("complete").all()
    assert runs["label"].is_unique
    peaks = dict(zip(runs["policy"], runs["kv_peak_frames"]))
    # the windows' frames: dense 21, longlive 12, MemRoPE 12 (3 sinks + 2 averages + 4 recent + the chunk),
    # Infinity-RoPE 6; Rolling Sink its 18-frame bank + the previous chunk + the chunk being written
    assert {k: peaks[k] for k in ("dense", "longlive", "memrope", "infinity_rope", "rolling_sink")} == {
        "dense": 21, "longlive": 12, "memrope": 12, "infinity_rope": 6, "rolling_sink": 24}
