"""A dimension as a plugin: everything the harness needs to know about it in one record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..builder import Builder


@dataclass(frozen=True)
class Missing:
    """Why a dimension gets no score in this configuration (reported as null, never 0)."""

    reason: str


@dataclass(frozen=True)
class Dimension:
    """One dimension: VBench's (`vbench`) or relaxbench's own metric. `build` turns a config (through the Builder, which knows eval.exact,
    eval.weights_dir and the device) into the object that scores clips, `score_clip(frames, fps)`,
    with the exact VBench backbone, an offline substitute, or `Missing`."""

    name: str
    rule: str  # the VBench rule applied to each clip, in one sentence
    vbench_backbone: str  # the network VBench scores it with (eval=vbench's label)
    weights: tuple[str, ...]  # keys of backbones.WEIGHT_FILES that backbone needs
    build: Callable[[Builder], object]
    normalization: tuple[float, float] | None  # VBench's (Min, Max) for the Quality score; None outside it
    quality_weight: float = 1.0
    vbench_scale: float = 1.0  # vbench's per-clip result divided by this is the 0..1 score
    fast_choices: tuple[str, ...] = ()  # VBench-Long's fast backbones, for the slow-fast fusion
    vbench: bool = True  # False: relaxbench's own metric (eval=offline only, outside the Quality score)
