"""DINO ViT-B/16 (Caron et al. 2021), the feature network of VBench's subject_consistency: the
architecture of facebookresearch/dino's vision_transformer.py (vit_base, patch 16, no head) with its
state-dict names, so `dino_vitbase16_pretrain.pth` loads unchanged. Output: the normed class token."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import BackboneInfo
from .preprocess import dino_input


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)


class DinoViT(nn.Module):
    def __init__(self, dim: int = 768, depth: int = 12, heads: int = 12, patch: int = 16, grid: int = 14) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def pos_encoding(self, npatch: int, height: int, width: int) -> torch.Tensor:
        """DINO's interpolate_pos_encoding: bicubic by scale factor with its +0.1 guard."""
        n = self.pos_embed.shape[1] - 1
        if npatch == n and height == width:
            return self.pos_embed
        side, dim = math.sqrt(n), self.pos_embed.shape[-1]
        rows = height // self.patch_embed.patch_size + 0.1
        cols = width // self.patch_embed.patch_size + 0.1
        grid = self.pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(rows / side, cols / side), mode="bicubic")
        return torch.cat([self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        tokens = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.pos_encoding(tokens.shape[1] - 1, height, width)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def load_dino(path: Path) -> DinoViT:
    """A DINO ViT shaped by its weights (ViT-B/16: width 768, 12 blocks, 12 heads of 64)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    dim, patch = state["patch_embed.proj.weight"].shape[0], state["patch_embed.proj.weight"].shape[-1]
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    model = DinoViT(dim=dim, depth=depth, heads=dim // 64, patch=patch, grid=grid)
    model.load_state_dict(state)
    return model.eval()


class DinoFeatures:
    """Per-frame DINO ViT-B/16 class tokens, L2-normalised, on VBench's dino_transform(224)."""

    info = BackboneInfo("dino-vitb16 (VBench)", exact=True)

    def __init__(self, path: Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = load_dino(path).to(self.device)

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> torch.Tensor:
        images = dino_input(frames).to(self.device)
        # One frame at a time, as upstream: batching would change nothing but float rounding.
        return torch.cat([F.normalize(self.model(image[None]), dim=-1) for image in images]).cpu()
