"""Studies: experiment configs and launchers compose; a small study runs end to end through the basic
and the submitit_local launchers into the report; a failing run is recorded, the others finish, and a
re-run computes only what is missing without duplicating rows; a study killed with SIGKILL resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import REPO
from omegaconf import OmegaConf
from study_helpers import compose_cfg, run_in_process, sweep_jobs, tiny

import bench.run
from analysis.load import load_study
from analysis.report import report
from bench.runs.state import MARKER, run_state
from bench.runs.study import StudySummary

# The Table-1, `policies` and size-sweep studies: tests/test_experiments.py.
EXPERIMENTS = {
    "lambda": ({"policy.lam": ["0.0", "0.5", "1.0", "2.0", "4.0", "8.0"]}, 120),
    "candidates": ({"policy.candidates": ["1", "2", "3", "4", "6", "8"]}, 120),
    "rope": ({"policy.rope": ["hybrid", "contiguous"]}, 120),
    "history_placement": ({"policy.selection": ["scored", "fixed"]}, 120),
}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_sweeps_only_what_it_studies(name):
    sweep, frames = EXPERIMENTS[name]
    cfg = compose_cfg([f"+experiment={name}", "eval=none"])
    jobs = sweep_jobs(cfg)
    [(key, values)] = sweep.items()
    assert jobs == [[f"{key}={value}"] for value in values]
    assert cfg.num_latent_frames == frames
    assert cfg.hydra.sweep.dir == f"outputs/studies/{name}_toy"  # one folder per study and model: re-runs resume
    baseline = compose_cfg(["eval=none"])
    assert cfg.policy == baseline.policy and cfg.model == baseline.model and cfg.sampler == baseline.sampler


def test_memory_sizes_varies_one_size_at_a_time_around_the_release():
    cfg = compose_cfg(["+experiment=memory_sizes", "eval=none"])
    sizes = []
    for job in sweep_jobs(cfg):
        policy = compose_cfg(["+experiment=memory_sizes", "eval=none", *job]).policy
        sizes.append((policy.sink, policy.history, policy.tail))
    expected = [(s, 1, 1) for s in range(5)] + [(2, h, 1) for h in (0, 2, 3)] + [(2, 1, t) for t in (2, 3, 4)]
    assert sizes == expected and cfg.policy.name == "relaxed"


@pytest.mark.parametrize("model", sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml")))
def test_every_backend_is_one_override_away(model):
    cfg = compose_cfg(["+experiment=table1_60s", "eval=none", f"model={model}"])
    assert cfg.model == compose_cfg([f"model={model}", "eval=none"]).model
    assert cfg.hydra.sweep.dir == "outputs/studies/table1_60s" and cfg.num_latent_frames == 240


# The launcher configs share the plugins' schema names on purpose (see bench/study.py).
@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/\w+' is validated against ConfigStore schema")
@pytest.mark.parametrize(
    "launcher, expected",
    [
        ("joblib", {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}),
        ("submitit_slurm", {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                            "gpus_per_node": 1, "tasks_per_node": 1, "max_num_timeout": 0}),
        ("submitit_local", {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
                            "gpus_per_node": 0}),
    ],
)
def test_launchers_keep_plugin_defaults_and_set_ours(launcher, expected):
    cfg = compose_cfg([f"hydra/launcher={launcher}", "eval=none"]).hydra.launcher
    assert {k: cfg[k] for k in expected} == expected
    if launcher.startswith("submitit"):
        assert cfg.submitit_folder.endswith("/.submitit/%j")  # the rest comes from the plugin


def check_small_study(study):
    """The 2 policies x 2 sink sizes study, as the report sees it."""
    written = report(study)
    for name in ("results.csv", "table.md", "table.tex", "report.html", "plots/sizes", "plots/attention_vs_attended"):
        assert written[name].exists(), name
    assert (study / "plots" / "sizes.pdf").exists()
    results = pd.read_csv(study / "results.csv")
    assert len(results) == 4 and results["status"].eq("complete").all()
    assert sorted(zip(results["policy"], results["policy.sink"])) == [("relaxed", 1), ("relaxed", 2), ("sink", 1), ("sink", 2)]
    assert {"config_hash", "label", "attended_frames", "latent_frames_per_s", "fps", "end_to_end_s", "commit", "device",
            "overrides", "time.denoise_s"} <= set(results.columns)
    assert sorted(results["label"]) == ["Relax Forcing (sink=1)", "Relax Forcing (sink=2)", "Sink only (sink=1)",
                                        "Sink only (sink=2)"]
    table = (study / "table.md").read_text()
    assert "## 1.5 s" in table and "| Relax Forcing (sink=1) " in table and "| Relax Forcing   | paper" in table
    assert "backbone of the measured scores" in table and "not measured" in table
    return results


def test_small_study_through_basic_and_submitit_local_launchers(tmp_path, monkeypatch, random_toy_weights):
    study = ["-m", "policy=relaxed,sink", "policy.sink=1,2", *tiny(random_toy_weights)]
    submitit_dir = tmp_path / "submitit"
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    submitit = subprocess.Popen(
        [sys.executable, "-m", "bench.run", *study, "hydra/launcher=submitit_local", f"hydra.sweep.dir={submitit_dir}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    run_in_process(monkeypatch, *study, f"hydra.sweep.dir={tmp_path / 'basic'}")  # meanwhile, the basic launcher
    output, _ = submitit.communicate(timeout=300)
    assert submitit.returncode == 0, output[-3000:]
    assert "Submitit 'local' sweep output dir" in output and (submitit_dir / ".submitit").is_dir()

    basic = check_small_study(tmp_path / "basic")
    via_submitit = check_small_study(submitit_dir)
    assert sorted(basic["config_hash"]) == sorted(via_submitit["config_hash"])  # launchers do not change results


def test_failing_run_is_recorded_and_rerun_completes_without_duplicates(tmp_path, monkeypatch, capsys, random_toy_weights):
    study_dir = tmp_path / "study"
    study = ["-m", "policy=relaxed,sink", "policy.sink=1,2", *tiny(random_toy_weights), f"hydra.sweep.dir={study_dir}"]
    real_execute, executed = bench.run.execute, []

    def failing_once(cfg, run_dir):
        executed.append(run_dir.name)
        if cfg.policy.name == "sink" and cfg.policy.sink == 2 and len(executed) <= 4:
            raise RuntimeError("injected failure")
        return real_execute(cfg, run_dir)

    monkeypatch.setattr(bench.run, "execute", failing_once)
    run_in_process(monkeypatch, *study)  # returns: the failing run does not stop the study
    assert len(executed) == 4
    out = capsys.readouterr().out
    assert f"study {study_dir}: 3 complete, 1 failed" in out and "injected failure" in out
    [error_file] = study_dir.rglob("error.json")
    error = json.loads(error_file.read_text())
    assert error["error"] == "injected failure" and "RuntimeError" in error["traceback"] and error["config_hash"]
    assert not (error_file.parent / "summary.json").exists() and len(list(study_dir.rglob("summary.json"))) == 3
    runs = load_study(study_dir)
    assert runs["status"].value_counts().to_dict() == {"complete": 3, "failed": 1}
    assert runs.loc[runs["status"] == "failed", "policy"].item() == "sink"

    run_in_process(monkeypatch, *study)  # the re-run computes only the failed run
    assert len(executed) == 5 and executed[-1] == error_file.parent.name
    assert capsys.readouterr().out.count("skipped, already complete") == 3
    assert not error_file.exists() and (error_file.parent / "summary.json").exists()

    # the same configuration found twice (e.g. a study folder copied into another) is one row
    first = next(study_dir.rglob("summary.json")).parent
    shutil.copytree(first, study_dir / "copied_run")
    report(study_dir)
    results = pd.read_csv(study_dir / "results.csv")
    assert len(results) == 4 and results["config_hash"].is_unique and results["status"].eq("complete").all()


def test_outside_a_study_a_failing_run_still_fails(tmp_path, monkeypatch, random_toy_weights):
    def broken(cfg, run_dir):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(bench.run, "execute", broken)
    with pytest.raises(RuntimeError, match="injected failure"):  # a bug keeps its traceback (exit status 1)
        run_in_process(monkeypatch, *tiny(random_toy_weights), f"hydra.run.dir={tmp_path / 'run'}")
    assert json.loads((tmp_path / "run" / "error.json").read_text())["error"] == "injected failure"


def test_evaluated_study_reports_each_score_with_its_backbone(tmp_path, monkeypatch, random_toy_weights):
    study_dir = tmp_path / "evaluated"
    overrides = [o for o in tiny(random_toy_weights) if o != "eval=none"]
    run_in_process(monkeypatch, "-m", "policy=relaxed,dense", *overrides, "eval=offline", f"hydra.sweep.dir={study_dir}")
    written = report(study_dir)
    results = pd.read_csv(written["results.csv"])
    assert results["dynamic_degree"].notna().all() and results["dynamic_degree.exact"].eq(False).all()
    backbone_row = next(line for line in (study_dir / "table.md").read_text().splitlines() if "backbone of the" in line)
    for name in results["dynamic_degree.backbone"].unique():
        assert f"{name} (not VBench)" in backbone_row  # a substitute is never labelled VBench
    assert "(VBench)" not in backbone_row.replace("(not VBench)", "")
    assert {"plots/clip_drift", "plots/dynamic_vs_attended"} <= set(written)


def test_study_killed_with_sigkill_resumes_and_counts_each_run_once(tmp_path, monkeypatch, capsys, random_toy_weights):
    study_dir = tmp_path / "study"
    study = ["-m", "policy.sink=0,1,2", *tiny(random_toy_weights), f"hydra.sweep.dir={study_dir}"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bench.run", *study], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not list(study_dir.glob(f"1_*/{MARKER}")):  # the second run has started
            assert process.poll() is None and time.monotonic() < deadline, "the study ended before its second run"
            time.sleep(0.02)
    finally:
        process.kill()  # SIGKILL: no handler runs
        process.wait()

    first, second = (next(study_dir.glob(f"{job}_*")) for job in (0, 1))
    assert (run_state(first), run_state(second), list(study_dir.glob("2_*"))) == ("complete", "interrupted", [])
    StudySummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(study_dir)}}}))
    out = capsys.readouterr().out
    assert f"study {study_dir}: 1 complete, 0 failed, 1 interrupted" in out
    assert f"interrupted {second.name}: pid {process.pid} on " in out
    runs = load_study(study_dir)
    assert runs["status"].value_counts().to_dict() == {"complete": 1, "interrupted": 1}
    assert runs.loc[runs["status"] == "interrupted", "run_dir"].item() == second.name

    real_execute, executed = bench.run.execute, []
    monkeypatch.setattr(bench.run, "execute", lambda cfg, run_dir: executed.append(run_dir.name) or real_execute(cfg, run_dir))
    run_in_process(monkeypatch, *study)  # the same command again
    assert [name.split("_")[0] for name in executed] == ["1", "2"] and executed[0] == second.name
    out = capsys.readouterr().out
    assert out.count("skipped, already complete") == 1 and f"study {study_dir}: 3 complete, 0 failed\n" in out
    runs = load_study(study_dir)
    assert len(runs) == 3 and runs["status"].eq("complete").all() and sorted(runs["policy.sink"]) == [0, 1, 2]
    assert not list(study_dir.rglob(MARKER))
