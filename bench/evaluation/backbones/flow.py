"""Optical flow without learned weights (OpenCV): the offline substitutes for RAFT."""

from __future__ import annotations

import cv2
import numpy as np

from . import BackboneInfo


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class DISFlow:
    """OpenCV's Dense Inverse Search flow (medium preset) on grey frames."""

    info = BackboneInfo("opencv-dis (substitute for RAFT)", exact=False)

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        """(H, W, 2) displacement in pixels from uint8 RGB `frame1` to `frame2`."""
        return self._dis.calc(_gray(frame1), _gray(frame2), None)


class FarnebackFlow:
    """OpenCV's Farnebäck polynomial-expansion flow on grey frames."""

    info = BackboneInfo("opencv-farneback (substitute for RAFT)", exact=False)

    def flow(self, frame1: np.ndarray, frame2: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(
            _gray(frame1),
            _gray(frame2),
            None,
            pyr_scale=0.5,
            levels=5,
            winsize=15,
            iterations=3,
            poly_n=5,
            poly_sigma=1.2,
            flags=0,
        )
