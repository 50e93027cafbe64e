"""VBench-Long evaluation: the clip rule, the per-dimension VBench rules on exact or substitute
backbones, the Quality score and the Table-1 Average, and the real vbench package as an alternative.

    metrics = evaluate_videos(cfg.eval, videos, run_dir / "metrics.json")
    fields = summary_fields(metrics)
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from memory_policies import ConfigError

from .registry import DIMENSIONS, _Builder, requested_dimensions
from .results import summary_fields

EVALUATORS = ("offline", "vbench")


def check_config(cfg: DictConfig) -> None:
    """The cheap checks of an `eval` config (names, modes, paths), so a run fails before it generates."""
    if cfg.name not in EVALUATORS:
        raise ConfigError(f"eval.name must be one of {', '.join(EVALUATORS)} (or none to skip), got {cfg.name!r}")
    requested_dimensions(cfg)
    if cfg.name == "offline":
        _Builder(cfg)


def evaluate_videos(cfg: DictConfig, videos: list[Path], out_path: Path) -> dict:
    """Score `videos` (mp4 files) with the evaluator `cfg.name`, write `out_path` atomically, return it."""
    check_config(cfg)
    videos = [Path(v) for v in videos]
    if not videos:
        raise ConfigError("evaluation needs at least one .mp4 video")
    for video in videos:
        if not video.is_file():
            raise FileNotFoundError(f"video {video} not found")
    Path(out_path).unlink(missing_ok=True)  # a failed evaluation must not leave an older result standing
    if cfg.name == "offline":
        from .suite import evaluate_in_process

        return evaluate_in_process(cfg, videos, Path(out_path))
    from .vbench_runner import evaluate_with_vbench

    return evaluate_with_vbench(cfg, videos, Path(out_path))


__all__ = ["DIMENSIONS", "check_config", "evaluate_videos", "summary_fields"]
