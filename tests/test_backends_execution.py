"""Device, dtype and SDPA-kernel choices of the real backends, checked on the CPU."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel
from torch.nn.attention import SDPBackend
from wan_standins import TINY_DIT

from bench.generation.wan_attention import AttentionState, PlannedWan
from bench.models.execution import (
    KernelPinnedWan,
    cast_for_inference,
    check_device,
    resolve_device,
    resolve_dtype,
    sdpa_backends,
)
from bench.models.wan import architecture_of
from memory_policies import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_auto_means_cuda_and_bf16_when_there_is_a_gpu_else_cpu_and_float32():
    assert resolve_dtype("auto", CUDA) == torch.bfloat16
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("float16", CPU) == torch.float16
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == CPU
    with pytest.raises(ConfigError, match="model.backend.dtype must be one of auto, bfloat16, float16, float32"):
        resolve_dtype("fp8", CPU)
    with pytest.raises(ConfigError, match="model.backend.device must be one of auto, cpu, cuda or cuda:N"):
        resolve_device("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available here"):
            resolve_device("cuda")


def test_an_explicit_cuda_device_must_exist_here(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == CUDA
    with pytest.raises(ConfigError, match=r"^model.backend.device=cuda:2 but this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="^eval.device must be one of cpu, cuda or cuda:N; got 'auto'$"):
        check_device("eval.device", "auto", auto=False)


def test_flash_attention_comes_first_on_cuda_in_half_precision_only():
    assert sdpa_backends(CUDA, torch.bfloat16)[0] == SDPBackend.FLASH_ATTENTION
    assert sdpa_backends(CUDA, torch.float16)[0] == SDPBackend.FLASH_ATTENTION
    assert sdpa_backends(CUDA, torch.float32) == []
    assert sdpa_backends(CPU, torch.bfloat16) == []


def tiny_dit() -> WanTransformer3DModel:
    torch.manual_seed(0)
    return WanTransformer3DModel(**architecture_of(TINY_DIT)).eval()


def inputs(dtype: torch.dtype):
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, 3, 8, 8, generator=g).to(dtype)
    text = torch.randn(1, 512, TINY_DIT["text_dim"], generator=g).to(dtype)
    return latents, torch.tensor([833.3]), text


def test_half_precision_keeps_diffusers_float32_modules_and_runs():
    dit = cast_for_inference(tiny_dit(), CPU, torch.bfloat16)
    dtypes = {name: p.dtype for name, p in dit.named_parameters()}
    assert dtypes["condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert dtypes["scale_shift_table"] == dtypes["blocks.0.scale_shift_table"] == torch.float32
    assert dtypes["blocks.0.norm2.weight"] == torch.float32  # the cross-attention norm
    assert dtypes["blocks.0.attn1.to_q.weight"] == dtypes["proj_out.weight"] == torch.bfloat16
    assert not any(p.requires_grad for p in dit.parameters())

    reference = tiny_dit()
    latents, timestep, text = inputs(torch.bfloat16)
    with torch.no_grad():
        out = PlannedWan(dit)(latents, timestep, text, AttentionState(positions=range(3)))
        exact = PlannedWan(reference)(latents.float(), timestep, text.float(), AttentionState(positions=range(3)))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert (out.float() - exact).abs().mean() < 0.02 * exact.abs().mean()


def test_pinned_kernels_apply_to_every_forward():
    latents, timestep, text = inputs(torch.float32)
    with torch.no_grad():
        plain = PlannedWan(tiny_dit())(latents, timestep, text, AttentionState(positions=range(3)))
        pinned = KernelPinnedWan(tiny_dit(), [SDPBackend.MATH])(latents, timestep, text, AttentionState(positions=range(3)))
        torch.testing.assert_close(pinned, plain)
        # the memory-efficient kernel has no CPU implementation: pinning it alone must fail here
        with pytest.raises(RuntimeError, match="No viable backend"):
            KernelPinnedWan(tiny_dit(), [SDPBackend.EFFICIENT_ATTENTION])(
                latents, timestep, text, AttentionState(positions=range(3))
            )
