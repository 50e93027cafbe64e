"""The vocabulary tables and plots share: dimensions, method names, backbone labels, colours."""

from __future__ import annotations

import pandas as pd
from matplotlib import colormaps

from bench.evaluation import DIMENSIONS as EVALUATED
from bench.evaluation.dimensions import REGISTRY
from bench.evaluation.scores import AVERAGE6_DIMENSIONS

# Table 1's six dimensions in the paper's column order; its "Average" is their plain mean.
DIMENSIONS = AVERAGE6_DIMENSIONS
# relaxbench's own metrics (never VBench), shown beside the paper's columns.
OWN_METRICS = tuple(name for name in EVALUATED if not REGISTRY[name].vbench)
# Motion next to the saturating binary dynamic degree: the context curves' panels.
MOTION = ("dynamic_degree", "motion_magnitude")
TITLES = {name: name.replace("_", " ").title() for name in EVALUATED} | {
    "motion_magnitude": "Motion Magnitude (relaxbench)",
    "average": "Average",
    "fps": "FPS",
    "latent_frames_per_s": "Latent frames / s",
    "similarity_to_first": "Similarity to first clip (relaxbench)",
}
# Scores are printed x100 (the paper's unit); motion magnitude x100 is % of the frame diagonal.
UNITS = {"motion_magnitude": "% of diagonal", "similarity_to_first": "cosine"}
# The per-clip series of relaxbench's collapse metric, drawn beside the per-clip dimensions; the
# summary column that names what computed it.
SIMILARITY = "similarity_to_first"
SIMILARITY_BACKBONE = "long_horizon.backbone"
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
    "deep_forcing": "Deep Forcing",
    "memrope": "MemRoPE",
    "rolling_sink": "Rolling Sink",
    "infinity_rope": "Infinity-RoPE",
}
# Table 1's methods (conf/method/: checkpoint + sampler + memory), named as the paper's rows.
PAPER_METHODS = {
    "self_forcing": "Self Forcing",
    "causvid": "CausVid",
    "rolling_forcing": "Rolling Forcing",
    "longlive": "LongLive",
    "deep_forcing": "Deep Forcing",
    "relax_forcing": "Relax Forcing",
}


def scale(metric: str) -> float:
    """Scores and motion magnitude are shown x100; rates as they are."""
    return 100.0 if metric in EVALUATED or metric == "average" else 1.0


def backbone_label(backbone: object, exact: object) -> str:
    """What produced a score: only the exact VBench kernel is called VBench."""
    if backbone is None or pd.isna(backbone):
        return "backbone not recorded"
    name = str(backbone).removesuffix(" (VBench)")  # exact backbones already say so in their own name
    return f"{name} (VBench)" if exact is True or exact == 1 else f"{name} (not VBench)"


def backbone_labels(runs: pd.DataFrame, metric: str) -> list[str]:
    """The labels of what produced `metric` in the runs that have a score for it."""
    scored = runs[runs[metric].notna()]
    unknown = pd.Series(None, index=scored.index)
    pairs = zip(scored.get(f"{metric}.backbone", unknown), scored.get(f"{metric}.exact", unknown))
    return sorted({backbone_label(backbone, exact) for backbone, exact in pairs})


def colours(names: list[str]) -> dict[str, tuple]:
    """One colour per name, none repeated: tab10 up to 10 names, tab20 up to 20, then evenly spaced
    on a continuous map."""
    count = len(names)
    if count <= 10:
        palette = [colormaps["tab10"](i) for i in range(count)]
    elif count <= 20:
        palette = [colormaps["tab20"](i) for i in range(count)]
    else:
        palette = [colormaps["turbo"](0.05 + 0.9 * i / (count - 1)) for i in range(count)]
    return dict(zip(names, palette))
