"""A run folder's state: who is writing it, whether a run there started and never ended, and the
results of an earlier run that must go before a new one writes.

A run holds an exclusive `flock` on `<run>/.run.lock` for its whole life; the kernel drops it when the
process dies, however it dies, so a lock never outlives its run. While it works, `running.json` (pid,
host, start time, config hash) marks the folder; success (summary.json) or failure (error.json) removes
it. A marker whose lock no live process holds is a run that was killed: "interrupted".
"""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from memory_policies import ConfigError

from .outputs import atomic_write_json, writing

LOCK = ".run.lock"
MARKER = "running.json"
# Everything of a run that could be read as a later run's results in the same folder.
RESULTS = ("summary.json", "error.json", "metrics.json", "timing.json", "per_chunk.jsonl", "plan_trace.jsonl", "videos")


class FolderBusy(ConfigError):
    """Another live run is writing the folder."""


@contextmanager
def claimed(run_dir: Path) -> Iterator[None]:
    """Hold the folder's lock for the duration; FolderBusy if a live process holds it."""
    with writing(run_dir / LOCK):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / LOCK).touch()  # never removed: a lock file that is replaced locks nothing
    with open(run_dir / LOCK) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FolderBusy(
                f"hydra.run.dir: another live run is writing {run_dir} (see its {MARKER}); wait for it or choose "
                "another folder"
            ) from None
        yield  # closing the file releases the lock


def writer_alive(run_dir: Path) -> bool:
    """Whether a live process holds the folder's lock."""
    try:
        with open(run_dir / LOCK) as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released as the file closes
    except BlockingIOError:
        return True
    except OSError:  # no lock file (or one we may not open): no run to tell apart
        return False
    return False


def clear_results(run_dir: Path) -> None:
    """Remove an earlier run's results (and temporary files a killed writer left)."""
    with writing(run_dir):
        for name in RESULTS:
            path = run_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        for leftover in run_dir.glob(".*.tmp"):
            leftover.unlink()


def mark_running(run_dir: Path, config_hash: str) -> None:
    started = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_json(
        run_dir / MARKER, {"pid": os.getpid(), "host": platform.node(), "started": started, "config_hash": config_hash}
    )


def unmark(run_dir: Path) -> None:
    (run_dir / MARKER).unlink(missing_ok=True)


def run_state(run_dir: Path) -> str | None:
    """complete, failed, running or interrupted; None where no run has started."""
    if (run_dir / "summary.json").exists():
        return "complete"
    if (run_dir / "error.json").exists():
        return "failed"
    if (run_dir / MARKER).exists():
        return "running" if writer_alive(run_dir) else "interrupted"
    return None


def find_runs(study: Path) -> list[Path]:
    """Every run folder under `study`, at any depth: complete, failed, running or interrupted."""
    return sorted({p.parent for name in ("summary.json", "error.json", MARKER) for p in study.rglob(name)})
