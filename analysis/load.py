"""Reading a study: every run under a folder into one pandas frame, plus its per-chunk and per-clip rows.

A run is a directory holding summary.json (complete), error.json (failed) or running.json (running,
or interrupted when no live process holds its lock); it may sit at any depth (Hydra sweep
subdirectories, several sweeps copied together). Each configuration counts once: runs with the same
config_hash are one row, the complete one preferred, then the newest.

A configuration repeated over seeds (or any run sharing its label and length) is one *point*: its
videos are pooled, and the point's number is their mean with an interval (analysis.spread).

A damaged file does not stop the report: a run whose summary.json or error.json cannot be read is a
row with status "unreadable", and an unreadable timing.json, metrics.json or first video is the
run's `warning`; each names the file in one line. Only a study with no usable complete run is a
StudyError.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from bench.evaluation.clips import CLIP_SECONDS
from bench.evaluation.long_horizon import DRIFT
from bench.evaluation.long_horizon import SCALARS as HORIZON_SCALARS
from bench.evaluation.scores import AVERAGE6_DIMENSIONS
from bench.runs.outputs import PER_CHUNK_FILE, UnreadableFile, clip_scores, read_json_object, read_per_chunk
from bench.runs.state import MARKER, find_runs, run_state
from bench.runs.videos import probe

from .names import EVALUATED, METHODS, PAPER_METHODS, SIMILARITY

# Columns that define a configuration in a study; those that vary name the runs. The seed is not among
# them: runs that differ only in seed are more videos of one point.
SETTINGS_PREFIX = "policy."
SETTINGS_EXTRA = ("model", "sampler")
SETTINGS_IGNORED = ("policy.name", "policy.chunk")
# Config-group choices a run's .hydra/hydra.yaml records that say what it computes beyond its policy.
CHOICES = ("method", "sampler")
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
        try:
            chunks = read_per_chunk(run_dir)
        except UnreadableFile as err:
            warnings.append(str(err))
            chunks = pd.DataFrame()
        # the steady state: warm-up chunks (relaxed attends densely at first) do not set the x axis
        attended = chunks["attended"].dropna() if "attended" in chunks else []
        row["attended_per_chunk"] = float(np.median(attended)) if len(attended) else row.get("attended_frames")
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
    hydra = run_dir / ".hydra" / "hydra.yaml"
    if hydra.exists():
        choices = OmegaConf.select(OmegaConf.load(hydra), "hydra.runtime.choices") or {}
        row |= {group: choices[group] for group in CHOICES if choices.get(group) is not None}
    row["run_dir"] = run_dir.relative_to(study).as_posix()
    row["finished_at"] = pd.Timestamp(stamp, unit="s")
    return row


def format_value(value: object) -> str:
    """A setting as written in a label: 2.0 -> "2" (pandas makes ints float next to missing values)."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def varied_settings(runs: pd.DataFrame) -> list[str]:
    """The configuration columns (policy fields, model, sampler) that take more than one value among `runs`."""
    return [
        c for c in runs.columns
        if (c.startswith(SETTINGS_PREFIX) or c in SETTINGS_EXTRA) and c not in SETTINGS_IGNORED
        and runs[c].dropna().astype(str).nunique() > 1
    ]


def method_name(row: pd.Series) -> str:
    """Table 1's method (conf/method/) as the paper names it, else the memory policy's name."""
    method = row.get("method")
    if isinstance(method, str):
        return PAPER_METHODS.get(method, method)
    return METHODS.get(row["policy"], str(row["policy"]))


def add_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """`group`: the method (a colour in every plot); `label`: the method plus the settings that vary
    among its runs (the seed excepted); `point`: the label, with the length when the study has several."""
    named = frame[frame["policy"].notna()]
    groups = named.apply(method_name, axis=1) if len(named) else pd.Series(dtype=object)
    labels = pd.Series(index=frame.index, dtype=object)
    for _, rows in named.groupby(groups):
        varied = varied_settings(rows)
        for index, row in rows.iterrows():
            detail = ", ".join(
                f"{c.removeprefix(SETTINGS_PREFIX)}={format_value(row[c])}" for c in varied if pd.notna(row[c])
            )
            labels[index] = f"{groups[index]} ({detail})" if detail else groups[index]
    labels = labels.fillna(frame["run_dir"])  # a run that failed before naming its policy
    points = labels
    if frame.loc[frame["status"] == "complete", "seconds"].nunique() > 1:
        points = labels + frame["seconds"].map(lambda s: f" · {s:g} s" if pd.notna(s) else "")
    return frame.assign(group=groups.reindex(frame.index).fillna(labels), label=labels, point=points)


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
    sizes = [c for c in frame if c.startswith("policy.") and pd.api.types.is_numeric_dtype(frame[c])]
    order = [c for c in ("seconds", "policy") if c in frame] + sizes + ["run_dir"]  # sizes in numeric order
    frame = frame[~identity.duplicated(keep="last")].sort_values(order).reset_index(drop=True)
    if not frame["status"].eq("complete").any():
        counts = ", ".join(f"{n} {status}" for status, n in frame["status"].value_counts().items())
        first = frame["error"].iloc[0].splitlines()[0] if frame["error"].iloc[0] else "no message"
        raise StudyError(f"no complete runs under {study}: {counts} (first error: {first})")
    return add_labels(frame)


def _per_run(frame: pd.DataFrame, study: Path, name: str, read) -> pd.DataFrame:
    """Rows from one file of every complete run (`read` of its JSON object, or of the run folder for
    `PER_CHUNK_FILE`), tagged with the run's dir, policy and label."""
    parts = []
    for run in frame[frame["status"] == "complete"].itertuples():
        path = study / run.run_dir / name
        try:
            if name == PER_CHUNK_FILE:
                content = read_per_chunk(path.parent)
            else:
                content = read_json_object(path) if path.exists() else None
        except UnreadableFile:  # already the run's `warning`
            continue
        if content is not None:
            parts.append(read(content).assign(
                run_dir=run.run_dir, policy=run.policy, label=run.label, group=run.group, point=run.point
            ))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def clip_series(metrics: dict) -> pd.DataFrame:
    """metrics.json's per-clip scores plus relaxbench's similarity to the first clip (`long_horizon`)
    as rows (dimension, video, clip, seconds, score); `seconds` is the clip's centre in the video, from
    the clip bounds and frame rate metrics.json records (2 s clips back to back when it does not)."""
    rows = clip_scores(metrics).to_dict("records")
    for video, entry in ((metrics.get("long_horizon") or {}).get("per_video") or {}).items():
        rows += [
            {"dimension": SIMILARITY, "video": video, "clip": clip, "score": float(score)}
            for clip, score in enumerate(entry.get("series", {}).get(SIMILARITY, []))
            if score is not None
        ]
    recorded = (metrics.get("clip_settings") or {}).get("videos") or {}

    def centre(video: str, clip: int) -> float:
        info = recorded.get(video)
        if info is None or clip >= len(info["clips"]):
            return (clip + 0.5) * CLIP_SECONDS
        start, stop = info["clips"][clip]
        return (start + stop) / 2 / info["fps"]

    frame = pd.DataFrame(rows, columns=["dimension", "video", "clip", "score"])
    return frame.assign(seconds=[centre(v, c) for v, c in zip(frame["video"], frame["clip"])])


def load_clips(frame: pd.DataFrame, study: Path) -> pd.DataFrame:
    """Per-clip scores and similarities, with each clip's time, of every complete run that was evaluated."""
    return _per_run(frame, study, "metrics.json", clip_series)


def horizon_values(metrics: dict) -> pd.DataFrame:
    """metrics.json's per-video long-horizon metrics as rows (metric, video, score): `delta_drift.<dim>`,
    `slope_per_min.<dim>`, time_to_freeze_s, frozen_fraction, collapse_fraction; null ones left out."""
    rows = []
    for video, entry in ((metrics.get("long_horizon") or {}).get("per_video") or {}).items():
        values = {f"{key}.{name}": value for key in DRIFT for name, value in entry.get(key, {}).items()}
        values |= {key: entry.get(key) for key in HORIZON_SCALARS}
        rows += [{"metric": metric, "video": video, "score": float(v)} for metric, v in values.items() if v is not None]
    return pd.DataFrame(rows, columns=["metric", "video", "score"])


def load_horizon(frame: pd.DataFrame, study: Path) -> pd.DataFrame:
    """Per-video long-horizon metrics of every complete run evaluated in-process."""
    return _per_run(frame, study, "metrics.json", horizon_values)


def video_scores(metrics: dict) -> pd.DataFrame:
    """metrics.json's per-video scores (`dimensions.<name>.per_video`) as rows (dimension, video,
    score), plus each video's Table-1 "average" where it has all six of its dimensions."""
    rows = [
        {"dimension": dimension, "video": video, "score": float(score)}
        for dimension, entry in metrics.get("dimensions", {}).items()
        for video, score in (entry.get("per_video") or {}).items()
        if score is not None and dimension in EVALUATED
    ]
    scores = pd.DataFrame(rows, columns=["dimension", "video", "score"])
    six = scores[scores["dimension"].isin(AVERAGE6_DIMENSIONS)].pivot_table("score", "video", "dimension")
    if set(AVERAGE6_DIMENSIONS) <= set(six.columns):
        average = six[list(AVERAGE6_DIMENSIONS)].dropna().mean(axis=1)
        scores = pd.concat([scores, pd.DataFrame({"dimension": "average", "video": average.index, "score": average.values})])
    return scores.reset_index(drop=True)


def load_videos(frame: pd.DataFrame, study: Path) -> pd.DataFrame:
    """Per-video scores of every complete run that was evaluated: the units of every interval."""
    return _per_run(frame, study, "metrics.json", video_scores)


def load_chunks(frame: pd.DataFrame, study: Path) -> pd.DataFrame:
    """per_chunk.jsonl's rows (seconds per section, `attended` frames) of every complete run."""
    return _per_run(frame, study, PER_CHUNK_FILE, lambda rows: rows)


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
