"""What one run needs to be part of a study (a Hydra multirun): resume and survive.

A study is re-run by repeating its command; a run whose directory already holds a complete
summary.json for the same configuration is skipped, so only missing, failed or interrupted runs are
computed. Inside a study a failing run is recorded (error.json) and the others go on.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from .outputs import OutputError, UnreadableFile, check_writable, read_json_object
from .state import MARKER, find_runs, run_state

# conf/hydra/launcher/{joblib,submitit_*}.yaml carry the names of the plugins' schemas on purpose
# (`hydra/launcher=joblib` picks relaxbench's defaults); Hydra 1.3 merges them into the schema and warns.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def in_study() -> bool:
    """True inside a Hydra multirun (`-m`), whatever the launcher."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def completed_summary(run_dir: Path, config_hash: str) -> dict | None:
    """The run's summary if `run_dir` already holds complete results of this very configuration."""
    try:
        summary = read_json_object(run_dir / "summary.json")
    except UnreadableFile:
        return None
    if summary.get("status") == "complete" and summary.get("config_hash") == config_hash:
        return summary
    return None


def first_line(run_dir: Path, state: str) -> str:
    """The first line of a failed run's error, or what the marker of a running or interrupted run says."""
    try:
        if state == "failed":
            error = str(read_json_object(run_dir / "error.json").get("error") or "no message")
            return error.splitlines()[0] if error.strip() else "no message"
        marker = read_json_object(run_dir / MARKER)
    except UnreadableFile as err:
        return str(err)
    return f"pid {marker.get('pid')} on {marker.get('host')}, started {marker.get('started')}"


def exit_if_unwritable(folder: Path) -> None:
    """One line and exit code 2 for a folder that cannot be written, before Hydra writes there."""
    try:
        check_writable(folder)
    except OutputError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


class StudySummary(Callback):
    """Hydra's hooks around runs and studies, whatever the launcher: an output folder that cannot be
    written is one line before Hydra writes into it; at the end of a multirun, the study's complete,
    failed and interrupted runs (each with the first line of its error or marker) and the command
    that reports on it."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        exit_if_unwritable(Path(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        exit_if_unwritable(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        states = {run: run_state(run) for run in find_runs(sweep)}
        counts = {state: sum(s == state for s in states.values()) for state in ("complete", "failed", "interrupted", "running")}
        shown = [f"{counts['complete']} complete", f"{counts['failed']} failed"] + [
            f"{counts[state]} {state}" for state in ("interrupted", "running") if counts[state]
        ]
        print(f"study {sweep}: {', '.join(shown)}")
        for run, state in states.items():
            if state != "complete":
                print(f"  {state} {run.relative_to(sweep)}: {first_line(run, state)}")
        print(f"report: python -m analysis.report {sweep}")
