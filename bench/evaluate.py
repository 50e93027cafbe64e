"""Score any folder of mp4 files with the VBench-Long evaluation, outside a generation run:

    python -m bench.evaluate videos_dir=<dir> [eval=offline|vbench] [eval.weights_dir=<dir>] [output=<file>]

metrics.json goes into `videos_dir` unless `output` names another file (a run's own metrics.json,
next to its videos/ folder, is left alone).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.cli import hydra_app
from bench.evaluation import evaluate_videos, score_lines
from bench.runs.videos import list_videos
from memory_policies import ConfigError

FIELDS = ("eval", "videos_dir", "output")


def output_path(cfg: DictConfig) -> Path:
    """Where metrics.json goes: `output`, or `<videos_dir>/metrics.json`; a folder is refused."""
    if cfg.output is not None and (not isinstance(cfg.output, str) or not cfg.output.strip()):
        raise ConfigError(f"output must be null or the path of the metrics.json to write, got {cfg.output!r:.60}")
    out = Path(cfg.output).expanduser() if cfg.output else Path(cfg.videos_dir).expanduser() / "metrics.json"
    if out.is_dir():
        raise ConfigError(f"output: {out} is a directory; give the path of the metrics.json file to write")
    if out.parent.exists() and not out.parent.is_dir():
        raise ConfigError(f"output: {out.parent} is not a directory, so {out.name} cannot be written there")
    return out


def run(cfg: DictConfig) -> Path:
    unknown = [key for key in cfg if key not in FIELDS]
    if unknown:
        raise ConfigError(f"{unknown[0]} is not a field of bench.evaluate (known: {', '.join(FIELDS)})")
    if OmegaConf.is_missing(cfg, "videos_dir") or not isinstance(cfg.videos_dir, str) or not cfg.videos_dir.strip():
        given = "nothing" if OmegaConf.is_missing(cfg, "videos_dir") else repr(cfg.videos_dir)[:60]
        raise ConfigError(f"videos_dir must be the folder of .mp4 files to score (videos_dir=<dir>), got {given}")
    if cfg.eval.name == "none":
        raise ConfigError("eval=none scores nothing; choose eval=offline or eval=vbench")
    out = output_path(cfg)
    videos = list_videos(Path(cfg.videos_dir))
    metrics = evaluate_videos(cfg.eval, videos, out)
    print("\n".join(score_lines(metrics)))
    return out


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    out = run(cfg)
    print(f"metrics.json: {out}")


if __name__ == "__main__":
    main()
