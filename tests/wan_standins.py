"""Stand-ins for the real backends' files: tiny configs, random weights, the releases' real layouts.

Key names come from the original Wan code's module structure (DiT, T5 encoder, VAE), written out
here independently of the harness's converters; the releases' wrappings (`model.` prefix, FSDP
segments, dict entries, peft LoRA keys) are the ones their inference scripts load.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import sentencepiece as spm
import torch
from diffusers import AutoencoderKLWan
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

# Tiny Wan DiT: real head size (128, so RoPE splits 44/42/42 as on the 1.3B), 2 heads, 2 layers.
TINY_DIT = dict(num_attention_heads=2, attention_head_dim=128, text_dim=64, freq_dim=32, ffn_dim=384, num_layers=2)
TINY_T5 = dict(d_model=64, num_heads=4, d_kv=16, d_ff=96, num_layers=2, buckets=32)
TINY_VAE = dict(base_dim=8, z_dim=16)
HEIGHT = WIDTH = 64  # pixels: latent 8x8, 16 tokens per latent frame
PROMPTS = ["a red fox runs through snow", "city lights at night, rain on the street"]
CORPUS = PROMPTS + [
    "a cat sleeps on a sunny windowsill", "waves crash on the rocks at sunset",
    "a chef cooks pasta in a busy kitchen", "an astronaut walks on the moon",
]
LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
           "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")


def _rand(g: torch.Generator, scale: float = 0.05):
    return lambda *shape: torch.randn(*shape, generator=g) * scale


def wan_dit_state(seed: int, arch: dict = TINY_DIT) -> dict[str, torch.Tensor]:
    """Original Wan DiT parameter names (wan/modules/model.py) and shapes, random values."""
    r = _rand(torch.Generator().manual_seed(seed))
    dim, ffn = arch["num_attention_heads"] * arch["attention_head_dim"], arch["ffn_dim"]
    out = 16 * 1 * 2 * 2  # out channels x patch
    sd = {
        "patch_embedding.weight": r(dim, 16, 1, 2, 2), "patch_embedding.bias": r(dim),
        "text_embedding.0.weight": r(dim, arch["text_dim"]), "text_embedding.0.bias": r(dim),
        "text_embedding.2.weight": r(dim, dim), "text_embedding.2.bias": r(dim),
        "time_embedding.0.weight": r(dim, arch["freq_dim"]), "time_embedding.0.bias": r(dim),
        "time_embedding.2.weight": r(dim, dim), "time_embedding.2.bias": r(dim),
        "time_projection.1.weight": r(6 * dim, dim), "time_projection.1.bias": r(6 * dim),
        "head.head.weight": r(out, dim), "head.head.bias": r(out), "head.modulation": r(1, 2, dim),
    }
    for i in range(arch["num_layers"]):
        b = f"blocks.{i}."
        for attn in ("self_attn", "cross_attn"):
            for proj in "qkvo":
                sd[f"{b}{attn}.{proj}.weight"], sd[f"{b}{attn}.{proj}.bias"] = r(dim, dim), r(dim)
            sd[f"{b}{attn}.norm_q.weight"], sd[f"{b}{attn}.norm_k.weight"] = 1 + r(dim), 1 + r(dim)
        sd[b + "norm3.weight"], sd[b + "norm3.bias"] = 1 + r(dim), r(dim)
        sd[b + "ffn.0.weight"], sd[b + "ffn.0.bias"] = r(ffn, dim), r(ffn)
        sd[b + "ffn.2.weight"], sd[b + "ffn.2.bias"] = r(dim, ffn), r(dim)
        sd[b + "modulation"] = r(1, 6, dim)
    return sd


def release_entry(state: dict[str, torch.Tensor], fsdp: bool = False) -> dict[str, torch.Tensor]:
    """As the releases save `WanDiffusionWrapper.state_dict()`: `model.` + Wan names (FSDP segments optional)."""
    wrap = (lambda k: k.replace("blocks.", "blocks._fsdp_wrapped_module.", 1)) if fsdp else (lambda k: k)
    return {"model." + wrap(k): v for k, v in state.items()}


def longlive_lora(seed: int, rank: int = 256, arch: dict = TINY_DIT) -> dict[str, torch.Tensor]:
    """LongLive's LoRA as `get_peft_model_state_dict` writes it for every Linear of every block."""
    r = _rand(torch.Generator().manual_seed(seed), 0.01)
    dim, ffn = arch["num_attention_heads"] * arch["attention_head_dim"], arch["ffn_dim"]
    shapes = {name: (dim, dim) for name in LINEARS} | {"ffn.0": (ffn, dim), "ffn.2": (dim, ffn)}
    sd = {}
    for i in range(arch["num_layers"]):
        for name, (out_f, in_f) in shapes.items():
            key = f"base_model.model.blocks.{i}.{name}"
            sd[f"{key}.lora_A.weight"], sd[f"{key}.lora_B.weight"] = r(rank, in_f), r(out_f, rank)
    return sd


def merged_with_lora(state: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], scale: float) -> dict:
    """W + scale * B A on the original names: the reference for the merged LongLive weights."""
    merged = dict(state)
    for key in lora:
        if key.endswith("lora_A.weight"):
            name = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            a, b = lora[key], lora[key.replace("lora_A", "lora_B")]
            merged[f"{name}.weight"] = state[f"{name}.weight"] + scale * (b @ a)
    return merged


def wan_t5_state(seed: int, vocab: int, cfg: dict = TINY_T5) -> dict[str, torch.Tensor]:
    """Original Wan T5 encoder names (wan/modules/t5.py, umT5: one relative bias table per block)."""
    r = _rand(torch.Generator().manual_seed(seed), 0.2)
    d, inner, ff = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"]
    sd = {"token_embedding.weight": r(vocab, d) * 5, "norm.weight": 1 + r(d)}
    for i in range(cfg["num_layers"]):
        b = f"blocks.{i}."
        sd |= {b + "norm1.weight": 1 + r(d), b + "norm2.weight": 1 + r(d)}
        sd |= {f"{b}attn.{p}.weight": r(inner, d) for p in "qkv"} | {b + "attn.o.weight": r(d, inner)}
        sd |= {b + "ffn.gate.0.weight": r(ff, d), b + "ffn.fc1.weight": r(ff, d), b + "ffn.fc2.weight": r(d, ff)}
        sd[b + "pos_embedding.embedding.weight"] = r(cfg["buckets"], cfg["num_heads"]) * 10
    return sd


def wan_vae_state(seed: int, base_dim: int = 8, z_dim: int = 16) -> dict[str, torch.Tensor]:
    """Original Wan2.1 VAE names (wan/modules/vae.py: dim_mult 1,2,4,4, 2 res blocks, time down 0,1,1)."""
    r = _rand(torch.Generator().manual_seed(seed))
    dim_mult, temporal, sd = (1, 2, 4, 4), (False, True, True), {}

    def conv(name, cin, cout, k):
        kernel = k if isinstance(k, tuple) else (k,) * 3
        sd[f"{name}.weight"], sd[f"{name}.bias"] = r(cout, cin, *kernel), r(cout)

    def conv2d(name, cin, cout, k):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = r(cout, cin, k, k), r(cout)

    def rms(name, dim, images=False):
        sd[f"{name}.gamma"] = 1 + r(dim, 1, 1) if images else 1 + r(dim, 1, 1, 1)

    def residual(name, cin, cout):
        rms(f"{name}.residual.0", cin), conv(f"{name}.residual.2", cin, cout, 3)
        rms(f"{name}.residual.3", cout), conv(f"{name}.residual.6", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.shortcut", cin, cout, 1)

    def middle(name, dim):
        residual(f"{name}.0", dim, dim), residual(f"{name}.2", dim, dim)
        rms(f"{name}.1.norm", dim, images=True)
        conv2d(f"{name}.1.to_qkv", dim, 3 * dim, 1), conv2d(f"{name}.1.proj", dim, dim, 1)

    def resample(name, dim, up, in_time):
        conv2d(f"{name}.resample.1", dim, dim // 2 if up else dim, 3)
        if in_time:
            conv(f"{name}.time_conv", dim, 2 * dim if up else dim, (3, 1, 1))

    for part, dims, blocks, times in (
        ("encoder", [base_dim * u for u in (1, *dim_mult)], 2, temporal),
        ("decoder", [base_dim * u for u in (dim_mult[-1], *dim_mult[::-1])], 3, temporal[::-1]),
    ):
        up = part == "decoder"
        conv(f"{part}.conv1", z_dim if up else 3, dims[0], 3)
        if up:
            middle(f"{part}.middle", dims[0])
        index = 0
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            cin = cin // 2 if up and i > 0 else cin
            for _ in range(blocks):
                residual(f"{part}.{'upsamples' if up else 'downsamples'}.{index}", cin, cout)
                cin, index = cout, index + 1
            if i != len(dim_mult) - 1:
                resample(f"{part}.{'upsamples' if up else 'downsamples'}.{index}", cout, up, times[i])
                index += 1
        if not up:
            middle(f"{part}.middle", dims[-1])
        rms(f"{part}.head.0", dims[-1]), conv(f"{part}.head.2", dims[-1], 3 if up else 2 * z_dim, 3)
    conv("conv1", 2 * z_dim, 2 * z_dim, 1), conv("conv2", z_dim, z_dim, 1)
    return sd


def write_tokenizer(folder: Path) -> AutoTokenizer:
    """A real SentencePiece tokenizer trained offline, saved as google/umt5-xxl's files are."""
    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 10), model_writer=model, vocab_size=80, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, model_type="unigram", hard_vocab_limit=False, minloglevel=2,
    )
    (folder / "spiece.model").write_bytes(model.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def write_original_base(root: Path, seed: int = 10) -> Path:
    """Wan2.1-T2V-1.3B's original layout: T5 .pth, VAE .pth, google/umt5-xxl tokenizer folder."""
    tokenizer = write_tokenizer(root / "google" / "umt5-xxl")
    torch.save(wan_t5_state(seed, len(tokenizer)), root / "models_t5_umt5-xxl-enc-bf16.pth")
    torch.save(wan_vae_state(seed + 1, **TINY_VAE), root / "Wan2.1_VAE.pth")
    return root


def write_diffusers_base(root: Path, seed: int = 20) -> Path:
    """Wan2.1-T2V-1.3B-Diffusers' layout: model_index.json, text_encoder/, tokenizer/, vae/."""
    tokenizer = write_tokenizer(root / "tokenizer")
    torch.manual_seed(seed)
    t5 = TINY_T5
    config = UMT5Config(
        vocab_size=len(tokenizer), d_model=t5["d_model"], d_kv=t5["d_kv"], d_ff=t5["d_ff"], num_layers=t5["num_layers"],
        num_heads=t5["num_heads"], feed_forward_proj="gated-gelu", dropout_rate=0.0,
    )
    UMT5EncoderModel(config).save_pretrained(root / "text_encoder")
    AutoencoderKLWan(**TINY_VAE).save_pretrained(root / "vae")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return root


def write_releases(root: Path) -> dict[str, dict[str, Path]]:
    """One stand-in per release, each holding other weights under the entry it must not load."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "self_forcing": ({"generator": release_entry(wan_dit_state(99)), "generator_ema": release_entry(wan_dit_state(1))},
                         "self_forcing_dmd.pt"),
        "causvid": ({"generator": release_entry(wan_dit_state(2))}, "model.pt"),
        "rolling_forcing": ({"generator": release_entry(wan_dit_state(99)),
                             "generator_ema": release_entry(wan_dit_state(3), fsdp=True)}, "rolling_forcing_dmd.pt"),
        "longlive": ({"generator": release_entry(wan_dit_state(4))}, "longlive_base.pt"),
    }
    out = {}
    for name, (checkpoint, filename) in files.items():
        torch.save(checkpoint, root / filename)
        out[name] = {"checkpoint": root / filename}
    torch.save({"generator_lora": longlive_lora(5)}, root / "lora.pt")
    out["longlive"]["lora"] = root / "lora.pt"
    return out


SEEDS = {"self_forcing": 1, "causvid": 2, "rolling_forcing": 3, "longlive": 4}  # the weights each release must load


def write_all(root: Path) -> dict:
    """Both base layouts and every release's files under `root`."""
    return {
        "original": write_original_base(root / "original"),
        "diffusers": write_diffusers_base(root / "diffusers"),
        "releases": write_releases(root / "releases"),
    }
