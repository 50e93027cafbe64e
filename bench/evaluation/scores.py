"""VBench's Quality score (normalised, weighted dimensions) and Relax Forcing's Table-1 "Average"."""

from __future__ import annotations

# scripts/constant.py of VBench: (Min, Max) of each dimension and its weight in the Quality score.
NORMALIZATION = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
}
WEIGHTS = {name: 0.5 if name == "dynamic_degree" else 1.0 for name in NORMALIZATION}
QUALITY_DIMENSIONS = tuple(NORMALIZATION)
# Relax Forcing, Table 1: the plain mean of six raw dimensions (no temporal_flickering).
AVERAGE6_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "imaging_quality",
    "motion_smoothness",
    "dynamic_degree",
)


def normalized(name: str, value: float) -> float:
    low, high = NORMALIZATION[name]
    return (value - low) / (high - low)


def quality_score(scores: dict[str, float | None]) -> float | None:
    """Σ weight · (x − Min)/(Max − Min) over the 7 quality dimensions / Σ weights (6.5), as a
    fraction (papers print ×100); None unless all seven are present."""
    if any(scores.get(name) is None for name in QUALITY_DIMENSIONS):
        return None
    total = sum(WEIGHTS[name] * normalized(name, scores[name]) for name in QUALITY_DIMENSIONS)
    return total / sum(WEIGHTS.values())


def average6(scores: dict[str, float | None]) -> float | None:
    """Relax Forcing's Table-1 "Average" of six raw dimensions; None unless all six are present."""
    if any(scores.get(name) is None for name in AVERAGE6_DIMENSIONS):
        return None
    return sum(scores[name] for name in AVERAGE6_DIMENSIONS) / len(AVERAGE6_DIMENSIONS)
