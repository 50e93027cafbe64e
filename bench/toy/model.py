"""The embedded default model: a tiny Wan-architecture DiT in pixel space with a word-level text encoder.

One latent frame is one 32x32 RGB frame standing for 0.25 s of video (4 fps), so 30 s = 120 latent
frames as on Wan2.1. The DiT is diffusers' `WanTransformer3DModel`, driven through the same
`PlannedWan` attention path as the 1.3B model.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

from bench.generation.wan_attention import PlannedWan
from bench.models.backend import Backend, to_uint8
from bench.models.state_dicts import check_keys
from memory_policies import ConfigError
from memory_policies.plan import shown

from .data import VOCABULARY

WEIGHTS = Path(__file__).resolve().parent / "weights" / "toy.safetensors"
SIZE = 32
FPS = 4.0
MAX_WORDS = 16
DIT_CONFIG = dict(
    patch_size=(1, 4, 4),
    num_attention_heads=4,
    attention_head_dim=32,
    in_channels=3,
    out_channels=3,
    text_dim=32,
    freq_dim=64,
    ffn_dim=512,
    num_layers=4,
    cross_attn_norm=True,
    rope_max_seq_len=1024,
)


class ToyTextEncoder(torch.nn.Module):
    """Word embeddings plus learned word-position embeddings over the toy's closed vocabulary."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.vocab = {w: i + 1 for i, w in enumerate(VOCABULARY)}  # 0 = padding
        self.words = torch.nn.Embedding(len(self.vocab) + 1, dim, padding_idx=0)
        self.where = torch.nn.Embedding(MAX_WORDS, dim)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        ids = torch.zeros(len(prompts), MAX_WORDS, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            words = re.findall(r"[^\W\d_]+", prompt.lower())  # letters of any script: `carré` is one word
            unknown = sorted({w for w in words if w not in self.vocab})
            if not words or unknown:
                what = f"{len(unknown)} unknown word(s), first {shown(unknown[0])}" if unknown else "no words"
                raise ConfigError(
                    f"prompts[{row}] {shown(prompt)} has {what}; the toy model knows: {' '.join(VOCABULARY)}"
                )
            if len(words) > MAX_WORDS:
                raise ConfigError(f"prompts[{row}] has {len(words)} words; the toy model reads at most {MAX_WORDS}")
            ids[row, : len(words)] = torch.tensor([self.vocab[w] for w in words])
        return ids

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        present = (ids > 0).unsqueeze(-1).float()
        return (self.words(ids) + self.where.weight[None]) * present


def build_toy() -> tuple[WanTransformer3DModel, ToyTextEncoder]:
    return WanTransformer3DModel(**DIT_CONFIG), ToyTextEncoder(DIT_CONFIG["text_dim"])


def toy_modules(dit: WanTransformer3DModel, text: ToyTextEncoder) -> torch.nn.ModuleDict:
    """Both toy modules under one state dict, keys `dit.*` and `text.*`: the layout of the weights file."""
    return torch.nn.ModuleDict({"dit": dit, "text": text})


def decode_pixels(latents: torch.Tensor, scale: int = 4) -> np.ndarray:
    """Pixel-space "decoder": [-1, 1] latents (B, 3, F, H, W) -> uint8 (B, F, H*scale, W*scale, 3)."""
    return to_uint8(latents).repeat(scale, axis=2).repeat(scale, axis=3)


def load_toy(weights: str | Path | None = None, video_scale: int = 4, device: str = "cpu") -> Backend:
    path = Path(weights) if weights else WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"model.backend.weights: toy checkpoint {path} not found; it ships with relaxbench "
            "(bench/toy/weights/toy.safetensors) or is made by `python -m bench.toy.train`"
        )
    try:
        state = load_file(str(path))
    except Exception as err:  # safetensors raises several types for corrupt files
        raise ConfigError(f"model.backend.weights: {path} is not a readable safetensors file ({err})") from None
    dit, text = build_toy()
    both = toy_modules(dit, text)
    check_keys(both.state_dict(), state, "model.backend.weights", path, "the toy model's weights (dit.* and text.*)")
    both.load_state_dict(state, strict=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return toy_backend(dit, text, video_scale, device, {"weights": str(path), "sha256": digest})


def toy_backend(
    dit: WanTransformer3DModel, text: ToyTextEncoder, video_scale: int = 4, device: str = "cpu", provenance: dict | None = None
) -> Backend:
    """Wrap toy modules (trained or not) as a `Backend`."""
    dit.eval().to(device)
    text.eval().to(device)

    @torch.no_grad()
    def encode(prompts: list[str]) -> torch.Tensor:
        return text(text.tokenize(prompts).to(device))

    return Backend(
        name="toy",
        dit=PlannedWan(dit),
        encode_text=encode,
        decoder=lambda: partial(decode_pixels, scale=video_scale),  # stateless: frame by frame
        latent_shape=(3, SIZE, SIZE),
        fps=FPS,
        device=torch.device(device),
        provenance=provenance or {"weights": "random init"},
    )


def save_toy(path: Path, dit: WanTransformer3DModel, text: ToyTextEncoder, metadata: dict) -> None:
    state = {k: v.contiguous() for k, v in toy_modules(dit, text).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={k: json.dumps(v) for k, v in metadata.items()})
