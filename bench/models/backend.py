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
    # a new decode stream for one batch of videos: push consecutive latent chunks (B, C, f, h, w) of those
    # videos in order, get each chunk's uint8 frames (B, frames, H, W, 3); a causal decoder carries its state
    decoder: Callable[[], Callable[[torch.Tensor], np.ndarray]]
    latent_shape: tuple[int, int, int]  # channels, height, width of one latent frame
    fps: float  # frame rate of the decoded video
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    provenance: dict = field(default_factory=dict)  # weights files, their hashes: goes into every result

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.dit.grid(self.latent_shape[1], self.latent_shape[2])
        return h * w

    def decode(self, latents: torch.Tensor, chunk: int = 3) -> np.ndarray:
        """Whole videos (B, C, F, h, w) decoded `chunk` latent frames at a time through one decode stream."""
        push = self.decoder()
        return np.concatenate([push(latents[:, :, i : i + chunk]) for i in range(0, latents.shape[2], chunk)], axis=1)


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """A decoder's [-1, 1] video (B, 3, T, H, W) -> the `decode` contract's uint8 (B, T, H, W, 3), on the CPU."""
    pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 4, 1).cpu().numpy()
