"""Procedural training videos for the toy model: coloured sprites bouncing over a few backgrounds.

Each clip comes with a prompt generated from its attributes, e.g. "a red square moving fast" or
"a blue circle and a yellow square moving slow on a striped background". One frame is one latent
frame (0.25 s). Everything is deterministic per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURS = {
    "red": (1.0, -0.8, -0.8),
    "green": (-0.8, 0.9, -0.8),
    "blue": (-0.8, -0.6, 1.0),
    "yellow": (1.0, 1.0, -0.8),
    "white": (1.0, 1.0, 1.0),
}
SHAPES = ("square", "circle")
SPEEDS = {"slow": (0.5, 1.0), "fast": (2.0, 3.0)}  # pixels per frame at 32x32
BACKGROUNDS = ("black", "gray", "striped")
FUNCTION_WORDS = ("a", "and", "moving", "on", "background")
VOCABULARY = (*FUNCTION_WORDS, *COLOURS, *SHAPES, *SPEEDS, *BACKGROUNDS)


@dataclass(frozen=True)
class Sprite:
    colour: str
    shape: str
    radius: float
    x: float
    y: float
    vx: float
    vy: float


@dataclass(frozen=True)
class Scene:
    sprites: tuple[Sprite, ...]
    speed: str
    background: str
    stripe_phase: float
    stripe_velocity: float

    @property
    def prompt(self) -> str:
        objects = " and ".join(f"a {s.colour} {s.shape}" for s in self.sprites)
        text = f"{objects} moving {self.speed}"
        return text if self.background == "black" else f"{text} on a {self.background} background"


def sample_scene(rng: np.random.Generator, size: int = 32) -> Scene:
    """Draw the attributes of one clip: 1 object (70 %) or 2, a speed class, a background."""
    count = 1 if rng.random() < 0.7 else 2
    speed = str(rng.choice(list(SPEEDS)))
    background = str(rng.choice(BACKGROUNDS, p=(0.4, 0.35, 0.25)))
    sprites = []
    for _ in range(count):
        radius = float(rng.uniform(4.0, 6.0))
        angle = rng.uniform(0, 2 * np.pi)
        magnitude = rng.uniform(*SPEEDS[speed])
        sprites.append(
            Sprite(
                colour=str(rng.choice(list(COLOURS))),
                shape=str(rng.choice(SHAPES)),
                radius=radius,
                x=float(rng.uniform(radius, size - radius)),
                y=float(rng.uniform(radius, size - radius)),
                vx=float(magnitude * np.cos(angle)),
                vy=float(magnitude * np.sin(angle)),
            )
        )
    return Scene(tuple(sprites), speed, background, float(rng.uniform(0, 8)), float(rng.choice([-0.5, 0.5])))


def _bounce(p: float, v: float, low: float, high: float, steps: int) -> float:
    """Position after `steps` frames of straight motion reflected at the walls [low, high]."""
    span = high - low
    q = (p - low + v * steps) % (2 * span)
    return low + (q if q <= span else 2 * span - q)


def render(scene: Scene, frames: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, 3, H, W) in [-1, 1] and the object mask (T, 1, H, W) in {0, 1}."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    video = np.empty((frames, 3, size, size), np.float32)
    mask = np.zeros((frames, 1, size, size), np.float32)
    for i in range(frames):
        if scene.background == "black":
            canvas = np.full((3, size, size), -1.0, np.float32)
        elif scene.background == "gray":
            canvas = np.full((3, size, size), -0.2, np.float32)
        else:
            phase = scene.stripe_phase + scene.stripe_velocity * i
            stripes = ((xx + yy + phase) // 4) % 2
            canvas = np.broadcast_to((-0.7 + 0.4 * stripes)[None], (3, size, size)).copy()
        for s in scene.sprites:
            x = _bounce(s.x, s.vx, s.radius, size - s.radius, i)
            y = _bounce(s.y, s.vy, s.radius, size - s.radius, i)
            if s.shape == "circle":
                inside = (xx - x) ** 2 + (yy - y) ** 2 <= s.radius**2
            else:
                inside = (np.abs(xx - x) <= s.radius * 0.85) & (np.abs(yy - y) <= s.radius * 0.85)
            canvas[:, inside] = np.asarray(COLOURS[s.colour], np.float32)[:, None]
            mask[i, 0, inside] = 1.0
        video[i] = canvas
    return video, mask


def make_clip(seed: int, frames: int, size: int = 32) -> tuple[np.ndarray, np.ndarray, str]:
    """One deterministic clip: (video, object mask, prompt)."""
    scene = sample_scene(np.random.default_rng(seed), size)
    video, mask = render(scene, frames, size)
    return video, mask, scene.prompt
