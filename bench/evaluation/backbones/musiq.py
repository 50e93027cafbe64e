"""MUSIQ (Ke et al., ICCV 2021), the network of VBench's imaging_quality, as pyiqa re-implements it
(`pyiqa.archs.musiq_arch.MUSIQ`, the module vbench 0.1.5 imports) with pyiqa's state-dict names, so
`pyiqa_model/musiq_spaq_ckpt-358bb6af.pth` loads unchanged.

An image becomes one token sequence over three scales: the image resized (bicubic, aspect kept) so its
longer side is 224, then 384, then the original. Each scale is cut into 32x32 patches with TensorFlow's
SAME padding; the two resized scales are zero-padded (masked) to ceil(side / 32)^2 patches. Every patch
goes through a small ResNet stem (weight-standardised convolutions, GroupNorm) and a linear embedding,
gets a hashed 10x10 spatial position and a scale embedding, and a 14-block transformer reads the class
token. The SPAQ head gives one 0..100 score."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import BackboneInfo

PATCH = 32
RESIZED_SIDES = (224, 384)  # pyiqa's longer_side_lengths, in ascending order = scale ids 0 and 1
GRID = 10  # hashed spatial position grid
STEM_CHANNELS = 64  # resnet_token_dim
MASKED_LOGIT = -1e3  # pyiqa fills masked attention logits with this, not -inf


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow 'SAME' zero padding: the output has ceil(size / stride) positions, the odd pixel
    of padding goes to the bottom/right."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension first
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


@dataclass
class Tokens:
    """A batch of multi-scale patch sequences: pixels (B, N, 3, 32, 32), hashed position, scale id and
    mask (False for padding) of each of the N patches."""

    patches: torch.Tensor
    positions: torch.Tensor
    scales: torch.Tensor
    mask: torch.Tensor


def hashed_positions(rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    """Each patch's index in the GRID x GRID table: its row and column scaled to the grid by nearest
    neighbour (pyiqa resizes arange(GRID) with F.interpolate 'nearest')."""
    grid = torch.arange(GRID, dtype=torch.float32, device=device)[None, None]
    row = F.interpolate(grid, size=rows, mode="nearest")[0, 0].long()
    col = F.interpolate(grid, size=cols, mode="nearest")[0, 0].long()
    return (row[:, None] * GRID + col[None, :]).reshape(-1)


def scale_tokens(images: torch.Tensor, scale_id: int, length: int | None) -> Tokens:
    """Patches of one scale, padded (masked) or cut to `length` when given."""
    b, _, height, width = images.shape
    patches = F.unfold(same_pad(images, PATCH, PATCH), PATCH, stride=PATCH)  # (B, 3*32*32, rows*cols)
    patches = patches.transpose(1, 2).reshape(b, -1, 3, PATCH, PATCH)
    positions = hashed_positions(math.ceil(height / PATCH), math.ceil(width / PATCH), images.device)
    scales = torch.full_like(positions, scale_id)
    mask = torch.ones_like(positions, dtype=torch.bool)
    if length is not None:  # padding is all zeros, scale id included, as pyiqa's
        extra = max(length - len(positions), 0)
        patches = F.pad(patches, (0, 0, 0, 0, 0, 0, 0, extra))[:, :length]
        positions, scales, mask = (F.pad(t, (0, extra))[:length] for t in (positions, scales, mask))
    return Tokens(patches, *(t.expand(b, -1) for t in (positions, scales, mask)))


def multiscale_tokens(images: torch.Tensor) -> Tokens:
    """pyiqa's get_multiscale_patches on images in -1..1: the two resized scales, then the original."""
    height, width = images.shape[-2:]
    parts = []
    for scale_id, side in enumerate(RESIZED_SIDES):
        ratio = side / max(height, width)
        resized = F.interpolate(
            images, size=(round(height * ratio), round(width * ratio)), mode="bicubic", align_corners=False
        )
        parts.append(scale_tokens(resized, scale_id, math.ceil(side / PATCH) ** 2))
    parts.append(scale_tokens(images, len(RESIZED_SIDES), None))
    return Tokens(
        *(torch.cat([getattr(p, f) for p in parts], dim=1) for f in ("patches", "positions", "scales", "mask"))
    )


class StdConv(nn.Conv2d):
    """Convolution with weight standardisation (per output channel: zero mean, unbiased std) and SAME padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        w = w / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(same_pad(x, self.kernel_size[0], self.stride[0]), w, self.bias, self.stride)


class Bottleneck(nn.Module):
    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1, self.gn1 = StdConv(channels, channels, 1, bias=False), nn.GroupNorm(32, channels, eps=1e-4)
        self.conv2, self.gn2 = StdConv(channels, channels, 3, bias=False), nn.GroupNorm(32, channels, eps=1e-4)
        self.conv3, self.gn3 = StdConv(channels, out_channels, 1, bias=False), nn.GroupNorm(32, out_channels, eps=1e-4)
        self.conv_proj = StdConv(channels, out_channels, 1, bias=False)
        self.gn_proj = nn.GroupNorm(32, out_channels, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + shortcut)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = (
            proj(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
            for proj in (self.query, self.key, self.value)
        )
        logits = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        pair = mask[:, None, :, None] & mask[:, None, None, :]
        attn = logits.masked_fill(~pair, MASKED_LOGIT).softmax(dim=-1)
        return self.out((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class HashedPositions(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, GRID * GRID, dim))


class ScaleEmbeddings(nn.Module):
    def __init__(self, scales: int, dim: int) -> None:
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(scales, dim))


class Encoder(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, heads: int, layers: int, scales: int) -> None:
        super().__init__()
        self.posembed_input, self.scaleembed_input = HashedPositions(dim), ScaleEmbeddings(scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.transformer = nn.ModuleDict(
            {f"encoderblock_{i}": EncoderBlock(dim, mlp_dim, heads) for i in range(layers)}
        )
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, tokens: Tokens) -> torch.Tensor:
        x = x + self.posembed_input.position_emb[0, tokens.positions] + self.scaleembed_input.scale_emb[tokens.scales]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        mask = torch.cat([torch.ones_like(tokens.mask[:, :1]), tokens.mask], dim=1)
        for block in self.transformer.values():
            x = block(x, mask)
        return self.encoder_norm(x)


class MUSIQ(nn.Module):
    def __init__(self, dim: int = 384, mlp_dim: int = 1152, heads: int = 6, layers: int = 14, classes: int = 1) -> None:
        super().__init__()
        self.conv_root = StdConv(3, STEM_CHANNELS, 7, stride=2, bias=False)
        self.gn_root = nn.GroupNorm(32, STEM_CHANNELS, eps=1e-6)
        self.block1 = Bottleneck(STEM_CHANNELS, 4 * STEM_CHANNELS)
        self.embedding = nn.Linear(4 * STEM_CHANNELS * (PATCH // 4) ** 2, dim)
        self.transformer_encoder = Encoder(dim, mlp_dim, heads, layers, scales=len(RESIZED_SIDES) + 1)
        # pyiqa: a distribution over `classes` score bins (AVA) or, with one class, the score itself.
        linear = nn.Linear(dim, classes)
        self.head = nn.Sequential(linear, nn.Softmax(dim=-1)) if classes > 1 else linear

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in 0..1 -> mean opinion score (B,)."""
        tokens = multiscale_tokens((images - 0.5) * 2)
        b, n = tokens.mask.shape
        x = F.relu(self.gn_root(self.conv_root(tokens.patches.reshape(b * n, 3, PATCH, PATCH))))
        x = self.block1(F.max_pool2d(same_pad(x, 3, 2), 3, 2))
        x = self.embedding(x.permute(0, 2, 3, 1).reshape(b, n, -1))  # channels last, as TensorFlow
        scores = self.head(self.transformer_encoder(x, tokens)[:, 0])
        return (scores * torch.arange(1, scores.shape[-1] + 1, dtype=scores.dtype, device=scores.device)).sum(-1)


def load_musiq(path: Path) -> MUSIQ:
    """A MUSIQ shaped by its weights (SPAQ: width 384, 14 blocks, 6 heads, one output). The number of
    heads is not in a state dict; pyiqa fixes it at 6."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "embedding.weight" not in state:
        raise ValueError(f"{path}: not a pyiqa MUSIQ state dict (no 'embedding.weight'; keys start {list(state)[:3]})")
    fc1 = state["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"]
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer_encoder.transformer.")})
    head = state["head.weight"] if "head.weight" in state else state["head.0.weight"]
    model = MUSIQ(dim=fc1.shape[1], mlp_dim=fc1.shape[0], heads=6, layers=layers, classes=head.shape[0])
    model.load_state_dict(state)
    return model.eval()


class MUSIQQuality:
    """VBench's imaging_quality network: MUSIQ with the SPAQ checkpoint, one 0..100 score per frame."""

    info = BackboneInfo("musiq-spaq (VBench)", exact=True)

    def __init__(self, path: Path, device: str = "cpu", batch: int = 8) -> None:
        self.device, self.batch = torch.device(device), batch
        self.model = load_musiq(path).to(self.device)

    @torch.no_grad()
    def frame_scores(self, images: torch.Tensor) -> np.ndarray:
        """RGB (T, 3, H, W) in 0..1 -> float64 (T,). Frames go in batches: only float rounding differs
        from upstream's one at a time."""
        scores = [self.model(chunk.to(self.device)).cpu() for chunk in images.split(self.batch)]
        return torch.cat(scores).double().numpy()
