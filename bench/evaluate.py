"""Score any folder of mp4 files with the VBench-Long evaluation, outside a generation run:

    python -m bench.evaluate videos_dir=<dir> [eval=offline|vbench] [eval.weights_dir=<dir>] [output=<file>]

metrics.json goes into `videos_dir` unless `output` names another file (a run's own metrics.json,
next to its videos/ folder, is left alone).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from bench.evaluation import evaluate_videos, summary_fields
from bench.evaluation.video import list_videos
from memory_policies import ConfigError


def run(cfg: DictConfig) -> Path:
    if cfg.eval.name == "none":
        raise ConfigError("eval=none scores nothing; choose eval=offline or eval=vbench")
    videos = list_videos(Path(cfg.videos_dir))
    out = Path(cfg.output).expanduser() if cfg.output else Path(cfg.videos_dir).expanduser() / "metrics.json"
    metrics = evaluate_videos(cfg.eval, videos, out)
    for key, value in summary_fields(metrics).items():
        if not key.endswith((".backbone", ".exact")):
            backbone = metrics["dimensions"].get(key, {}).get("backbone")
            print(f"{key:24s} {'-' if value is None else f'{value:.4f}'}" + (f"   [{backbone}]" if backbone else ""))
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        out = run(cfg)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"metrics.json: {out}")


if __name__ == "__main__":
    main()
