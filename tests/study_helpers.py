"""Helpers for the study tests: compose configs, list a sweep's jobs, run `bench.run` multiruns in-process."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

import bench.run

CONF = REPO / "conf"


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def sweep_jobs(cfg: DictConfig) -> list[list[str]]:
    """The job overrides the basic sweeper makes of an experiment's `hydra.sweeper.params`."""
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(params), None)
    return [list(job) for batch in batches for job in batch]


def tiny(weights: Path, *extra: str) -> list[str]:
    """Overrides for a study small enough for a unit test (one prompt, two chunks, no evaluation)."""
    return [
        f"model.backend.weights={weights}", "eval=none", "num_latent_frames=6",
        "prompts=[a red square moving fast]", *extra,
    ]


def run_in_process(monkeypatch, *overrides: str) -> None:
    """`python -m bench.run <overrides>` in this process (so tests can patch bench.run)."""
    monkeypatch.setattr(sys, "argv", ["bench.run", *overrides])
    bench.run.main()
