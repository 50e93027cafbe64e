"""The vocabulary tables and plots share: VBench dimensions, method names, backbone labels."""

from __future__ import annotations

import pandas as pd

from bench.evaluation import DIMENSIONS as VBENCH_DIMENSIONS
from bench.evaluation.scores import AVERAGE6_DIMENSIONS

# Table 1's six dimensions in the paper's column order; its "Average" is their plain mean.
DIMENSIONS = AVERAGE6_DIMENSIONS
TITLES = {name: name.replace("_", " ").title() for name in VBENCH_DIMENSIONS} | {
    "average": "Average",
    "fps": "FPS",
    "latent_frames_per_s": "Latent frames / s",
}
# Memory policies by name; the model is shown beside them (Source column), as the same policy runs on
# every backend (dense on Self-Forcing's checkpoint is the paper's "Self Forcing").
METHODS = {
    "dense": "Dense window",
    "relaxed": "Relax Forcing",
    "attention_sink": "Attention sink",
    "sink": "Sink only",
    "tail": "Tail only",
    "longlive": "LongLive window",
    "rolling_forcing": "Rolling Forcing memory",
}
SIZES = ("sink", "history", "tail")


def backbone_label(backbone: object, exact: object) -> str:
    """What produced a score: only the exact VBench kernel is called VBench."""
    if backbone is None or pd.isna(backbone):
        return "backbone not recorded"
    return f"{backbone} (VBench)" if exact is True or exact == 1 else f"{backbone} (not VBench)"


def backbone_labels(runs: pd.DataFrame, metric: str) -> list[str]:
    """The labels of what produced `metric` in the runs that have a score for it."""
    scored = runs[runs[metric].notna()]
    unknown = pd.Series(None, index=scored.index)
    pairs = zip(scored.get(f"{metric}.backbone", unknown), scored.get(f"{metric}.exact", unknown))
    return sorted({backbone_label(backbone, exact) for backbone, exact in pairs})
