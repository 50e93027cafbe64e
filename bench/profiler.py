"""Wall-clock sections per chunk, synchronised on GPU, so a run's time can be split by component."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch


class Profiler:
    """Accumulates seconds per named section; `chunk_rows()` gives one row per generated chunk."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)
        self.rows: list[dict[str, float]] = []
        self._row: dict[str, float] = defaultdict(float)
        self.peak_frames = 0
        self.peak_bytes = 0

    def record_reservoir(self, peak_frames: int, bytes_per_frame: int) -> None:
        """Keep the largest KV reservoir occupancy seen over the run."""
        self.peak_frames = max(self.peak_frames, peak_frames)
        self.peak_bytes = max(self.peak_bytes, peak_frames * bytes_per_frame)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
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
