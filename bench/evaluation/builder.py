"""From a checked `eval` config to what scores each requested dimension: the exact VBench backbone
where `eval.weights_dir` holds its weights, a named offline substitute otherwise, or a reason why the
dimension is missing. Every network is built here, once, before any video is scored."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from memory_policies import ConfigError

from .backbones import WEIGHT_FILES, weight_path
from .dimensions import REGISTRY, Missing
from .long_horizon import NetworkMeanFeature, PixelMeanFrame, build_similarity


@dataclass
class Setup:
    """What will score each requested dimension, in the order requested."""

    dimensions: dict[str, object] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # dimension -> why there is no score
    similarity: PixelMeanFrame | NetworkMeanFeature | None = None  # the long-horizon metrics' clip feature


class Builder:
    """What a dimension's `build` may ask: the exact weights file of a network (or None), the network
    itself (one instance per file), a substitute's setting, the device."""

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.mode = settings["exact"]
        self.device = settings["device"]
        self.weights_dir = Path(settings["weights_dir"]) if settings["weights_dir"] else None
        if self.mode == "always" and self.weights_dir is None:
            raise ConfigError("eval.exact=always needs eval.weights_dir (a folder in VBench's weight layout)")
        self._shared: dict[str, object] = {}

    def exact_path(self, key: str, dimension: str, required: bool = True) -> Path | None:
        """The weights of `key` if the exact kernel is to be used; with eval.exact=always a `required`
        file that is absent is an error naming it."""
        if self.mode == "never":
            return None
        path = weight_path(self.weights_dir, key)
        if path is None and required and self.mode == "always":
            raise FileNotFoundError(
                f"eval.weights_dir: {self.weights_dir / WEIGHT_FILES[key]} not found "
                f"(eval.exact=always needs it for {dimension}; or set eval.exact=auto)"
            )
        return path

    @staticmethod
    def load(make: Callable[[], object], *paths: Path) -> object:
        """Build an exact backbone from its weights; a file that is corrupt or holds another network
        (or another pickled object) gets one line naming it instead of torch's traceback."""
        try:
            return make()
        except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            unreadable = isinstance(err, (pickle.UnpicklingError, EOFError))  # torch's own text misleads here
            text = " ".join(line.strip() for line in str(err).strip().splitlines()[:2])[:200]
            why = "not a readable PyTorch file" if unreadable else f"{type(err).__name__}: {text}"
            files = " or ".join(str(path) for path in paths)
            raise ConfigError(f"eval.weights_dir: {files} is not a usable checkpoint ({why})") from err

    def shared(self, key: str, make: Callable[[], object]) -> object:
        """One instance of `key` for every dimension that asks for it (made by `make` the first time)."""
        if key not in self._shared:
            self._shared[key] = make()
        return self._shared[key]

    def network(self, key: str, path: Path) -> object:
        """The feature network of `key` (DINO or CLIP B/32), shared by every branch that uses it."""
        from .backbones.clip import ClipFeatures
        from .backbones.dino import DinoFeatures

        make = {
            "dino_vitb16": lambda: DinoFeatures(path, self.device),
            "clip_vitb32": lambda: ClipFeatures(path, "vitb32", self.device),
        }[key]
        return self.shared(key, lambda: self.load(make, path))

    def no_substitute(self, network: str, keys: tuple[str, ...]) -> Missing:
        where = ", ".join(WEIGHT_FILES[k] for k in keys)
        if self.mode == "never":
            return Missing(f"eval.exact=never and no offline substitute can honestly stand in for {network}")
        return Missing(
            f"no score: {network} weights ({where}) not in eval.weights_dir, and no offline substitute "
            f"can honestly stand in for {network} (no PyPI wheel ships such weights)"
        )


def build_setup(settings: dict) -> Setup:
    """Build every requested dimension of a checked offline config."""
    builder, setup = Builder(settings), Setup()
    for name in settings["dimensions"]:
        scorer = REGISTRY[name].build(builder)
        if isinstance(scorer, Missing):
            setup.missing[name] = scorer.reason
        else:
            setup.dimensions[name] = scorer
    setup.similarity = build_similarity(builder)
    return setup
