"""Wall-clock sections per chunk, synchronised on GPU, so a run's time can be split by component.

Sections nest: "denoise" and "clean_pass" (sampler) contain "dit" (each DiT forward), which
contains "attention" (each self-attention layer), which contains "reservoir_write" (clean pass),
"token_selection", "memory_kv" (a layer's memory gathered and roped) and "kernel" (its SDPA);
"selection" (retain + plan) and "decode" / "evaluation" stand alone. A disabled profiler times
nothing and costs nothing, so profiling can be switched off to show it changes no output.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator, TextIO

import torch


class Profiler:
    """Accumulates seconds per named section and one row per generated chunk: kept for `chunk_rows()`,
    or, given `rows_to`, written there as a JSON line when the chunk ends (a run of any length then
    holds only the totals, `chunks` and `max_attended`)."""

    def __init__(self, device: torch.device | str = "cpu", enabled: bool = True, rows_to: TextIO | None = None) -> None:
        self.enabled = enabled
        self.cuda = torch.device(device).type == "cuda"
        self.totals: dict[str, float] = defaultdict(float)
        self.rows: list[dict[str, float]] = []
        self.rows_to = rows_to
        self.chunks = 0
        self.max_attended = 0.0
        self._row: dict[str, float] = defaultdict(float)
        self.peak_frames = 0
        self.peak_bytes = 0
        self.device_peak_frames = 0
        self.device_peak_bytes = 0
        self.prepared_peak_bytes = 0

    def record_reservoir(self, reservoir) -> None:
        """Keep the largest K/V occupancy of a `KVReservoir` seen over the run, in frames' worth of K/V:
        all it held (real frames, the entries a policy synthesised, its token memories: `peak_frames`)
        and what of it was on the device at once (`device_peak_frames`: all of it, or with
        `store=offload` its device pool)."""
        self.peak_frames = max(self.peak_frames, reservoir.peak_frames)
        self.peak_bytes = self.peak_frames * reservoir.bytes_per_frame
        self.device_peak_frames = max(self.device_peak_frames, reservoir.device_peak_frames)
        self.device_peak_bytes = self.device_peak_frames * reservoir.bytes_per_frame

    def record_prepared(self, nbytes: int) -> None:
        """Keep the most memory K/V prepared for one chunk (`PreparedMemory.nbytes`: its attended
        entries' and token rows' roped K and V over all layers, in the keys' dtype)."""
        self.prepared_peak_bytes = max(self.prepared_peak_bytes, nbytes)

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
        row = dict(self._row) | labels
        self.chunks += 1
        self.max_attended = max(self.max_attended, row.get("attended", 0))
        if self.rows_to is None:
            self.rows.append(row)
        else:
            self.rows_to.write(json.dumps(row) + "\n")
            self.rows_to.flush()
        self._row = defaultdict(float)

    def chunk_rows(self) -> list[dict[str, float]]:
        """The rows kept in memory (none when they are written to `rows_to`)."""
        return list(self.rows)

    def per_chunk_mean(self) -> dict[str, float]:
        """Seconds per generated chunk for every section, decoding and evaluation amortised."""
        return {name: seconds / max(self.chunks, 1) for name, seconds in self.totals.items()}
