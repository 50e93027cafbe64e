"""The published AR checkpoints on Wan2.1-T2V-1.3B, and strict loading of user-given weight files.

Every file is read from a local path the user gives (never downloaded). Each failure is one line
that names the config field, the path, and the file that was expected: a missing file, a file
`torch.load` cannot read (truncated, corrupt), a dict without the expected entry, or weights whose
keys or shapes do not fit the model (the first missing / unexpected / reshaped keys are listed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

from memory_policies import ConfigError

from .state_dicts import check_keys, preview

FSDP_WRAPPER = "_fsdp_wrapped_module."


@dataclass(frozen=True)
class LoRA:
    file: str
    rank: int
    alpha: float


@dataclass(frozen=True)
class Release:
    """One published generator checkpoint: where it comes from and which dict entry holds the weights."""

    title: str
    file: str
    source: str
    entry: str
    lora: LoRA | None = None

    def expected(self) -> str:
        return f"{self.file} ({self.title}, from {self.source}; entry '{self.entry}', Wan keys under 'model.')"


# Keys are `model.` + original Wan parameter names in all four (the release's `WanDiffusionWrapper.model`).
RELEASES = {
    "self_forcing": Release(
        "Self-Forcing DMD", "self_forcing_dmd.pt", "huggingface.co/gdhe17/Self-Forcing, checkpoints/", "generator_ema"
    ),
    "causvid": Release(
        "CausVid autoregressive", "model.pt", "huggingface.co/tianweiy/CausVid, autoregressive_checkpoint/", "generator"
    ),
    "rolling_forcing": Release(
        "Rolling Forcing DMD", "rolling_forcing_dmd.pt", "huggingface.co/TencentARC/RollingForcing, checkpoints/",
        "generator_ema",
    ),
    "longlive": Release(
        "LongLive base", "longlive_base.pt", "huggingface.co/Efficient-Large-Model/LongLive, models/", "generator",
        lora=LoRA("lora.pt", rank=256, alpha=256),
    ),
}


def find_release(name: str) -> Release:
    if name not in RELEASES:
        raise ConfigError(f"model.backend.release must be one of {', '.join(RELEASES)}; got {name!r}")
    return RELEASES[name]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def require_file(path: str | Path | None, field: str, expected: str) -> Path:
    if path is None or str(path).strip() == "":
        raise ConfigError(f"{field} is not set: give the local path of {expected}")
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise FileNotFoundError(f"{field}: {resolved} not found; expected {expected}")
    return resolved


def read_checkpoint(path: Path, field: str, expected: str) -> Any:
    """`torch.load` (tensors only, memory-mapped) with a one-line error for unreadable files."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # zip, unpickling and mmap errors all mean "not this file"
        raise ConfigError(
            f"{field}: {path} is not a readable PyTorch checkpoint (truncated or corrupt? {_first_line(err)}); "
            f"expected {expected}"
        ) from None


def entry(checkpoint: Any, name: str, field: str, path: Path, expected: str) -> dict[str, torch.Tensor]:
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(name), dict):
        held = preview([str(k) for k in checkpoint]) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ConfigError(f"{field}: {path} has no '{name}' entry (it holds: {held}); expected {expected}")
    return checkpoint[name]


def original_wan_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Release keys to original Wan names: FSDP wrapper segments dropped, the `model.` prefix stripped."""
    return {key.replace(FSDP_WRAPPER, "").removeprefix("model."): value for key, value in state.items()}


def wan_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original Wan DiT names to diffusers' `WanTransformer3DModel` names (diffusers' own converter)."""
    return convert_wan_transformer_to_diffusers(dict(state))


def load_strict(build, state: dict[str, torch.Tensor], field: str, path: Path, expected: str) -> torch.nn.Module:
    """Build the model without allocating its weights, check `state` strictly, and adopt its tensors."""
    # accelerate is the `real` extra's; imported here, as RELEASES is read on a core install too
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = build()
    check_keys(model.state_dict(), state, field, path, expected)
    model.load_state_dict(state, strict=True, assign=True)
    return model


def load_folder(load, path: Path, field: str, what: str, **kwargs):
    """`from_pretrained` on a local folder only, with a one-line error."""
    try:
        return load(str(path), local_files_only=True, **kwargs)
    except Exception as err:
        raise ConfigError(f"{field}: cannot load the {what} from {path} ({_first_line(err)})") from None


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: identifies the weights in every result."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]
