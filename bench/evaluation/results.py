"""metrics.json: per dimension its score, backbone, exactness and per-clip scores, aggregated by the
VBench-Long rule (mean over clips within a video, then mean over videos), plus the summary row."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.runs.outputs import atomic_write_json, provenance

from .backbones import BackboneInfo
from .dimensions import DIMENSIONS, VBENCH_DIMENSIONS
from .long_horizon import score_lines as long_horizon_lines
from .long_horizon import summary_fields as long_horizon_fields
from .scores import AVERAGE6_DIMENSIONS, average6, mean_or_none, quality_score

ClipScores = dict[str, dict[int, float | None]]  # video name -> clip index -> score


def video_scores(clips: ClipScores) -> dict[str, float | None]:
    return {video: mean_or_none(scores.values()) for video, scores in clips.items()}


def dimension_entry(info: BackboneInfo, clips: ClipScores, fused: dict[str, dict] | None = None, **extra) -> dict:
    """One dimension's record: per-clip scores (for drift plots), per-video means and their mean.
    `fused` (the slow-fast consistency details per video) replaces the per-video scores by its own."""
    per_video = video_scores(clips)
    for video, details in (fused or {}).items():
        per_video[video] = details["score"]
    score = mean_or_none(per_video.values())
    entry = {
        "score": score,
        "backbone": info.name,
        "exact": info.exact,
        "per_video": per_video,
        "per_clip": {video: {str(i): s for i, s in sorted(scores.items())} for video, scores in clips.items()},
    }
    if fused:
        entry["fused"] = fused
    if score is None:
        entry["reason"] = (
            "no clip could be scored (each clip needs at least 2 frames, 2 sampled ones for dynamic_degree, "
            "3 for motion_smoothness)"
        )
    return entry | {k: v for k, v in extra.items() if v is not None}


def missing_entry(reason: str) -> dict:
    """A dimension nothing could score: no number, no backbone, neither exact nor substitute."""
    return {"score": None, "backbone": None, "exact": None, "reason": reason}


def finish(
    dimensions: dict[str, dict], clip_settings: dict, evaluator: str, config: dict, out_path: Path,
    long_horizon: dict | None = None,
) -> dict:
    """Add the summary scores (and the long-horizon metrics, in-process only) and provenance, write
    metrics.json atomically, return the dict."""
    raw = {name: entry["score"] for name, entry in dimensions.items()}
    exact = {name: entry["exact"] for name, entry in dimensions.items()}
    metrics = {
        "status": "complete",
        "evaluator": evaluator,
        "clip_settings": clip_settings,
        "dimensions": dimensions,
        "quality_score": quality_score(raw),
        "quality_score.exact": all(exact.get(n) is True for n in VBENCH_DIMENSIONS),
        "average6": average6(raw),
        "average6.exact": all(exact.get(n) is True for n in AVERAGE6_DIMENSIONS),
        **({"long_horizon": long_horizon} if long_horizon is not None else {}),
        "config": config,
        "provenance": provenance(torch.device(config["device"])),
    }
    atomic_write_json(Path(out_path), metrics)
    return metrics


def summary_fields(metrics: dict) -> dict:
    """The flat columns a run's summary.json carries: each dimension's score (None when missing,
    never 0), its backbone and exactness, the Quality score, the Table-1 Average and the scalar
    long-horizon metrics (relaxbench's own)."""
    fields: dict = {}
    dims = metrics.get("dimensions", {})
    for name in DIMENSIONS:
        entry = dims.get(name)
        fields[name] = entry["score"] if entry else None
        fields[f"{name}.backbone"] = entry["backbone"] if entry else None
        fields[f"{name}.exact"] = entry["exact"] if entry else None
    for key in ("quality_score", "quality_score.exact", "average6", "average6.exact"):
        fields[key] = metrics.get(key)
    return fields | long_horizon_fields(metrics.get("long_horizon"), DIMENSIONS)


def score_lines(metrics: dict) -> list[str]:
    """One printable line per evaluated dimension: its score and what produced it, or why it has none."""
    lines = []
    for name, entry in metrics.get("dimensions", {}).items():
        score = "missing" if entry["score"] is None else f"{entry['score']:.4f}"
        lines.append(f"  {name:24s} {score:>10s}  {entry['backbone'] or entry.get('reason') or ''}")
    return lines + long_horizon_lines(metrics.get("long_horizon"))
