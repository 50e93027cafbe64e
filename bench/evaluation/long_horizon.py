"""Long-horizon metrics, relaxbench's own (never VBench): how a video changes over its length, read from
the per-clip series the evaluation already has (clips of 2 s) plus one similarity per clip.

- drift: every per-clip dimension's series with each clip's start time, Deep Forcing's Δ_drift
  (|mean over the first 5 s − mean over the last 5 s|) and the least-squares slope per minute;
- freeze: when motion_magnitude falls below half of its first clip's value for good, and how many
  clips are below it;
- collapse toward the start (LoL): each clip's similarity to the first clip, and the fraction of late
  clips more similar to the first clip than to their own predecessor.

Formulas and sources: docs/evaluation.md, "Long-horizon metrics"."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .backbones import BackboneInfo
from .scores import mean_or_none

if TYPE_CHECKING:
    from .builder import Builder

LABEL = "relaxbench's own long-horizon metrics (not VBench)"
WINDOW_S = 5.0  # Δ_drift compares the first and the last 5 s
FREEZE_RATIO = 0.5  # a clip is frozen below half of the first clip's motion
MOTION = "motion_magnitude"
PIXEL_SIDE = 32  # the pixel substitute compares 32x32 mean frames
UNITS = {
    "clip_start_s": "s of video",
    "clip_end_s": "s of video",
    "delta_drift": "score units (as the dimension's score)",
    "slope_per_min": "score units per minute of video",
    "time_to_freeze_s": "s of video",
    "frozen_fraction": "fraction of clips",
    "similarity_to_first": "cosine similarity",
    "collapse_fraction": "fraction of late clips (second half of the video)",
}
DRIFT = ("delta_drift", "slope_per_min")  # given per per-clip dimension
SCALARS = ("time_to_freeze_s", "frozen_fraction", "collapse_fraction")


class PixelMeanFrame:
    """The labelled substitute for a feature network: a clip's mean frame, area-resized to 32x32 RGB,
    minus its own mean (so the cosine of two clips is the correlation of their pixels)."""

    info = BackboneInfo(
        f"relaxbench pixel substitute: centred {PIXEL_SIDE}x{PIXEL_SIDE} mean frame (no DINO/CLIP weights)", exact=False
    )

    def feature(self, frames: np.ndarray) -> np.ndarray:
        mean = frames.astype(np.float32).mean(axis=0)
        small = cv2.resize(mean, (PIXEL_SIDE, PIXEL_SIDE), interpolation=cv2.INTER_AREA).ravel()
        return small - small.mean()


class NetworkMeanFeature:
    """A clip's mean of the per-frame L2-normalised features of a feature network (DINO or CLIP)."""

    def __init__(self, network) -> None:
        self.network = network
        self.info = BackboneInfo(f"relaxbench metric on {network.info.name.removesuffix(' (VBench)')}", exact=False)

    def feature(self, frames: np.ndarray) -> np.ndarray:
        return self.network.features(frames).float().mean(0).cpu().numpy()


def build_similarity(builder: Builder) -> PixelMeanFrame | NetworkMeanFeature:
    """DINO ViT-B/16 (else CLIP ViT-B/32) when eval.weights_dir holds it and eval.exact allows it, shared
    with the consistency dimensions; the pixel substitute otherwise."""
    for key in ("dino_vitb16", "clip_vitb32"):
        path = builder.exact_path(key, "long_horizon", required=False)
        if path is not None:
            return NetworkMeanFeature(builder.network(key, path))
    return PixelMeanFrame()


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else None


@dataclass
class SimilarityTrack:
    """Per clip of one video, fed in order: cosine similarity to the first clip and to the one before.
    Holds only the first clip's feature and the previous one."""

    backbone: PixelMeanFrame | NetworkMeanFeature
    to_first: list[float | None] = field(default_factory=list)
    to_previous: list[float | None] = field(default_factory=list)
    _first: np.ndarray | None = field(default=None, init=False, repr=False)
    _previous: np.ndarray | None = field(default=None, init=False, repr=False)

    def add(self, frames: np.ndarray) -> None:
        feature = self.backbone.feature(frames)
        if self._first is None:
            self._first = feature
        self.to_first.append(cosine(feature, self._first))
        self.to_previous.append(cosine(feature, self._previous) if self._previous is not None else None)
        self._previous = feature


def window_mean(
    scores: list[float | None], starts: np.ndarray, ends: np.ndarray, low: float, high: float
) -> float | None:
    """Mean of the clip scores over [low, high] s, each clip weighted by how long it overlaps it."""
    weights = np.clip(np.minimum(ends, high) - np.maximum(starts, low), 0, None)
    pairs = [(s, w) for s, w in zip(scores, weights) if s is not None and w > 0]
    if not pairs:
        return None
    values, weights = np.array(pairs).T
    return float(np.average(values, weights=weights))


def drift(scores: list[float | None], starts: np.ndarray, ends: np.ndarray, duration: float) -> tuple[dict, dict]:
    """(values, reasons): Δ_drift and the slope per minute of one dimension's series."""
    values, reasons = {"delta_drift": None, "slope_per_min": None}, {}
    if duration < 2 * WINDOW_S:
        reasons["delta_drift"] = f"the video is {duration:g} s; Δ_drift needs at least {2 * WINDOW_S:g} s"
    else:
        first = window_mean(scores, starts, ends, 0.0, WINDOW_S)
        last = window_mean(scores, starts, ends, duration - WINDOW_S, duration)
        if first is None or last is None:
            reasons["delta_drift"] = "no scored clip in the first or the last 5 s"
        else:
            values["delta_drift"] = abs(first - last)
    centres = (starts + ends) / 2 / 60.0
    scored = [(t, s) for t, s in zip(centres, scores) if s is not None]
    if len({t for t, _ in scored}) < 2:
        reasons["slope_per_min"] = "a slope needs at least 2 scored clips"
    else:
        values["slope_per_min"] = float(np.polyfit(*np.array(scored).T, 1)[0])
    return values, reasons


def freeze(motion: list[float | None] | None, starts: np.ndarray) -> tuple[dict, dict]:
    """Time to freeze (start of the first clip from which every clip stays below half of the first
    clip's motion; None if the last clip is not frozen) and the fraction of frozen clips."""
    values = {"time_to_freeze_s": None, "frozen_fraction": None}
    if motion is None:
        return values, dict.fromkeys(values, f"{MOTION} was not evaluated (add it to eval.dimensions)")
    if not motion or motion[0] is None or motion[0] <= 0:
        return values, dict.fromkeys(values, f"the first clip has no {MOTION} to compare against")
    threshold = FREEZE_RATIO * motion[0]
    frozen = [m is not None and m < threshold for m in motion]
    scored = [m is not None for m in motion]
    values["frozen_fraction"] = sum(frozen) / sum(scored)
    reasons = {}
    if frozen[-1]:
        first_frozen = len(frozen) - next(i for i, f in enumerate(reversed(frozen)) if not f)
        values["time_to_freeze_s"] = float(starts[first_frozen])
    else:
        reasons["time_to_freeze_s"] = "never: the last clip moves at least half as much as the first"
    return values, reasons


def collapse(track: SimilarityTrack, starts: np.ndarray, ends: np.ndarray, duration: float) -> tuple[dict, dict]:
    """Fraction of late clips (centre in the second half of the video, a predecessor other than the first
    clip) strictly more similar to the first clip than to their predecessor."""
    centres = (starts + ends) / 2
    late = [
        (first, previous)
        for i, (first, previous, centre) in enumerate(zip(track.to_first, track.to_previous, centres))
        if i >= 2 and centre >= duration / 2 and first is not None and previous is not None
    ]
    if not late:
        why = "no late clip with a predecessor other than the first (needs 3 clips or more)"
        return {"collapse_fraction": None}, {"collapse_fraction": why}
    return {"collapse_fraction": sum(first > previous for first, previous in late) / len(late)}, {}


def video_entry(series: dict[str, list[float | None]], track: SimilarityTrack, bounds: list[tuple[int, int]],
                fps: float, frames: int) -> dict:
    """One video's long-horizon record: the series in clip order with start times, and its metrics."""
    starts, ends = np.array(bounds, dtype=float).T / fps
    duration = frames / fps
    entry = {
        "duration_s": duration,
        "clip_start_s": starts.tolist(),
        "clip_end_s": ends.tolist(),
        "series": series | {"similarity_to_first": track.to_first, "similarity_to_previous": track.to_previous},
        **{key: {} for key in DRIFT},
        "reasons": {},
    }
    for name, scores in series.items():
        values, reasons = drift(scores, starts, ends, duration)
        for key, value in values.items():
            entry[key][name] = value
        entry["reasons"] |= {f"{key}.{name}": why for key, why in reasons.items()}
    for values, reasons in (freeze(series.get(MOTION), starts), collapse(track, starts, ends, duration)):
        entry |= values
        entry["reasons"] |= reasons
    return entry


def long_horizon_entry(per_video: dict[str, dict], backbone: BackboneInfo) -> dict:
    """metrics.json's `long_horizon`: per video, and overall as the mean over videos of each metric
    (time to freeze over the videos that freeze), with the reason where there is no number."""
    videos = list(per_video.values())
    overall: dict = {key: {} for key in DRIFT} | {"reasons": {}}
    for key in DRIFT:
        for name in dict.fromkeys(n for v in videos for n in v[key]):
            overall[key][name] = mean_or_none(v[key].get(name) for v in videos)
            if overall[key][name] is None:
                overall["reasons"][f"{key}.{name}"] = next(v["reasons"][f"{key}.{name}"] for v in videos)
    for key in SCALARS:
        overall[key] = mean_or_none(v[key] for v in videos)
        if overall[key] is None:
            overall["reasons"][key] = "; ".join(dict.fromkeys(v["reasons"][key] for v in videos))
    overall["frozen_videos"] = sum(v["time_to_freeze_s"] is not None for v in videos)
    return {
        "label": LABEL,
        "exact": False,
        "similarity_backbone": backbone.name,
        "units": UNITS,
        "overall": overall,
        "per_video": per_video,
    }


def summary_fields(entry: dict | None, dimensions: tuple[str, ...]) -> dict:
    """The scalar long-horizon columns of summary.json (None when missing, never 0)."""
    overall = (entry or {}).get("overall", {})
    fields = {}
    for key in DRIFT:
        for name in dimensions:
            fields[f"{key}.{name}"] = overall.get(key, {}).get(name)
    fields |= {key: overall.get(key) for key in SCALARS}
    fields["long_horizon.backbone"] = (entry or {}).get("similarity_backbone")
    return fields


def score_lines(entry: dict | None) -> list[str]:
    """The printable long-horizon scalars (mean over videos), each with its unit or why it has none."""
    if entry is None:
        return []
    overall = entry["overall"]
    lines = [f"  long-horizon ({LABEL}; similarity: {entry['similarity_backbone']})"]
    for key in SCALARS:
        value = overall[key]
        shown = f"{value:.4f}" if value is not None else "null"
        lines.append(f"  {key:24s} {shown:>10s}  {UNITS[key] if value is not None else overall['reasons'][key]}")
    return lines
