"""The dimensions, one plugin module each; the registry below is the one list of them: VBench's
Quality dimensions, then relaxbench's own metrics (`Dimension.vbench` False), which are never
labelled VBench. Adding a dimension: a module with its `DIMENSION` record, and one line here."""

from __future__ import annotations

from . import (
    aesthetic_quality,
    background_consistency,
    dynamic_degree,
    imaging_quality,
    motion_magnitude,
    motion_smoothness,
    subject_consistency,
    temporal_flickering,
)
from .base import Dimension, Missing

# VBench's order of the Quality dimensions, then relaxbench's own.
REGISTRY: dict[str, Dimension] = {
    module.DIMENSION.name: module.DIMENSION
    for module in (
        subject_consistency,
        background_consistency,
        temporal_flickering,
        motion_smoothness,
        dynamic_degree,
        aesthetic_quality,
        imaging_quality,
        motion_magnitude,
    )
}
DIMENSIONS = tuple(REGISTRY)
VBENCH_DIMENSIONS = tuple(name for name, spec in REGISTRY.items() if spec.vbench)

__all__ = ["DIMENSIONS", "REGISTRY", "VBENCH_DIMENSIONS", "Dimension", "Missing"]
