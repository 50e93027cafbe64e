"""Optical-flow motion of a clip's sampled frame pairs, the quantity both dynamic_degree (thresholded)
and motion_magnitude (averaged) read: one flow backbone (RAFT from weights, or the named substitute)
and one flow computation per clip, whichever of the two dimensions asks first."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .builder import Builder

TOP_FRACTION = 0.05  # a pair is scored by the mean of its largest 5 % flow magnitudes


def sampling_interval(fps: int) -> int:
    """Every interval-th frame is kept, about 8 per second (Python's round, as upstream)."""
    return max(1, round(fps / 8))


def top_motion(flow: np.ndarray) -> float:
    """Mean of the int(h * w * 0.05) largest flow magnitudes of one (H, W, 2) flow field."""
    magnitude = np.hypot(flow[..., 0], flow[..., 1]).ravel()
    k = int(magnitude.size * TOP_FRACTION)
    if k == 0:  # fewer than 20 pixels: upstream's mean of nothing
        return float("nan")
    return float(np.partition(magnitude, magnitude.size - k)[-k:].mean())


class PairMotions:
    """`motions(frames, fps)`: the top-5 % flow magnitude (pixels) of each consecutive pair of the
    clip's sampled frames. The last clip's answer is kept, so a second dimension scoring the same clip
    object costs no second flow computation."""

    def __init__(self, flow) -> None:
        self.flow = flow
        self.info = flow.info
        self._last: tuple[np.ndarray, int, list[float]] | None = None

    def __call__(self, frames: np.ndarray, fps: int) -> list[float]:
        if self._last is None or self._last[0] is not frames or self._last[1] != fps:
            sampled = frames[:: sampling_interval(fps)]
            motions = [top_motion(self.flow.flow(a, b)) for a, b in pairwise(sampled)]
            self._last = (frames, fps, motions)
        return self._last[2]


def pair_motions(builder: Builder, dimension: str) -> PairMotions:
    """The one PairMotions of this evaluation: RAFT when eval.weights_dir holds VBench's raft-things.pth
    (and eval.exact allows it), else the eval.flow substitute."""

    def make() -> PairMotions:
        path = builder.exact_path("raft", dimension)
        if path is not None:
            from .backbones.raft import RAFTFlow

            return PairMotions(builder.load(lambda: RAFTFlow(path, builder.device), path))
        from .backbones.flow import DISFlow, FarnebackFlow

        return PairMotions({"dis": DISFlow, "farneback": FarnebackFlow}[builder.settings["flow"]]())

    return builder.shared("pair_motions", make)
