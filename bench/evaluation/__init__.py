"""VBench-Long evaluation: the clip rule, the per-dimension VBench rules (one plugin per dimension,
`dimensions/`) on exact or substitute backbones, the Quality score and the Table-1 Average, and the
real vbench package as an alternative.

    check_config(cfg.eval)                                   # before generation: every field, every backbone
    metrics = evaluate_videos(cfg.eval, videos, run_dir / "metrics.json")
    fields = summary_fields(metrics)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from memory_policies import ConfigError

from .config import validate
from .dimensions import DIMENSIONS
from .results import score_lines, summary_fields

Evaluation = Callable[[list[Path], Path], dict]  # (videos, metrics.json path) -> metrics
# The evaluation check_config built, handed to the next evaluate_videos of the same config: the
# networks are built once, before generation, and released once they have scored.
_prepared: dict[str, Evaluation] = {}


def _key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True)


def prepare(settings: dict) -> Evaluation:
    """Build every backbone of an offline config, or check vbench's interpreter, imports and weights."""
    if settings["name"] == "offline":
        from .builder import build_setup
        from .suite import evaluate_in_process

        return partial(evaluate_in_process, settings, build_setup(settings))
    from .vbench_runner import check_inputs, evaluate_with_vbench

    return partial(evaluate_with_vbench, settings, *check_inputs(settings))


def check_config(cfg: DictConfig) -> None:
    """Check every field of an `eval` config and build (or check) everything its evaluation needs, so
    that nothing of the evaluation can fail after the videos are generated."""
    settings = validate(cfg)
    _prepared.clear()
    if settings["name"] != "none":
        _prepared[_key(settings)] = prepare(settings)


def evaluate_videos(cfg: DictConfig, videos: list[Path], out_path: Path) -> dict:
    """Score `videos` (mp4 files) with the evaluator `cfg.name`, write `out_path` atomically, return it."""
    settings = validate(cfg)
    if settings["name"] == "none":
        raise ConfigError("eval.name must be offline or vbench to score videos, got 'none'")
    videos = [Path(v) for v in videos]
    if not videos:
        raise ConfigError("evaluation needs at least one .mp4 video")
    for video in videos:
        if not video.is_file():
            raise FileNotFoundError(f"video {video} not found")
    evaluation = _prepared.pop(_key(settings), None) or prepare(settings)
    Path(out_path).unlink(missing_ok=True)  # a failed evaluation must not leave an older result standing
    return evaluation(videos, Path(out_path))


__all__ = ["DIMENSIONS", "check_config", "evaluate_videos", "score_lines", "summary_fields"]
