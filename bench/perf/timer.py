"""Benchmark timing in the manner of nanoGPT's bench.py: warm up, synchronise, median of repeats.

On GPU a call is timed with CUDA events around it and a synchronisation after it; on CPU with
`time.perf_counter`. Several candidates are timed round-robin, in ABBA order, so that drift in the
machine's speed (another job starting, thermal limits) falls on all of them alike and their
ratios stay fair.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Hashable, Mapping

import torch


def time_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds one call of `fn` takes on `device`."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1000


def rounds_ms(
    fns: Mapping[Hashable, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[Hashable, list[float]]:
    """Milliseconds of each function in each of `repeats` interleaved rounds, after `warmup` rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[Hashable, list[float]] = {key: [] for key in fns}
    for round_ in range(max(repeats, 1)):
        for key in list(fns) if round_ % 2 == 0 else list(fns)[::-1]:
            times[key].append(time_ms(fns[key], device))
    return times


def medians_ms(
    fns: Mapping[Hashable, Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> dict[Hashable, float]:
    """Median milliseconds of each function over interleaved rounds (see `rounds_ms`)."""
    return {key: statistics.median(values) for key, values in rounds_ms(fns, device, warmup, repeats).items()}
