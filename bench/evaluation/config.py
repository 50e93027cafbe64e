"""The `eval` config group's schema: every field typed and range-checked, unknown keys refused, each
error one line naming `eval.<field>`, the value given and what is allowed."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from memory_policies import ConfigError

from .dimensions import DIMENSIONS, REGISTRY

EXACT_MODES = ("auto", "always", "never")
FLOW_CHOICES = ("dis", "farneback")
INTERPOLATION_CHOICES = ("auto", "rife", "flow_warp")
IMAGING_CHOICES = ("brisque",)
FUSION_MODES = ("auto", "off")
GIVEN_CHARS = 60  # a value is shown as its repr, cut to this length


def bad(field: str, value: object, allowed: str) -> ConfigError:
    given = repr(value)
    if len(given) > GIVEN_CHARS:
        given = given[: GIVEN_CHARS - 3] + "..."
    return ConfigError(f"eval.{field} must be {allowed}, got {given}")


def choice(*allowed: str) -> Callable[[str, Any], Any]:
    def check(field: str, value: Any) -> Any:
        if not isinstance(value, str) or value not in allowed:
            raise bad(field, value, f"one of {', '.join(allowed)}")
        return value

    return check


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise bad(field, value, "true or false")
    return value


def dimensions(field: str, value: Any) -> list[str]:
    allowed = f"a non-empty list of distinct names from {', '.join(DIMENSIONS)}"
    if not isinstance(value, list) or not value:
        raise bad(field, value, allowed)
    for name in value:
        if not isinstance(name, str) or name not in REGISTRY:
            raise bad(field, name, f"names from {', '.join(DIMENSIONS)}")
    if len(set(value)) != len(value):
        raise bad(field, value, allowed)
    return value


def _path(field: str, value: Any, kind: str, exists: Callable[[Path], bool], hint: str = "") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise bad(field, value, f"null or the path of an existing {kind}")
    path = Path(value).expanduser()
    if not exists(path):
        raise FileNotFoundError(f"eval.{field}: {path} is not an existing {kind}{hint}")
    return str(path)


def folder(field: str, value: Any) -> str | None:
    return _path(field, value, "directory", Path.is_dir)


def interpreter(field: str, value: Any) -> str | None:
    return _path(field, value, "file", Path.is_file, " (build vbench's environment with scripts/vbench_env.sh)")


def device(field: str, value: Any) -> str:
    allowed = "cpu, cuda or cuda:N"
    if not isinstance(value, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise bad(field, value, allowed)
    if value.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(value.partition(":")[2] or 0)
        if index >= count:
            raise bad(field, value, f"cpu here ({count} CUDA device(s) available)")
    return value


def fusion(field: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise bad(field, value, "a mapping of enabled, subject_consistency, background_consistency")
    fields = {"enabled": choice(*FUSION_MODES)} | {
        name: choice(*spec.fast_choices) for name, spec in REGISTRY.items() if spec.fast_choices
    }
    return check_fields(value, fields, prefix=f"{field}.")


SHARED = {"name": choice("offline", "vbench", "none"), "dimensions": dimensions, "reencode": boolean, "device": device}
FIELDS: dict[str, dict[str, Callable[[str, Any], Any]]] = {
    "offline": SHARED
    | {
        "weights_dir": folder,
        "exact": choice(*EXACT_MODES),
        "flow": choice(*FLOW_CHOICES),
        "interpolation": choice(*INTERPOLATION_CHOICES),
        "imaging": choice(*IMAGING_CHOICES),
        "fusion": fusion,
    },
    "vbench": SHARED | {"weights_dir": folder, "python": interpreter, "work_dir": folder},
    "none": {"name": SHARED["name"]},
}


def check_fields(values: dict, fields: dict, prefix: str = "") -> dict:
    """Each field of `fields` present and valid in `values`, no other key; returns the checked values."""
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise bad(f"{prefix}{unknown[0]}", values[unknown[0]], f"absent (unknown key; known: {', '.join(fields)})")
    missing = [key for key in fields if key not in values]
    if missing:
        raise ConfigError(f"eval.{prefix}{missing[0]} is missing (conf/eval/ sets every field)")
    return {key: check(f"{prefix}{key}", values[key]) for key, check in fields.items()}


def validate(cfg: DictConfig) -> dict:
    """The `eval` node as plain checked values (paths expanded)."""
    values = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = SHARED["name"]("name", values.get("name"))
    return check_fields(values, FIELDS[name])
