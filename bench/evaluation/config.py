"""The `eval` config group's schema: every field typed and range-checked, unknown keys refused, each
error one line naming `eval.<field>`, the value given and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bench.models.execution import check_device
from memory_policies import ConfigError
from memory_policies.plan import Check, check_bool, check_choice, check_fields, shown

from .dimensions import DIMENSIONS, REGISTRY, VBENCH_DIMENSIONS

EXACT_MODES = ("auto", "always", "never")
FLOW_CHOICES = ("dis", "farneback")
INTERPOLATION_CHOICES = ("auto", "rife", "flow_warp")
IMAGING_CHOICES = ("brisque",)
FUSION_MODES = ("auto", "off")


def dimensions(field: str, value: Any, names: tuple[str, ...] = DIMENSIONS) -> list[str]:
    allowed = f"a non-empty list of distinct names from {', '.join(names)}"
    if not isinstance(value, list) or not value or len(set(map(repr, value))) != len(value):
        raise ConfigError(f"{field} must be {allowed}, got {shown(value)}")
    for name in value:
        if name in DIMENSIONS and name not in names:
            raise ConfigError(f"{field}: {name} is relaxbench's own metric, scored by eval=offline only; got it with eval=vbench")
        check_choice(field, name, names)
    return value


def _path(field: str, value: Any, kind: str, exists: Callable[[Path], bool], hint: str = "") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{field} must be null or the path of an existing {kind}, got {shown(value)}")
    path = Path(value).expanduser()
    if not exists(path):
        raise FileNotFoundError(f"{field}: {path} is not an existing {kind}{hint}")
    return str(path)


def folder(field: str, value: Any) -> str | None:
    return _path(field, value, "directory", Path.is_dir)


def interpreter(field: str, value: Any) -> str | None:
    return _path(field, value, "file", Path.is_file, " (build vbench's environment with scripts/vbench_env.sh)")


def choice(*allowed: str) -> Check:
    return partial(check_choice, allowed=allowed)


FUSION: dict[str, Check] = {"enabled": choice(*FUSION_MODES)} | {
    name: choice(*spec.fast_choices) for name, spec in REGISTRY.items() if spec.fast_choices
}


def fusion(field: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{field} must be a mapping of {', '.join(FUSION)}, got {shown(value)}")
    return checked(field, value, FUSION)


SHARED: dict[str, Check] = {
    "name": choice("offline", "vbench", "none"),
    "dimensions": dimensions,
    "reencode": check_bool,
    "device": partial(check_device, auto=False),
}
FIELDS: dict[str, dict[str, Check]] = {
    "offline": SHARED
    | {
        "weights_dir": folder,
        "exact": choice(*EXACT_MODES),
        "flow": choice(*FLOW_CHOICES),
        "interpolation": choice(*INTERPOLATION_CHOICES),
        "imaging": choice(*IMAGING_CHOICES),
        "fusion": fusion,
    },
    "vbench": SHARED
    | {
        "dimensions": partial(dimensions, names=VBENCH_DIMENSIONS),
        "weights_dir": folder,
        "python": interpreter,
        "work_dir": folder,
    },
    "none": {"name": SHARED["name"]},
}


def checked(prefix: str, values: dict, fields: dict[str, Check]) -> dict:
    """Every field of `fields` present and valid, no other key; returns the checked values."""
    check_fields(prefix, values, fields)
    missing = [key for key in fields if key not in values]
    if missing:
        raise ConfigError(f"{prefix}.{missing[0]} is missing (conf/eval/ sets every field)")
    return {key: check(f"{prefix}.{key}", values[key]) for key, check in fields.items()}


def validate(cfg: DictConfig) -> dict:
    """The `eval` node as plain checked values (paths expanded)."""
    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = SHARED["name"]("eval.name", values.get("name"))
    return checked("eval", values, FIELDS[name])
