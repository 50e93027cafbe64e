"""VBench's Quality score (normalised, weighted dimensions) and Relax Forcing's Table-1 "Average"."""

from __future__ import annotations

import numpy as np

from .dimensions import REGISTRY, VBENCH_DIMENSIONS

# Relax Forcing, Table 1: the plain mean of six raw dimensions (no temporal_flickering), in the
# paper's column order.
AVERAGE6_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "imaging_quality",
    "motion_smoothness",
    "dynamic_degree",
)


def mean_or_none(values) -> float | None:
    """The mean of the values that are not None; None when there are none (never 0)."""
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def normalized(name: str, value: float) -> float:
    low, high = REGISTRY[name].normalization
    return (value - low) / (high - low)


def quality_score(scores: dict[str, float | None]) -> float | None:
    """Σ weight · (x − Min)/(Max − Min) over VBench's quality dimensions / Σ weights (6.5 for the seven),
    with each dimension's (Min, Max) and weight from its registry entry (VBench's scripts/constant.py),
    as a fraction (papers print x100); None unless all of them are present."""
    if any(scores.get(name) is None for name in VBENCH_DIMENSIONS):
        return None
    weights = {name: REGISTRY[name].quality_weight for name in VBENCH_DIMENSIONS}
    return sum(weight * normalized(name, scores[name]) for name, weight in weights.items()) / sum(weights.values())


def average6(scores: dict[str, float | None]) -> float | None:
    """Relax Forcing's Table-1 "Average" of six raw dimensions; None unless all six are present."""
    if any(scores.get(name) is None for name in AVERAGE6_DIMENSIONS):
        return None
    return sum(scores[name] for name in AVERAGE6_DIMENSIONS) / len(AVERAGE6_DIMENSIONS)
