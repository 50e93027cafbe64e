"""Wall-clock sections per chunk, synchronised on GPU, so a run's time can be split by component.

Sections nest: "denoise" and "clean_pass" (sampler) contain "dit" (each DiT forward), which
contains "attention" (each self-attention layer), which contains "reservoir_write" (clean pass);
"selection" (retain + plan) and "decode" / "evaluation" stand alone. A disabled profiler times
nothing and costs nothing, so profiling can be switched off to show it changes no output.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch


class Profiler:
    """Accumulates seconds per named section; `chunk_rows()` gives one row per generated chunk."""

    def __init__(self, device: torch.device | str = "cpu", enabled: bool = True) -> None:
        self.enabled = enabled
        self.cuda = torch.device(device).type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)
        self.rows: list[dict[str, float]] = []
        self._row: dict[str, float] = defaultdict(float)
        self.peak_frames = 0
        self.peak_bytes = 0

    def record_reservoir(self, peak_frames: int, bytes_per_frame: int) -> None:
        """Keep the largest KV reservoir occupancy seen over the run, in frames' worth of K/V: real frames,
        the entries a policy synthesised and its token memories (`KVReservoir.peak_frames`)."""
        self.peak_frames = max(self.peak_frames, peak_frames)
        self.peak_bytes = max(self.peak_bytes, peak_frames * bytes_per_frame)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            seconds = time.perf_counter() - start
            self.totals[name] += seconds
            self._row[name] += seconds

    def end_chunk(self, **labels: float) -> None:
        self.rows.append(dict(self._row) | labels)
        self._row = defaultdict(float)

    def chunk_rows(self) -> list[dict[str, float]]:
        return list(self.rows)

    def per_chunk_mean(self) -> dict[str, float]:
        """Seconds per generated chunk for every section, decoding and evaluation amortised."""
        return {name: seconds / max(len(self.rows), 1) for name, seconds in self.totals.items()}
