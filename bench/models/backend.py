"""What the sampler needs of a model backend; backends differ only in weights, text encoder and decoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from bench.generation.wan_attention import PlannedWan


@dataclass
class Backend:
    name: str
    dit: PlannedWan
    encode_text: Callable[[list[str]], torch.Tensor]  # prompts -> (batch, tokens, text_dim)
    decode: Callable[[torch.Tensor], np.ndarray]  # latents (B, C, F, h, w) -> uint8 (B, frames, H, W, 3)
    latent_shape: tuple[int, int, int]  # channels, height, width of one latent frame
    fps: float  # frame rate of the decoded video
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    provenance: dict = field(default_factory=dict)  # weights files, their hashes: goes into every result

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.dit.grid(self.latent_shape[1], self.latent_shape[2])
        return h * w


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """A decoder's [-1, 1] video (B, 3, T, H, W) -> the `decode` contract's uint8 (B, T, H, W, 3), on the CPU."""
    pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 4, 1).cpu().numpy()
