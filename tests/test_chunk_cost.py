"""bench.perf.chunk_cost: the per-chunk slope over a video, on per-chunk rows of known shape."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from bench.perf.chunk_cost import chunk_cost, main


def rows(seconds: np.ndarray) -> pd.DataFrame:
    """Chunks of 3 latent frames (0.75 s of video each), split over two of the summed sections."""
    return pd.DataFrame({"t": 3 * np.arange(len(seconds)), "denoise": 0.8 * seconds, "clean_pass": 0.2 * seconds,
                         "attention": seconds})  # nested in denoise: not added again


def test_a_linear_rise_is_measured_in_ms_per_minute_of_video():
    minutes = 3 * np.arange(800) * 0.25 / 60  # 800 chunks = 10 min of video
    cost = chunk_cost(rows(0.1 + 0.002 * minutes), warmup=0)
    assert cost.slope_ms_per_min == pytest.approx(2.0) and cost.median_s == pytest.approx(0.1 + 0.002 * 4.99375)
    assert cost.minutes == pytest.approx(9.9875) and not cost.flat  # 20 ms of 110: not flat


def test_noise_around_a_constant_is_flat_and_a_step_is_not():
    # 4800 chunks = 60 min of video: the slope is fitted to 60 one-minute medians
    noise = np.random.default_rng(0).normal(0, 0.005, 4800)
    flat = chunk_cost(rows(0.1 + noise), warmup=40)
    assert flat.flat and flat.chunks == 4760
    low, high = flat.ci95_ms_per_min
    assert low < flat.slope_ms_per_min < high
    step = chunk_cost(rows(0.1 + noise + 0.035 * (np.arange(4800) > 2400)), warmup=40)  # +35 % halfway
    assert not step.flat and step.slope_ms_per_min > 0


def test_the_command_reads_a_run_folder(tmp_path, capsys):
    with open(tmp_path / "per_chunk.jsonl", "w") as f:
        for i in range(100):
            f.write(json.dumps({"t": 3 * i, "denoise": 0.05, "clean_pass": 0.01, "decode": 0.001}) + "\n")
    main([str(tmp_path), "--warmup", "10", "--parts", "3", "--block", "0.25"])
    out = capsys.readouterr().out
    assert "90 chunks after 10, median 61.0 ms per chunk" in out
    assert len([line for line in out.splitlines() if line.startswith("  video")]) == 3
    assert re.search(r"slope [+-]0\.0000 .*: flat; the chunk changes by [+-]0\.00 %", out)
    for bad in ([str(tmp_path / "missing")], [str(tmp_path)]):  # no rows; 67 s of video: 2 one-minute blocks
        with pytest.raises(SystemExit):
            main(bad)
