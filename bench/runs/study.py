"""What one run needs to be part of a study (a Hydra multirun): resume and survive.

A study is re-run by repeating its command; a run whose directory already holds a complete
summary.json for the same configuration is skipped, so only missing or failed runs are computed.
Inside a study a failing run is recorded (error.json) and the others go on.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from .outputs import find_runs

# conf/hydra/launcher/{joblib,submitit_*}.yaml carry the names of the plugins' schemas on purpose
# (`hydra/launcher=joblib` picks relaxbench's defaults); Hydra 1.3 merges them into the schema and warns.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


def in_study() -> bool:
    """True inside a Hydra multirun (`-m`), whatever the launcher."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def completed_summary(run_dir: Path, config_hash: str) -> dict | None:
    """The run's summary if `run_dir` already holds complete results of this very configuration."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if summary.get("status") == "complete" and summary.get("config_hash") == config_hash:
        return summary
    return None


class StudySummary(Callback):
    """At the end of a multirun, whatever the launcher: the study's complete and failed runs (each
    with the first line of its error) and the command that reports on it."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        runs = find_runs(sweep)
        failed = [run for run in runs if not (run / "summary.json").exists()]
        print(f"study {sweep}: {len(runs) - len(failed)} complete, {len(failed)} failed")
        for run in failed:
            error = json.loads((run / "error.json").read_text()).get("error", "")
            print(f"  failed {run.relative_to(sweep)}: {error.splitlines()[0] if error else 'no message'}")
        print(f"report: python -m analysis.report {sweep}")
