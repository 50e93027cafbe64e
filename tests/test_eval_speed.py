"""Benchmark (slow, prints, asserts nothing about speed): the offline suite on one 60 s toy video
(240 frames, 128x128, 4 fps, written like the toy model's). Target: under 30 s on 2 cores.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python -m pytest -m slow -s tests/test_eval_speed.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from bench.evaluation import evaluate_videos
from bench.runs.outputs import write_video

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_offline_suite_on_a_60s_toy_video(tmp_path):
    rng = np.random.default_rng(0)
    sprite_world = rng.integers(0, 256, (32, 32 + 240, 3), dtype=np.uint8)
    small = np.stack([sprite_world[:, t // 2 : t // 2 + 32] for t in range(240)])
    frames = small.repeat(4, axis=1).repeat(4, axis=2)  # 32x32 upscaled 4x nearest, like the toy
    write_video(tmp_path / "toy60.mp4", frames, 4)
    cfg = OmegaConf.load(REPO / "conf/eval/offline.yaml")
    start = time.perf_counter()
    metrics = evaluate_videos(cfg, [tmp_path / "toy60.mp4"], tmp_path / "metrics.json")
    seconds = time.perf_counter() - start
    clips = len(metrics["clip_settings"]["videos"]["toy60.mp4"]["clips"])
    print(f"\noffline suite, 60 s toy video ({clips} clips, reencode on): {seconds:.1f} s")
    assert clips == 30
