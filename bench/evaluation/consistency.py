"""The rule subject_consistency and background_consistency share: VBench's first-and-previous cosine
rule on each clip (the slow branch), and VBench-Long's slow-fast fusion with the clip-to-clip (fast)
branch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .backbones import WEIGHT_FILES

if TYPE_CHECKING:
    from .builder import Builder
    from .dimensions.base import Missing

# vbench2_beta_long/configs/slow_fast_params.yaml: w_inclip_{sb,bg} and w_clip2clip_{sb,bg}.
FUSION_WEIGHTS = (0.5, 0.5)


def first_previous_similarity(features: torch.Tensor) -> float | None:
    """Mean over frames i >= 1 of (max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2,
    for L2-normalised features (T, D); None for a single frame."""
    if len(features) < 2:
        return None
    previous = (features[1:] * features[:-1]).sum(-1).clamp(min=0)
    first = (features[1:] * features[:1]).sum(-1).clamp(min=0)
    return float(((previous + first) / 2).mean())


def map_fast_score(score: float, table: dict[float, float]) -> float:
    """Upstream's fuse_inclip_clip2clip lookup: linear between the two keys around `score`, the end
    values outside them."""
    keys = sorted(table)
    return float(np.interp(score, keys, [table[k] for k in keys]))


def fuse(slow: float, mapped_fast: float) -> float:
    """0.5 slow + 0.5 mapped fast; upstream keeps the slow score alone when the mapped score is 0."""
    if mapped_fast == 0.0:
        return slow
    return FUSION_WEIGHTS[0] * slow + FUSION_WEIGHTS[1] * mapped_fast


class Consistency:
    """One consistency dimension: `features` is the slow backbone, `fast` the optional fast one,
    `fusion` says whether the fast branch runs and why."""

    def __init__(self, name: str, features, mapping: dict[float, float], fast=None, fusion: str = "") -> None:
        self.name, self.features, self.mapping, self.fast, self.fusion = name, features, mapping, fast, fusion
        self.info = features.info

    def score_clip(self, frames: np.ndarray, fps: int) -> float | None:
        return first_previous_similarity(self.features.features(frames))

    def fused(self, slow_video_score: float, first_frames: np.ndarray) -> dict:
        """The fast branch on the sequence of each clip's first frame, mapped and fused with the slow
        score of the video. A video of one clip has no fast branch (upstream skips it)."""
        fast = first_previous_similarity(self.fast.features(first_frames)) if len(first_frames) > 1 else None
        mapped = map_fast_score(fast, self.mapping) if fast is not None else 0.0
        return {"slow": slow_video_score, "fast": fast, "mapped_fast": mapped, "score": fuse(slow_video_score, mapped)}


# In-process networks for VBench-Long's fast backbones (dinov2 and dreamsim have none here).
FAST_NETWORKS = {"dino": "dino_vitb16", "clip": "clip_vitb32"}


def build_consistency(
    builder: Builder, name: str, key: str, network: str, mapping: dict[float, float]
) -> Consistency | Missing:
    """The slow branch on `key`'s exact network (no substitute), the fast one as eval.fusion asks."""
    path = builder.exact_path(key, name)
    if path is None:
        return builder.no_substitute(network, (key,))
    slow = builder.network(key, path)
    kind = builder.settings["fusion"][name]
    if builder.settings["fusion"]["enabled"] == "off":
        return Consistency(name, slow, mapping, fusion="off (eval.fusion.enabled=off): slow branch only")
    fast_key = FAST_NETWORKS.get(kind)
    fast_path = builder.exact_path(fast_key, name, required=False) if fast_key else None
    if fast_path is None:
        why = "no in-process network for it" if fast_key is None else f"{WEIGHT_FILES[fast_key]} not in eval.weights_dir"
        return Consistency(name, slow, mapping, fusion=f"off (fast backbone {kind}: {why}): slow branch only")
    fast = builder.network(fast_key, fast_path)
    state = f"on (fast backbone {fast.info.name}, weights 0.5/0.5, VBench-Long mapping table)"
    return Consistency(name, slow, mapping, fast=fast, fusion=state)
