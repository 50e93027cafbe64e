"""OpenAI CLIP image encoders (ViT-B/32 for background_consistency, ViT-L/14 for aesthetic_quality)
and the LAION aesthetic head: the image tower of openai/CLIP's model.py rebuilt with its state-dict
names, read from OpenAI's TorchScript archives (`ViT-B-32.pt`, `ViT-L-14.pt`) the way clip.load
does on CPU (jit=False: weights taken from the archive, run in float32)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import BackboneInfo
from .preprocess import clip_input


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*(ResidualAttentionBlock(width, heads) for _ in range(layers)))


class VisionTransformer(nn.Module):
    def __init__(self, resolution: int, patch: int, width: int, layers: int, output_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads=width // 64)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer.resblocks(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


def load_clip_visual(path: Path) -> VisionTransformer:
    """The image tower of an OpenAI CLIP checkpoint (TorchScript archive or plain state dict),
    its shape read from the weights as clip.model.build_model does."""
    try:
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    except RuntimeError:
        state = torch.load(path, map_location="cpu", weights_only=True)
    visual = {k.removeprefix("visual."): v.float() for k, v in state.items() if k.startswith("visual.")}
    width, _, patch, _ = visual["conv1.weight"].shape
    layers = sum(k.endswith(".attn.in_proj_weight") for k in visual)
    grid = round((visual["positional_embedding"].shape[0] - 1) ** 0.5)
    model = VisionTransformer(patch * grid, patch, width, layers, visual["proj"].shape[1])
    model.load_state_dict(visual)
    return model.eval()


class ClipFeatures:
    """Per-frame CLIP image embeddings, L2-normalised, on VBench's clip_transform(224)."""

    def __init__(self, path: Path, label: str, device: str = "cpu", batch: int = 32) -> None:
        self.info = BackboneInfo(f"clip-{label} (VBench)", exact=True)
        self.device, self.batch = torch.device(device), batch
        self.model = load_clip_visual(path).to(self.device)

    @torch.no_grad()
    def features(self, frames: np.ndarray) -> torch.Tensor:
        out = []
        for start in range(0, len(frames), self.batch):
            images = clip_input(frames[start : start + self.batch]).to(self.device)
            out.append(F.normalize(self.model(images).float(), dim=-1).cpu())
        return torch.cat(out)


class LaionAesthetic:
    """CLIP ViT-L/14 embeddings through LAION's linear aesthetic head (768 -> 1), 0..10 per frame."""

    info = BackboneInfo("clip-vitl14 + laion-aesthetic head (VBench)", exact=True)

    def __init__(self, clip_path: Path, head_path: Path, device: str = "cpu") -> None:
        self.clip = ClipFeatures(clip_path, "vitl14", device)
        self.head = nn.Linear(768, 1)
        self.head.load_state_dict(torch.load(head_path, map_location="cpu", weights_only=True))
        self.head.eval()  # runs on the CPU features ClipFeatures returns

    @torch.no_grad()
    def frame_scores(self, frames: np.ndarray) -> np.ndarray:
        return self.head(self.clip.features(frames)).squeeze(-1).numpy()
