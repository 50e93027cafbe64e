"""Wan2.1's VAE (diffusers' `AutoencoderKLWan`) and a streaming decoder.

The Wan VAE decoder is causal in time: diffusers decodes one latent frame at a time, carrying a
cache of the last frames' features through every causal convolution. `VAEStream` keeps that cache
across calls, so a video can be decoded chunk by chunk as it is generated (bounded device memory,
frames handed over as uint8 at once) and the frames equal one whole-video `vae.decode`.
Latents are in the DiT's normalised space: `z * latents_std + latents_mean` before decoding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan
from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

from memory_policies import ConfigError

from .backend import to_uint8
from .checkpoints import load_folder, load_strict, read_checkpoint
from .execution import cast_for_inference

ORIGINAL_FILE = "Wan2.1_VAE.pth (from huggingface.co/Wan-AI/Wan2.1-T2V-1.3B)"


def load_original_vae(path: Path, field: str) -> AutoencoderKLWan:
    """Wan's own VAE state dict, converted by diffusers; the width is read off the weights."""
    state = read_checkpoint(path, field, ORIGINAL_FILE)
    if not isinstance(state, dict):
        raise ConfigError(f"{field}: {path} holds a {type(state).__name__}, not a state dict; expected {ORIGINAL_FILE}")
    base_dim = state["encoder.conv1.weight"].shape[0] if "encoder.conv1.weight" in state else 96
    z_dim = state["conv2.weight"].shape[0] if "conv2.weight" in state else 16
    converted = convert_wan_vae_to_diffusers(state)
    return load_strict(lambda: AutoencoderKLWan(base_dim=base_dim, z_dim=z_dim), converted, field, path, ORIGINAL_FILE)


def load_vae(path: Path, original: bool, device: torch.device, dtype: torch.dtype) -> AutoencoderKLWan:
    field = "model.backend.base"
    vae = (
        load_original_vae(path, field) if original
        else load_folder(AutoencoderKLWan.from_pretrained, path, field, "Wan VAE", torch_dtype=dtype)
    )
    return cast_for_inference(vae, device, dtype)


class VAEStream:
    """Decode consecutive latent chunks of one batch of videos; `push` returns each chunk's frames."""

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = vae
        shape = (1, vae.config.z_dim, 1, 1, 1)
        self.mean = torch.tensor(vae.config.latents_mean, dtype=vae.dtype, device=vae.device).view(shape)
        self.std = torch.tensor(vae.config.latents_std, dtype=vae.dtype, device=vae.device).view(shape)
        self.first = True
        vae.clear_cache()

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> np.ndarray:
        """latents (B, C, f, h, w) -> uint8 (B, frames, H, W, 3): 1 + 4(f-1) frames first, then 4f."""
        vae = self.vae
        x = vae.post_quant_conv(latents.to(vae.dtype) * self.std + self.mean)
        frames = []
        for i in range(x.shape[2]):
            vae._conv_idx = [0]  # diffusers' per-frame decode loop, with its cache kept between calls
            frames.append(
                vae.decoder(x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=self.first)
            )
            self.first = False
        return to_uint8(torch.cat(frames, dim=2))
