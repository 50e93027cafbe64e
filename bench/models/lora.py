"""LongLive's LoRA, merged into the diffusers DiT with peft.

LongLive wraps its causal Wan model with `peft.get_peft_model`, targeting every `nn.Linear` inside
every attention block (self- and cross-attention q/k/v/o and both FFN layers), and saves
`get_peft_model_state_dict` of it: keys `base_model.model.<original Wan name>.lora_A.weight`,
optionally under a `generator_lora` entry. Here the same adapter is built on the diffusers model
(same targets, diffusers names), the keys are renamed with diffusers' Wan converter, loaded
strictly, and merged (W + alpha/rank * B A) so that inference runs on plain linear layers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from peft import (
    LoraConfig,
    get_peft_model,
    get_peft_model_state_dict,
    set_peft_model_state_dict,
)

from .checkpoints import LoRA, original_wan_keys, wan_to_diffusers
from .state_dicts import check_keys

PEFT_PREFIX = "base_model.model."


def block_linears(transformer: torch.nn.Module) -> list[str]:
    """Every linear layer inside a transformer block: LongLive's LoRA targets."""
    return [
        name for name, module in transformer.named_modules()
        if name.startswith("blocks.") and isinstance(module, torch.nn.Linear)
    ]


def lora_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LongLive LoRA keys to the keys of the same adapter on the diffusers model (peft's prefix kept)."""
    stripped = original_wan_keys({key.removeprefix(PEFT_PREFIX): value for key, value in state.items()})
    return {PEFT_PREFIX + key: value for key, value in wan_to_diffusers(stripped).items()}


def merge_lora(
    transformer: WanTransformer3DModel,
    state: dict[str, torch.Tensor],
    spec: LoRA,
    field: str,
    path: Path,
    expected: str,
) -> WanTransformer3DModel:
    """Merge the adapter in float32 and return the plain transformer."""
    transformer.float()
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0, target_modules=block_linears(transformer))
    adapted = get_peft_model(transformer, config)
    given = lora_to_diffusers(state)
    check_keys(get_peft_model_state_dict(adapted), given, field, path, expected)
    set_peft_model_state_dict(adapted, given)
    return adapted.merge_and_unload()
