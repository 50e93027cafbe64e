"""From the `eval` config to the dimension objects that score clips: the exact VBench backbone where
`eval.weights_dir` holds its weights, a named offline substitute otherwise, or a reason why the
dimension is missing."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from memory_policies import ConfigError

from .backbones import WEIGHT_FILES, weight_path
from .consistency import Consistency
from .flickering import TemporalFlickering
from .frame_quality import AestheticQuality, ImagingQuality
from .motion import DynamicDegree, MotionSmoothness

DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "temporal_flickering",
    "motion_smoothness",
    "dynamic_degree",
    "aesthetic_quality",
    "imaging_quality",
)
EXACT_MODES = ("auto", "always", "never")
FLOW_CHOICES = ("dis", "farneback")
INTERPOLATION_CHOICES = ("auto", "rife", "flow_warp")
IMAGING_CHOICES = ("brisque",)
# Upstream's --sb/--bg_clip2clip_feat_extractor choices; dinov2 and dreamsim have no in-process network here.
FAST_CHOICES = {"subject_consistency": ("dino", "dinov2", "dreamsim"), "background_consistency": ("clip", "dreamsim")}
FUSION_MODES = ("auto", "off")


def choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> str:
    value = cfg.get(key)
    if value not in allowed:
        raise ConfigError(f"eval.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def requested_dimensions(cfg: DictConfig) -> list[str]:
    dims = list(cfg.get("dimensions") or [])
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown or not dims:
        raise ConfigError(f"eval.dimensions: unknown {unknown or 'empty list'}; allowed: {', '.join(DIMENSIONS)}")
    return dims


@dataclass
class Setup:
    """What will score each requested dimension."""

    dimensions: dict[str, object] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # dimension -> why there is no score
    fusion: dict[str, str] = field(default_factory=dict)  # consistency dimension -> fusion state


class _Builder:
    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.mode = choice(cfg, "exact", EXACT_MODES)
        self.device = str(cfg.get("device", "cpu"))
        weights_dir = cfg.get("weights_dir")
        self.weights_dir = Path(weights_dir).expanduser() if weights_dir else None
        if self.weights_dir is not None and not self.weights_dir.is_dir():
            raise FileNotFoundError(f"eval.weights_dir: {self.weights_dir} is not a directory (VBench's weight layout)")
        if self.mode == "always" and self.weights_dir is None:
            raise ConfigError("eval.exact=always needs eval.weights_dir (a folder in VBench's weight layout)")
        self._cache: dict[str, object] = {}

    def exact_path(self, key: str, dimension: str) -> Path | None:
        """The weights of `key` if the exact kernel is to be used; raises when exact is forced and absent."""
        if self.mode == "never":
            return None
        path = weight_path(self.weights_dir, key)
        if path is None and self.mode == "always":
            raise FileNotFoundError(
                f"eval.weights_dir: {self.weights_dir / WEIGHT_FILES[key]} not found "
                f"(eval.exact=always needs it for {dimension}; or set eval.exact=auto)"
            )
        return path

    def cached(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @staticmethod
    def load(make, *paths: Path):
        """Build an exact backbone from its weights; a file that is corrupt or holds another network
        gets one line naming it instead of torch's traceback."""
        try:
            return make()
        except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError) as err:
            unreadable = isinstance(err, (pickle.UnpicklingError, EOFError))  # torch's own text misleads here
            text = " ".join(line.strip() for line in str(err).strip().splitlines()[:2])[:200]
            why = "not a readable PyTorch file" if unreadable else f"{type(err).__name__}: {text}"
            files = " or ".join(str(path) for path in paths)
            raise ConfigError(f"eval.weights_dir: {files} is not a usable checkpoint ({why})") from err

    def dino(self, path: Path):
        from bench.evaluation.backbones.dino import DinoFeatures

        return self.cached("dino", lambda: self.load(lambda: DinoFeatures(path, self.device), path))

    def clip_b32(self, path: Path):
        from bench.evaluation.backbones.clip import ClipFeatures

        return self.cached("clip_b32", lambda: self.load(lambda: ClipFeatures(path, "vitb32", self.device), path))

    def build(self, name: str, setup: Setup) -> None:
        getattr(self, f"build_{name}")(setup)

    def build_temporal_flickering(self, setup: Setup) -> None:
        setup.dimensions["temporal_flickering"] = TemporalFlickering()

    def build_dynamic_degree(self, setup: Setup) -> None:
        kind = choice(self.cfg, "flow", FLOW_CHOICES)
        path = self.exact_path("raft", "dynamic_degree")
        if path is not None:
            from bench.evaluation.backbones.raft import RAFTFlow

            flow = self.load(lambda: RAFTFlow(path, self.device), path)
        else:
            from bench.evaluation.backbones.flow import DISFlow, FarnebackFlow

            flow = {"dis": DISFlow, "farneback": FarnebackFlow}[kind]()
        setup.dimensions["dynamic_degree"] = DynamicDegree(flow)

    def build_motion_smoothness(self, setup: Setup) -> None:
        kind = choice(self.cfg, "interpolation", INTERPOLATION_CHOICES)
        path = self.exact_path("amt_s", "motion_smoothness")
        if path is not None:
            from bench.evaluation.backbones.amt import AMTInterpolator

            interpolator = self.load(lambda: AMTInterpolator(path, self.device), path)
        else:
            from bench.evaluation.backbones.interpolation import (
                FlowWarpInterpolator,
                RIFEInterpolator,
                rife_available,
            )

            if kind == "auto":
                kind = "rife" if rife_available() else "flow_warp"
            interpolator = RIFEInterpolator(self.device) if kind == "rife" else FlowWarpInterpolator()
        setup.dimensions["motion_smoothness"] = MotionSmoothness(interpolator)

    def build_imaging_quality(self, setup: Setup) -> None:
        choice(self.cfg, "imaging", IMAGING_CHOICES)
        path = self.exact_path("musiq_spaq", "imaging_quality")
        if path is not None:
            from bench.evaluation.backbones.musiq import MUSIQQuality

            model = self.load(lambda: MUSIQQuality(path, self.device), path)
        else:
            from bench.evaluation.backbones.brisque import BRISQUEQuality

            model = BRISQUEQuality()
        setup.dimensions["imaging_quality"] = ImagingQuality(model)

    def build_aesthetic_quality(self, setup: Setup) -> None:
        name = "aesthetic_quality"
        clip_path, head_path = self.exact_path("clip_vitl14", name), self.exact_path("laion_head", name)
        if clip_path is None or head_path is None:
            setup.missing[name] = self.no_substitute("CLIP ViT-L/14 and the LAION head", ("clip_vitl14", "laion_head"))
            return
        from bench.evaluation.backbones.clip import LaionAesthetic

        setup.dimensions[name] = AestheticQuality(
            self.load(lambda: LaionAesthetic(clip_path, head_path, self.device), clip_path, head_path)
        )

    def build_subject_consistency(self, setup: Setup) -> None:
        self.build_consistency("subject_consistency", setup)

    def build_background_consistency(self, setup: Setup) -> None:
        self.build_consistency("background_consistency", setup)

    def build_consistency(self, name: str, setup: Setup) -> None:
        key, network = (
            ("dino_vitb16", "DINO ViT-B/16") if name == "subject_consistency" else ("clip_vitb32", "CLIP ViT-B/32")
        )
        path = self.exact_path(key, name)
        if path is None:
            setup.missing[name] = self.no_substitute(network, (key,))
            return
        slow = self.dino(path) if key == "dino_vitb16" else self.clip_b32(path)
        fast, setup.fusion[name] = self.fast_branch(name)
        setup.dimensions[name] = Consistency(name, slow, fast)

    def fast_branch(self, name: str):
        fusion = self.cfg.get("fusion") or {}
        mode = fusion.get("enabled", "auto")
        if mode not in FUSION_MODES:
            raise ConfigError(f"eval.fusion.enabled must be one of {', '.join(FUSION_MODES)}, got {mode!r}")
        kind = fusion.get(name)
        if kind not in FAST_CHOICES[name]:
            raise ConfigError(f"eval.fusion.{name} must be one of {', '.join(FAST_CHOICES[name])}, got {kind!r}")
        if mode == "off":
            return None, "off (eval.fusion.enabled=off): slow branch only"
        key = {"dino": "dino_vitb16", "clip": "clip_vitb32"}.get(kind)
        path = weight_path(self.weights_dir, key) if key and self.mode != "never" else None
        if path is None:
            why = "no in-process network for it" if key is None else f"{WEIGHT_FILES[key]} not in eval.weights_dir"
            return None, f"off (fast backbone {kind}: {why}): slow branch only"
        fast = self.dino(path) if kind == "dino" else self.clip_b32(path)
        return fast, f"on (fast backbone {fast.info.name}, weights 0.5/0.5, VBench-Long mapping table)"

    def no_substitute(self, network: str, keys: tuple[str, ...]) -> str:
        where = ", ".join(WEIGHT_FILES[k] for k in keys)
        if self.mode == "never":
            return f"eval.exact=never and no offline substitute can honestly stand in for {network}"
        return (
            f"no score: {network} weights ({where}) not in eval.weights_dir, and no offline substitute "
            f"can honestly stand in for {network} (no PyPI wheel ships such weights)"
        )


def build_setup(cfg: DictConfig) -> Setup:
    """Check the `eval` config and build every requested dimension."""
    builder, setup = _Builder(cfg), Setup()
    for name in requested_dimensions(cfg):
        builder.build(name, setup)
    return setup
