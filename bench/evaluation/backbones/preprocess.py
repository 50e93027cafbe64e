"""The image transforms VBench applies before its networks, on float frames as upstream (vbench's
load_video returns a float tensor, so torchvision's resize neither rounds nor clamps)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H, W) in 0..255."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


def resize_short_side(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """torchvision Resize(size) with antialias=False: the short side becomes `size`, the long side
    int(size * long / short)."""
    height, width = images.shape[-2:]
    if height <= width:
        out = (size, int(size * width / height))
    else:
        out = (int(size * height / width), size)
    if out == (height, width):
        return images
    return F.interpolate(images, size=out, mode=mode, align_corners=False, antialias=False)


def limit_longer_side(frames: np.ndarray, side: int = 512) -> torch.Tensor:
    """imaging_quality's 'longer' mode: uint8 (T, H, W, 3) -> float (T, 3, H, W) in 0..1, resized
    (bilinear, no antialias, sizes truncated) so the longer side is `side` when it exceeds it."""
    images = to_tensor(frames)
    height, width = images.shape[-2:]
    if max(height, width) > side:
        scale = side / max(height, width)
        size = (int(scale * height), int(scale * width))
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=False)
    return images / 255.0


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def normalize(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    mean_t, std_t = (torch.tensor(v, device=images.device).view(1, 3, 1, 1) for v in (mean, std))
    return (images - mean_t) / std_t


def dino_input(frames: np.ndarray) -> torch.Tensor:
    """vbench.utils.dino_transform(224): bilinear short side 224, no crop, ImageNet normalisation."""
    return normalize(resize_short_side(to_tensor(frames), 224, "bilinear") / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def clip_input(frames: np.ndarray, size: int = 224) -> torch.Tensor:
    """vbench.utils.clip_transform(224): bicubic short side, centre crop, CLIP normalisation."""
    images = center_crop(resize_short_side(to_tensor(frames), size, "bicubic"), size)
    return normalize(images / 255.0, CLIP_MEAN, CLIP_STD)
