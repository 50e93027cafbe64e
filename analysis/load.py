"""Reading a study: every run under a folder into one pandas frame, plus its per-chunk and per-clip rows.

A run is a directory holding summary.json (complete), error.json (failed) or running.json (running,
or interrupted when no live process holds its lock); it may sit at any depth (Hydra sweep
subdirectories, several sweeps copied together). Each configuration counts once: runs with the same
config_hash are one row, the complete one preferred, then the newest.

A damaged file does not stop the report: a run whose summary.json or error.json cannot be read is a
row with status "unreadable", and an unreadable timing.json, metrics.json or first video is the
run's `warning`; each names the file in one line. Only a study with no usable complete run is a
StudyError.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from bench.runs.outputs import UnreadableFile, clip_scores, read_json_object
from bench.runs.state import MARKER, find_runs, run_state
from bench.runs.videos import probe

from .names import METHODS

# Columns that define a configuration in a study; those that vary name the runs.
SETTINGS_PREFIX = "policy."
SETTINGS_EXTRA = ("seed",)
SETTINGS_IGNORED = ("policy.name", "policy.chunk")
# What a complete run's summary.json must hold for its row to be read.
SUMMARY_FIELDS = ("status", "config_hash", "policy", "seconds", "num_latent_frames", "latent_frames_per_s")


class StudyError(Exception):
    """Bad input to the analysis; the message is one line."""


def first_video(run_dir: Path) -> Path | None:
    return next(iter(sorted((run_dir / "videos").glob("*.mp4"))), None)


def video_fps(run_dir: Path) -> float | None:
    """Frame rate of the run's first video (the paper's FPS column counts decoded video frames)."""
    video = first_video(run_dir)
    if video is None:
        return None
    return probe(video).fps


def state_row(run_dir: Path, state: str) -> tuple[dict, Path]:
    """The row a run's own record gives (summary.json, error.json or running.json) and that file."""
    if state == "complete":
        path = run_dir / "summary.json"
        return read_json_object(path, SUMMARY_FIELDS), path
    if state == "failed":
        path = run_dir / "error.json"
        error = read_json_object(path)
        return {"status": "failed", "error": str(error.get("error") or ""), "config_hash": error.get("config_hash")}, path
    path = run_dir / MARKER
    marker = read_json_object(path)
    note = f"{state}: started {marker.get('started')} by pid {marker.get('pid')} on {marker.get('host')}, no result"
    return {"status": state, "error": note, "config_hash": marker.get("config_hash")}, path


def one_line(err: Exception, path: Path) -> str:
    """An error's first line, naming `path`."""
    message = (str(err).splitlines() or [type(err).__name__])[0]
    return message if str(path) in message else f"cannot read {path}: {message}"


def read_optional(path: Path, warnings: list[str]) -> dict:
    """The JSON object in `path`; {} if there is none, or if it cannot be read (said in `warnings`)."""
    try:
        return read_json_object(path) if path.exists() else {}
    except UnreadableFile as err:
        warnings.append(str(err))
        return {}


def read_run(run_dir: Path, study: Path) -> dict:
    """One row: summary.json's fields (or the state of a run without one) plus timing sections and the
    frame rate of the first video."""
    state = run_state(run_dir)
    try:
        row, record = state_row(run_dir, state)
        stamp = record.stat().st_mtime
    except UnreadableFile as err:
        row, stamp = {"status": "unreadable", "error": str(err), "config_hash": None}, run_dir.stat().st_mtime
    warnings = []
    if row["status"] == "complete":
        video = first_video(run_dir)
        try:
            fps = video_fps(run_dir)
        except (OSError, ValueError) as err:  # a truncated or unreadable video: the row stays, without fps
            warnings.append(one_line(err, video))
            fps = None
        if fps is not None:
            # decoded video frames per second of generation: latent frames/s x video frames per latent frame
            row["fps"] = row["latent_frames_per_s"] * fps * row["seconds"] / row["num_latent_frames"]
        timing = read_optional(run_dir / "timing.json", warnings)
        row |= {f"time.{section}_s": seconds for section, seconds in timing.get("sections_s", {}).items()}
        read_optional(run_dir / "metrics.json", warnings)  # checked here; load_clips reads its per-clip rows
    else:
        config = run_dir / ".hydra" / "config.yaml"
        if config.exists():
            row["policy"] = OmegaConf.select(OmegaConf.load(config), "policy.name")
    if warnings:
        row["warning"] = "; ".join(warnings)
    overrides = run_dir / ".hydra" / "overrides.yaml"
    if overrides.exists():
        row["overrides"] = ",".join(OmegaConf.load(overrides))
    row["run_dir"] = run_dir.relative_to(study).as_posix()
    row["finished_at"] = pd.Timestamp(stamp, unit="s")
    return row


def format_value(value: object) -> str:
    """A setting as written in a label: 2.0 -> "2" (pandas makes ints float next to missing values)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def varied_settings(runs: pd.DataFrame) -> list[str]:
    """The configuration columns (policy fields, seed) that take more than one value among `runs`."""
    return [
        c for c in runs.columns
        if (c.startswith(SETTINGS_PREFIX) or c in SETTINGS_EXTRA) and c not in SETTINGS_IGNORED
        and runs[c].dropna().astype(str).nunique() > 1
    ]


def add_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """`label`: the method's name plus the settings that vary among that method's runs."""
    labels = pd.Series(index=frame.index, dtype=object)
    for policy, rows in frame.groupby("policy"):
        varied = varied_settings(rows)
        for index, row in rows.iterrows():
            name = METHODS.get(policy, str(policy))
            detail = ", ".join(
                f"{c.removeprefix(SETTINGS_PREFIX)}={format_value(row[c])}" for c in varied if pd.notna(row[c])
            )
            labels[index] = f"{name} ({detail})" if detail else name
    return frame.assign(label=labels.fillna(frame["run_dir"]))  # a run that failed before naming its policy


def load_study(study: Path | str) -> pd.DataFrame:
    """Every run under `study`, one row per configuration; raises StudyError on unusable input."""
    study = Path(study)
    if not study.is_dir():
        raise StudyError(f"study folder {study} does not exist")
    runs = find_runs(study)
    if not runs:
        raise StudyError(f"no runs under {study}: expected summary.json or error.json written by `python -m bench.run`")
    frame = pd.DataFrame([read_run(run, study) for run in runs])
    preference = frame.assign(complete=frame["status"].eq("complete")).sort_values(["complete", "finished_at"])
    frame = frame.loc[preference.index]
    identity = frame["config_hash"].fillna(frame["run_dir"])
    order = [c for c in ("seconds", "policy", "policy.sink", "policy.history", "policy.tail", "run_dir") if c in frame]
    frame = frame[~identity.duplicated(keep="last")].sort_values(order).reset_index(drop=True)
    if not frame["status"].eq("complete").any():
        counts = ", ".join(f"{n} {status}" for status, n in frame["status"].value_counts().items())
        first = frame["error"].iloc[0].splitlines()[0] if frame["error"].iloc[0] else "no message"
        raise StudyError(f"no complete runs under {study}: {counts} (first error: {first})")
    return add_labels(frame)


def _per_run(frame: pd.DataFrame, study: Path, name: str, read) -> pd.DataFrame:
    """Rows from one file of every complete run, tagged with the run's dir, policy and label."""
    parts = []
    for run in frame[frame["status"] == "complete"].itertuples():
        path = study / run.run_dir / name
        try:
            content = read_json_object(path) if path.exists() else None
        except UnreadableFile:  # already the run's `warning`
            continue
        if content is not None:
            parts.append(read(content).assign(run_dir=run.run_dir, policy=run.policy, label=run.label))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def load_clips(frame: pd.DataFrame, study: Path) -> pd.DataFrame:
    """Per-clip scores of every complete run that was evaluated."""
    return _per_run(frame, study, "metrics.json", clip_scores)


def load_chunks(frame: pd.DataFrame, study: Path) -> pd.DataFrame:
    """timing.json's per-chunk rows (seconds per section, `attended` frames) of every complete run."""
    return _per_run(frame, study, "timing.json", lambda timing: pd.DataFrame(timing.get("per_chunk", [])))


def load_attention(study: Path) -> pd.DataFrame:
    """Every attention microbenchmark (`python -m bench.perf.attention`'s attention.json) under the study."""
    parts = []
    for path in sorted(study.rglob("attention.json")):
        try:
            data = read_json_object(path)
        except UnreadableFile as err:
            raise StudyError(str(err)) from None
        rows = pd.DataFrame({k: data[k] for k in ("frames", "kernel_ms", "self_attn_ms") if k in data})
        source = path.parent.relative_to(study).as_posix()
        parts.append(rows.assign(device=data.get("device", "unknown device"), source=source))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
