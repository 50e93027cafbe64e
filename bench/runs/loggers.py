"""Where a run's results go besides its own directory: `logger=local` (nowhere) or `logger=wandb`.

The W&B logger works from the run's files once they are written (summary.json, timing.json,
metrics.json, plan_trace.jsonl, videos/), so what W&B shows is exactly what analysis reads. It is
offline unless WANDB_MODE or `logger.mode` says otherwise: no account is needed, and
`wandb sync <run dir>/wandb/offline-run-*` uploads later.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Protocol

import pandas as pd
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from memory_policies import ConfigError

from .outputs import clip_scores, read_per_chunk
from .study import in_study


class RunLogger(Protocol):
    def finished(self, summary: dict) -> None:
        """The run finished; its files are in place but summary.json, written only once this returns
        (a logger that fails leaves the run failed, not complete)."""

    def failed(self, error: BaseException) -> None:
        """The run failed; error.json is written once this returns (noting this logger's own failure, if any)."""


class LocalLogger:
    """The run directory is the record: nothing more to do."""

    def finished(self, summary: dict) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        pass


class WandbLogger:
    """One W&B run per relaxbench run, grouped by study (the multirun's sweep directory name)."""

    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("logger=wandb needs the wandb package: pip install 'relaxbench[wandb]'")
        self.cfg, self.run_dir, self.options = cfg, run_dir, cfg.logger

    def _group(self) -> str | None:
        if self.options.group is not None:
            return str(self.options.group)
        return Path(HydraConfig.get().sweep.dir).name if in_study() else None

    def _start(self, summary: dict | None = None):
        import wandb

        config = OmegaConf.to_container(self.cfg, resolve=True)
        if HydraConfig.initialized():
            config["overrides"] = list(HydraConfig.get().overrides.task)
        model = summary["model"] if summary else self.cfg.model.name
        policy = summary["policy"] if summary else self.cfg.policy.name
        return wandb.init(
            project=self.options.project,
            entity=self.options.entity,
            group=self._group(),
            name=self.run_dir.name,
            job_type="run",
            tags=[str(model), str(policy)],
            dir=str(self.run_dir),
            mode=self.options.mode,
            config=config,
            settings=wandb.Settings(console="off", quiet=True),
        )

    def finished(self, summary: dict) -> None:
        run = self._start(summary)
        try:
            run.summary.update(summary)
            log_series(run, "chunk", read_per_chunk(self.run_dir))  # x: the run's chunk number
            self._log_clips(run)
            self._log_trace(run)
            self._log_videos(run)
        finally:
            run.finish()

    def _log_clips(self, run) -> None:
        """Per-clip scores: a curve per dimension over the video (mean over videos) and the full table."""
        import wandb

        path = self.run_dir / "metrics.json"
        clips = clip_scores(json.loads(path.read_text())) if path.exists() else pd.DataFrame()
        if clips.empty:
            return
        log_series(run, "clip", clips.pivot_table(index="clip", columns="dimension", values="score", aggfunc="mean"))
        run.log({"per_clip": wandb.Table(dataframe=clips)})

    def _log_trace(self, run) -> None:
        import wandb

        path = self.run_dir / "plan_trace.jsonl"
        if not path.exists() or not path.stat().st_size:
            return
        trace = pd.read_json(path, lines=True)
        for column in trace.columns[trace.map(lambda v: isinstance(v, list)).any()]:
            trace[column] = trace[column].map(json.dumps)  # W&B tables hold scalars
        run.log({"plan_trace": wandb.Table(dataframe=trace)})

    def _log_videos(self, run) -> None:
        import wandb

        videos = sorted((self.run_dir / "videos").glob("*.mp4"))
        limit = self.options.max_videos
        for path in videos if limit is None else videos[:limit]:
            run.log({f"videos/{path.stem}": wandb.Video(str(path), format="mp4", caption=path.stem)})

    def failed(self, error: BaseException) -> None:
        run = self._start()
        run.summary.update({"status": "failed", "error": str(error), "error_type": type(error).__name__})
        run.finish(exit_code=1)


def log_series(run, axis: str, frame: pd.DataFrame) -> None:
    """Log each row as `<axis>/<column>` against its own x axis `<axis>/index`, the frame's index
    (W&B's define_metric), so curves over chunks and over clips do not share W&B's global step."""
    run.define_metric(f"{axis}/index")
    run.define_metric(f"{axis}/*", step_metric=f"{axis}/index")
    for index, row in frame.select_dtypes("number").iterrows():
        run.log({f"{axis}/index": index} | {f"{axis}/{k}": v for k, v in row.dropna().items()})


LOGGERS = {"local": lambda cfg, run_dir: LocalLogger(), "wandb": WandbLogger}


def make_logger(cfg: DictConfig, run_dir: Path) -> RunLogger:
    name = cfg.logger.name
    if name not in LOGGERS:
        raise ConfigError(f"logger must be one of {', '.join(LOGGERS)}; got {name!r}")
    return LOGGERS[name](cfg, run_dir)
