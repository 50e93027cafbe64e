"""Backbones the VBench rules run on: exact VBench networks loaded from `eval.weights_dir` (VBench's
own weight layout, never downloaded) and named offline substitutes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# VBench's layout under $VBENCH_CACHE_DIR, as vbench 0.1.5 reads it in local mode.
WEIGHT_FILES = {
    "raft": "raft_model/models/raft-things.pth",
    "amt_s": "amt_model/amt-s.pth",
    "dino_vitb16": "dino_model/dino_vitbase16_pretrain.pth",
    "clip_vitb32": "clip_model/ViT-B-32.pt",
    "clip_vitl14": "clip_model/ViT-L-14.pt",
    "laion_head": "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
    "musiq_spaq": "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",
}


@dataclass(frozen=True)
class BackboneInfo:
    """What produced a score: `name` is shown beside every number, `exact` only for VBench's own network."""

    name: str
    exact: bool


def weight_path(weights_dir: str | Path | None, key: str) -> Path | None:
    """The file for `key` under `weights_dir` if it is there, else None."""
    if weights_dir is None:
        return None
    path = Path(weights_dir).expanduser() / WEIGHT_FILES[key]
    return path if path.is_file() else None
