"""A run's files: writing them (atomic JSON with the user's file mode, mp4 videos, the provenance every
result carries; a folder that cannot be written is one line) and reading them back (a JSON object
checked for shape, per-clip scores)."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import torch

from memory_policies import ConfigError, Plan

REPO = Path(__file__).resolve().parents[2]
PER_CHUNK_FILE = "per_chunk.jsonl"  # a run's per-chunk profile, one JSON row per chunk (timing.json has the totals)


class OutputError(ConfigError):
    """A run's folder cannot be written (read-only, full, not a folder); one line naming the path."""


class UnreadableFile(ValueError):
    """A result file that cannot be used (missing, truncated, not a JSON object, fields missing); one line naming it."""


def os_reason(err: OSError) -> str:
    """An OSError's reason without its repeated path (or the first line of a library's message)."""
    return err.strerror or (str(err).splitlines() or [type(err).__name__])[0]


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing `path` into one OutputError line naming it."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"cannot write {path}: {os_reason(err)}") from None


def check_writable(folder: Path) -> None:
    """Create `folder` and a file in it, or raise OutputError."""
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test.{secrets.token_hex(4)}"
        probe.touch()
        probe.unlink()


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename, so a reader never sees half a file. The file is
    created like any other (mode 0666 less the umask, so 0644 usually), not mkstemp's 0600."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "x") as f:
                json.dump(obj, f, indent=2, default=str)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def read_json_object(path: Path, required: Sequence[str] = ()) -> dict:
    """The JSON object in `path`, holding at least the `required` keys, or UnreadableFile naming it."""
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UnreadableFile(f"cannot read {path}: {os_reason(err)}") from None
    except ValueError as err:  # bad JSON or bad UTF-8
        raise UnreadableFile(f"cannot read {path}: not valid JSON ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(data, dict):
        raise UnreadableFile(f"cannot read {path}: expected a JSON object, found a {type(data).__name__}")
    missing = [key for key in required if key not in data]
    if missing:
        raise UnreadableFile(f"cannot read {path}: it lacks {', '.join(missing)}")
    return data


def video_name(index: int, prompt: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:60]
    return f"{index:03d}_{slug}.mp4"


def read_per_chunk(run_dir: Path) -> pd.DataFrame:
    """A run's per-chunk profile (`PER_CHUNK_FILE`), one row per chunk; empty when the run wrote none."""
    path = Path(run_dir) / PER_CHUNK_FILE
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_json(path, lines=True)
    except ValueError as err:
        raise UnreadableFile(f"{path} is not one JSON object per line ({str(err).splitlines()[0]})") from None


@dataclass
class PlanTrace:
    """plan_trace.jsonl's writer: the sampler calls it with each chunk's plan (chunk, t, plan), and it
    writes one row per video of the batch being generated (`videos`: their names, set per batch)."""

    file: TextIO
    videos: list[str] = field(default_factory=list)

    def __call__(self, chunk: int, t: int, plan: Plan) -> None:
        for i, video in enumerate(self.videos):  # video i is batch row i (its own token memory)
            row = {"video": video, "chunk": chunk, "t": t} | plan.trace_fields(i)
            self.file.write(json.dumps(row) + "\n")


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict:
    return {
        "commit": git_commit(),
        "device": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }


def clip_scores(metrics: dict) -> pd.DataFrame:
    """metrics.json's per-clip scores (`dimensions.<name>.per_clip`: video -> clip index -> score)
    as rows (dimension, video, clip, score); clips that could not be scored are left out."""
    rows = [
        {"dimension": dimension, "video": video, "clip": int(clip), "score": float(score)}
        for dimension, entry in metrics.get("dimensions", {}).items()
        for video, clips in (entry.get("per_clip") or {}).items()
        for clip, score in clips.items()
        if score is not None
    ]
    return pd.DataFrame(rows, columns=["dimension", "video", "clip", "score"])
