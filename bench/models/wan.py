"""The real backends: Wan2.1-T2V-1.3B with a published autoregressive generator checkpoint.

`load_wan` assembles a `Backend` from local files only: the generator checkpoint of a release
(Self-Forcing, CausVid, Rolling Forcing, LongLive + its LoRA; see `checkpoints.RELEASES`),
converted to diffusers' `WanTransformer3DModel` and driven through the shared `PlannedWan`
attention path, plus the umT5 text encoder and the Wan VAE of the base model, from either its
Diffusers-format folder or its original layout. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

from memory_policies import ConfigError
from memory_policies.plan import check_int

from .backend import Backend
from .checkpoints import (
    Release,
    entry,
    file_digest,
    find_release,
    load_strict,
    original_wan_keys,
    read_checkpoint,
    require_file,
    wan_to_diffusers,
)
from .execution import (
    KernelPinnedWan,
    cast_for_inference,
    resolve_device,
    resolve_dtype,
    sdpa_backends,
)
from .lora import merge_lora
from .text_umt5 import load_text_encoder
from .vae import VAEStream, load_vae

WAN21_T2V_1_3B = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=12,
    attention_head_dim=128,
    in_channels=16,
    out_channels=16,
    text_dim=4096,
    freq_dim=256,
    ffn_dim=8960,
    num_layers=30,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
VAE_STRIDE = 8  # pixels per latent pixel; 4 video frames per latent frame
FPS = 16.0  # the releases save their videos at 16 fps
BASE_SOURCE = (
    "Wan2.1-T2V-1.3B: huggingface.co/Wan-AI/Wan2.1-T2V-1.3B (original layout) "
    "or huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
)
LAYOUTS = {  # what each base-folder layout holds: text encoder weights, tokenizer, VAE
    "diffusers": ("text_encoder", "tokenizer", "vae"),
    "original": ("models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl", "Wan2.1_VAE.pth"),
}


@dataclass(frozen=True)
class BaseFiles:
    root: Path
    layout: str  # diffusers | original
    text_encoder: Path
    tokenizer: Path
    vae: Path


def locate_base(base: str | None) -> BaseFiles:
    """The base model's files; a folder with model_index.json is read as the Diffusers layout."""
    field = "model.backend.base"
    if base is None or str(base).strip() == "":
        raise ConfigError(f"{field} is not set: give the local folder of {BASE_SOURCE}")
    root = Path(base).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{field}: folder {root} not found; expected {BASE_SOURCE}")
    layout = "diffusers" if (root / "model_index.json").is_file() else "original"
    missing = [name for name in LAYOUTS[layout] if not (root / name).exists()]
    if missing:
        why = "it has model_index.json" if layout == "diffusers" else "no model_index.json, so not the Diffusers layout"
        raise FileNotFoundError(
            f"{field}: {root} lacks {', '.join(missing)} of the {layout} layout ({why}); expected {BASE_SOURCE}"
        )
    return BaseFiles(root, layout, *(root / name for name in LAYOUTS[layout]))


def architecture_of(overrides: dict | None) -> dict:
    """Wan2.1-T2V-1.3B's DiT arguments, with `overrides` (e.g. a tiny stand-in's) replacing some."""
    arch = {**WAN21_T2V_1_3B, **(overrides or {})}
    arch["patch_size"] = tuple(arch["patch_size"])
    try:
        with torch.device("meta"):
            WanTransformer3DModel(**arch)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model.backend.architecture: not WanTransformer3DModel arguments ({err})") from None
    return arch


def load_dit(info: Release, checkpoint: Path, lora: Path | None, arch: dict) -> WanTransformer3DModel:
    """The release's generator weights in diffusers' DiT, LongLive's LoRA merged in."""
    field, expected = "model.backend.checkpoint", info.expected()
    state = entry(read_checkpoint(checkpoint, field, expected), info.entry, field, checkpoint, expected)
    converted = wan_to_diffusers(original_wan_keys(state))
    dit = load_strict(lambda: WanTransformer3DModel(**arch), converted, field, checkpoint, expected)
    if info.lora is None:
        return dit
    field = "model.backend.lora"
    expected = f"{info.lora.file} (LongLive's LoRA, rank {info.lora.rank}, from {info.source})"
    adapter = read_checkpoint(lora, field, expected)
    if isinstance(adapter, dict) and isinstance(adapter.get("generator_lora"), dict):
        adapter = adapter["generator_lora"]
    if not isinstance(adapter, dict):
        raise ConfigError(f"{field}: {lora} holds a {type(adapter).__name__}, not a LoRA state dict; expected {expected}")
    return merge_lora(dit, adapter, info.lora, field, lora, expected)


def load_wan(
    release: str,
    checkpoint: str | None = None,
    base: str | None = None,
    lora: str | None = None,
    height: int = 480,
    width: int = 832,
    device: str = "auto",
    dtype: str = "auto",
    offload_text_encoder: bool = True,
    architecture: dict | None = None,
) -> Backend:
    """Every path is checked before any weight is read, so a wrong path fails in a second."""
    info = find_release(release)
    ckpt_path = require_file(checkpoint, "model.backend.checkpoint", info.expected())
    if info.lora is not None:
        lora_path = require_file(lora, "model.backend.lora", f"{info.lora.file} (from {info.source})")
    elif lora is not None:
        raise ConfigError(f"model.backend.lora is only for a release with a LoRA (longlive); {release} has none")
    else:
        lora_path = None
    files = locate_base(base)
    arch = architecture_of(architecture)
    stride = VAE_STRIDE * arch["patch_size"][1]
    for name, value in (("height", height), ("width", width)):
        if check_int(f"model.backend.{name}", value, stride) % stride:
            raise ConfigError(f"model.backend.{name} must be a positive multiple of {stride} pixels, got {value!r}")
    run_device = resolve_device(device)
    run_dtype = resolve_dtype(dtype, run_device)

    dit = cast_for_inference(load_dit(info, ckpt_path, lora_path, arch), run_device, run_dtype)
    original = files.layout == "original"
    text = load_text_encoder(files.text_encoder, files.tokenizer, original, run_device, run_dtype, offload_text_encoder)
    vae = load_vae(files.vae, original, run_device, run_dtype)
    if vae.config.z_dim != arch["in_channels"] or text.dim != arch["text_dim"]:
        raise ConfigError(
            f"model.backend.base: {files.root} does not match the DiT: VAE latent channels {vae.config.z_dim} vs "
            f"{arch['in_channels']}, text width {text.dim} vs {arch['text_dim']}; expected {BASE_SOURCE}"
        )
    backends = sdpa_backends(run_device, run_dtype)
    provenance = {
        "release": release,
        "checkpoint": str(ckpt_path),
        "checkpoint_sha256": file_digest(ckpt_path),
        "base": str(files.root),
        "base_layout": files.layout,
        "dtype": str(run_dtype).removeprefix("torch."),
        "sdpa_backends": [b.name for b in backends] or "default",
    }
    if lora_path is not None:
        provenance |= {"lora": str(lora_path), "lora_sha256": file_digest(lora_path)}
    return Backend(
        name=release,
        dit=KernelPinnedWan(dit, backends),
        encode_text=text,
        decoder=lambda: VAEStream(vae).push,
        latent_shape=(arch["in_channels"], height // VAE_STRIDE, width // VAE_STRIDE),
        fps=FPS,
        dtype=run_dtype,
        device=run_device,
        provenance=provenance,
    )
