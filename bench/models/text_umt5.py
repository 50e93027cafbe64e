"""Wan's text encoder: umT5-XXL (transformers' `UMT5EncoderModel`), 512 tokens, padding rows zeroed.

Two layouts: a Diffusers-format folder (`text_encoder/` + `tokenizer/`), or Wan's original release
(`models_t5_umt5-xxl-enc-bf16.pth`, the state dict of Wan's own T5 encoder, + the `google/umt5-xxl/`
tokenizer folder), whose keys are renamed here to transformers' and whose size is read off the
weights. Prompts are cleaned as Wan does (diffusers' `prompt_clean`: ftfy when installed, HTML
unescaping, whitespace).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

from memory_policies import ConfigError

from .checkpoints import load_folder, load_strict, read_checkpoint
from .execution import cast_for_inference

TEXT_LEN = 512
UMT5_XXL = dict(vocab_size=256384, d_model=4096, num_heads=64, d_kv=64, d_ff=10240, num_layers=24, buckets=32)

# Wan's T5 block parameters -> transformers' UMT5 block parameters
_BLOCK_RENAMES = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",  # the GELU branch
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",  # the linear branch
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)")


def wan_t5_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Wan's T5 encoder keys; unknown keys pass through (strict loading reports them)."""
    out = {}
    for key, value in state.items():
        match = _BLOCK_KEY.fullmatch(key)
        if key == "token_embedding.weight":
            out["shared.weight"] = out["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif match and match.group(2) in _BLOCK_RENAMES:
            out[f"encoder.block.{match.group(1)}.{_BLOCK_RENAMES[match.group(2)]}"] = value
        else:
            out[key] = value
    return out


def umt5_config(state: dict[str, torch.Tensor]) -> UMT5Config:
    """The encoder's size read off Wan's T5 weights (umT5-XXL's values where a key is absent)."""

    def dims(key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(state[key].shape) if key in state else default

    x = UMT5_XXL
    vocab, d_model = dims("token_embedding.weight", (x["vocab_size"], x["d_model"]))
    buckets, heads = dims("blocks.0.pos_embedding.embedding.weight", (x["buckets"], x["num_heads"]))
    inner = dims("blocks.0.attn.q.weight", (x["num_heads"] * x["d_kv"],))[0]
    d_ff = dims("blocks.0.ffn.fc1.weight", (x["d_ff"],))[0]
    layers = len({m.group(1) for k in state if (m := _BLOCK_KEY.fullmatch(k))}) or x["num_layers"]
    return UMT5Config(
        vocab_size=vocab, d_model=d_model, d_kv=inner // heads, d_ff=d_ff, num_layers=layers, num_heads=heads,
        relative_attention_num_buckets=buckets, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
    )


def load_original_umt5(path: Path, field: str) -> UMT5EncoderModel:
    expected = "models_t5_umt5-xxl-enc-bf16.pth (Wan2.1's umT5-XXL encoder, from huggingface.co/Wan-AI/Wan2.1-T2V-1.3B)"
    state = read_checkpoint(path, field, expected)
    if not isinstance(state, dict):
        raise ConfigError(f"{field}: {path} holds a {type(state).__name__}, not a state dict; expected {expected}")
    config = umt5_config(state)
    model = load_strict(lambda: UMT5EncoderModel(config), wan_t5_to_transformers(state), field, path, expected)
    model.tie_weights()
    return model


class TextEncoder:
    """prompts -> (batch, 512, d_model) on `device` in `dtype`, rows past each prompt's tokens zeroed.

    With `offload`, the encoder waits on the CPU and visits `device` only while it encodes, so its
    11 GB (umT5-XXL in bf16) are not held during generation.
    """

    def __init__(self, tokenizer, encoder: UMT5EncoderModel, device: torch.device, dtype: torch.dtype, offload: bool):
        self.tokenizer = tokenizer
        self.device, self.dtype = device, dtype
        self.home = torch.device("cpu") if offload else device
        self.encoder = cast_for_inference(encoder, self.home, dtype)

    @property
    def dim(self) -> int:
        return self.encoder.config.d_model

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            [prompt_clean(p) for p in prompts], padding="max_length", max_length=TEXT_LEN, truncation=True,
            add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        self.encoder.to(self.device)
        try:
            hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        finally:
            self.encoder.to(self.home)
        return (hidden * mask.unsqueeze(-1).to(hidden.dtype)).to(self.dtype)


def load_text_encoder(
    weights: Path, tokenizer: Path, original: bool, device: torch.device, dtype: torch.dtype, offload: bool
) -> TextEncoder:
    field = "model.backend.base"
    encoder = (
        load_original_umt5(weights, field) if original
        else load_folder(UMT5EncoderModel.from_pretrained, weights, field, "umT5 text encoder", torch_dtype=dtype)
    )
    tokens = load_folder(AutoTokenizer.from_pretrained, tokenizer, field, "umT5 tokenizer")
    return TextEncoder(tokens, encoder, device, dtype, offload)
