"""Where and how a real backend runs: device, dtype, SDPA kernels, and the casting of weights.

`check_device` / `resolve_device` / `resolve_dtype` and `DTYPES` are the one home of device and dtype
choices for every part of the harness (model backends, the attention benchmark, config checks).

`auto` means bf16 on CUDA and float32 on the CPU fallback (bf16 matmuls on CPU are slow and the CPU
path exists for tests). On CUDA with a half dtype the DiT runs its attention under
`torch.nn.attention.sdpa_kernel` with flash attention first in priority, so a long-video run never
silently falls back to the math kernel while the flash kernel could run.
"""

from __future__ import annotations

import re

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.generation.wan_attention import AttentionState, PlannedWan
from memory_policies import ConfigError
from memory_policies.plan import check_choice, shown

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def check_device(field: str, value: object, auto: bool = True) -> str:
    """`cpu`, `cuda`, `cuda:N` (and `auto` where allowed) naming a device present here; one line otherwise."""
    allowed = ("auto, " if auto else "") + "cpu, cuda or cuda:N"
    pattern = r"cpu|cuda(:\d+)?" + ("|auto" if auto else "")
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ConfigError(f"{field} must be one of {allowed}; got {shown(value)}")
    if value.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        use = "use auto or cpu" if auto else "use cpu"
        if not count:
            raise ConfigError(f"{field}={value} but CUDA is not available here; {use}")
        if int(value.partition(":")[2] or 0) >= count:
            raise ConfigError(f"{field}={value} but this machine has {count} CUDA device(s); {use}")
    return value


def resolve_device(device: str, field: str = "model.backend.device") -> torch.device:
    """`auto` = CUDA when available, else CPU; an explicit CUDA device must exist. `field` names it in errors."""
    if check_device(field, device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device, field: str = "model.backend.dtype") -> torch.dtype:
    """`auto` = bfloat16 on CUDA (the releases' inference dtype), float32 on CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[check_choice(field, dtype, ("auto", *DTYPES))]


def sdpa_backends(device: torch.device, dtype: torch.dtype) -> list[SDPBackend]:
    """SDPA kernels in priority order; empty = PyTorch's own choice (CPU, or float32 on CUDA)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return []
    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def cast_for_inference(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Move to `device` and cast to `dtype`, keeping the model's `_keep_in_fp32_modules` in float32.

    Diffusers keeps Wan's time embedder, modulation tables and norms in float32 when it loads a
    half-precision model; the original Wan code computes those under a float32 autocast too.
    """
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, param in model.named_parameters():  # one copy per tensor: never the whole model in float32 on the GPU
        target = torch.float32 if keep.intersection(name.split(".")) else dtype
        param.data = param.data.to(device=device, dtype=target)
    return model.to(device).eval().requires_grad_(False)


class KernelPinnedWan(PlannedWan):
    """`PlannedWan` whose forwards run under `sdpa_kernel(backends, set_priority=True)`."""

    def __init__(self, transformer, backends: list[SDPBackend]) -> None:
        super().__init__(transformer)
        self.backends = list(backends)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, state: AttentionState):
        if not self.backends:
            return super().forward(latents, timestep, text, state)
        with sdpa_kernel(self.backends, set_priority=True):
            return super().forward(latents, timestep, text, state)
