"""Real backends' files: each release's layout loads strictly and equals diffusers' own loading of the
same weights; umT5 and the VAE from both base layouts; one-line errors for every bad file."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from safetensors.torch import save_file
from wan_standins import (
    HEIGHT,
    PROMPTS,
    SEEDS,
    TINY_DIT,
    TINY_T5,
    TINY_VAE,
    WIDTH,
    longlive_lora,
    merged_with_lora,
    release_entry,
    wan_dit_state,
    write_all,
)

from bench.generation.wan_attention import AttentionState
from bench.models.backend import to_uint8
from bench.models.checkpoints import RELEASES
from bench.models.vae import VAEStream, load_vae
from bench.models.wan import architecture_of, load_wan
from memory_policies import ConfigError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("wan"))


def load(files, release, layout="original", **overrides):
    paths = files["releases"][release]
    kwargs = dict(
        checkpoint=str(paths["checkpoint"]), base=str(files[layout]), lora=str(paths["lora"]) if "lora" in paths else None,
        height=HEIGHT, width=WIDTH, device="cpu", architecture=TINY_DIT,
    )
    return load_wan(release, **(kwargs | overrides))


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# -- parity with diffusers' own loading --------------------------------------------------------------


def stock_dit(folder, original_state) -> WanTransformer3DModel:
    """diffusers' `WanTransformer3DModel.from_single_file` on the same weights in Wan's original layout."""
    folder.mkdir(exist_ok=True)
    WanTransformer3DModel(**architecture_of(TINY_DIT)).save_config(folder)
    save_file(original_state, folder / "wan.safetensors")
    return WanTransformer3DModel.from_single_file(
        str(folder / "wan.safetensors"), config=str(folder), local_files_only=True
    ).eval()


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_each_release_loads_strictly_and_equals_diffusers_own_dit(files, tmp_path, name):
    backend = load(files, name)
    state = wan_dit_state(SEEDS[name])
    if RELEASES[name].lora is not None:
        spec = RELEASES[name].lora
        state = merged_with_lora(state, longlive_lora(5), spec.alpha / spec.rank)
    stock = stock_dit(tmp_path, state)
    ours = backend.dit.transformer.state_dict()
    for key, value in stock.state_dict().items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-6 if RELEASES[name].lora else 0)

    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 16, 4, 8, 8, generator=g)
    text = torch.randn(2, 512, TINY_DIT["text_dim"], generator=g)
    timestep = torch.tensor([937.5, 625.0])
    with torch.no_grad():
        expected = stock(latents, timestep, text, return_dict=False)[0]
        got = backend.dit(latents, timestep, text, AttentionState(positions=range(4)))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def wan_t5_reference(state, ids, mask, heads, buckets=32, max_distance=128):
    """Wan's T5 encoder math, written from wan/modules/t5.py: no attention scaling, bidirectional
    bucketed relative bias per block, gated tanh-GELU feed-forward, RMS norms."""
    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

    batch, length = ids.shape
    rel = torch.arange(length)[None, :] - torch.arange(length)[:, None]  # key - query
    half, exact = buckets // 2, buckets // 4
    log_ratio = torch.log(rel.abs().clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = exact + (log_ratio * (half - exact)).long()
    bucket = (rel > 0).long() * half + torch.where(rel.abs() < exact, rel.abs(), far.clamp(max=half - 1))
    x = state["token_embedding.weight"][ids]
    layers = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for i in range(layers):
        p = f"blocks.{i}."
        h = rms(x, state[p + "norm1.weight"])
        q, k, v = (F.linear(h, state[f"{p}attn.{n}.weight"]).view(batch, length, heads, -1) for n in "qkv")
        bias = state[p + "pos_embedding.embedding.weight"][bucket].permute(2, 0, 1)
        logits = torch.einsum("binc,bjnc->bnij", q, k) + bias
        logits = logits.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        attn = torch.einsum("bnij,bjnc->binc", logits.softmax(-1), v).reshape(batch, length, -1)
        x = x + F.linear(attn, state[p + "attn.o.weight"])
        h = rms(x, state[p + "norm2.weight"])
        gate = F.gelu(F.linear(h, state[p + "ffn.gate.0.weight"]), approximate="tanh")
        x = x + F.linear(F.linear(h, state[p + "ffn.fc1.weight"]) * gate, state[p + "ffn.fc2.weight"])
    return rms(x, state["norm.weight"])


def test_original_umt5_matches_wan_t5_math(files):
    encode = load(files, "causvid", "original").encode_text
    tokens = encode.tokenizer(PROMPTS, padding="max_length", max_length=512, truncation=True, return_tensors="pt")
    state = torch.load(files["original"] / "models_t5_umt5-xxl-enc-bf16.pth", weights_only=True)
    mask = tokens.attention_mask
    expected = wan_t5_reference(state, tokens.input_ids, mask, TINY_T5["num_heads"]) * mask[..., None]
    got = encode(PROMPTS)
    assert got.shape == (2, 512, TINY_T5["d_model"])
    assert [int((row.abs().sum(-1) > 0).sum()) for row in got] == mask.sum(-1).tolist()  # padding rows zeroed
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_original_vae_equals_diffusers_single_file_loading(files, tmp_path):
    path = files["original"] / "Wan2.1_VAE.pth"
    ours = load_vae(path, original=True, device=torch.device("cpu"), dtype=torch.float32)
    AutoencoderKLWan(**TINY_VAE).save_config(tmp_path)
    theirs = AutoencoderKLWan.from_single_file(str(path), config=str(tmp_path), local_files_only=True)
    expected = theirs.state_dict()
    assert ours.state_dict().keys() == expected.keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_streaming_decode_equals_one_whole_video_decode(files):
    vae = load_vae(files["diffusers"] / "vae", original=False, device=torch.device("cpu"), dtype=torch.float32)
    latents = torch.randn(2, 16, 7, 8, 8, generator=torch.Generator().manual_seed(0))
    shape = (1, 16, 1, 1, 1)
    mean, std = torch.tensor(vae.config.latents_mean).view(shape), torch.tensor(vae.config.latents_std).view(shape)
    with torch.no_grad():
        whole = to_uint8(vae.decode(latents * std + mean).sample)
    assert whole.shape == (2, 4 * 7 - 3, HEIGHT, WIDTH, 3)
    for chunk in (3, 1):
        push = VAEStream(vae).push
        streamed = [push(latents[:, :, i : i + chunk]) for i in range(0, 7, chunk)]
        assert np.array_equal(np.concatenate(streamed, axis=1), whole)


def test_both_base_layouts_run_and_the_dit_does_not_depend_on_them(files):
    a, b = load(files, "self_forcing", "original"), load(files, "self_forcing", "diffusers")
    assert (a.provenance["base_layout"], b.provenance["base_layout"]) == ("original", "diffusers")
    for key, value in a.dit.transformer.state_dict().items():
        assert torch.equal(value, b.dit.transformer.state_dict()[key])
    for backend in (a, b):
        assert backend.encode_text(PROMPTS).shape == (2, 512, TINY_T5["d_model"])
        assert backend.latent_shape == (16, HEIGHT // 8, WIDTH // 8) and backend.fps == 16.0


# -- one-line errors ---------------------------------------------------------------------------------


def test_unset_and_missing_paths_name_the_field_and_the_expected_file(files, tmp_path):
    with pytest.raises(ConfigError) as err:
        load(files, "self_forcing", checkpoint=None)
    message = one_line(err)
    assert "model.backend.checkpoint is not set" in message and "self_forcing_dmd.pt" in message
    assert "gdhe17/Self-Forcing" in message
    with pytest.raises(FileNotFoundError) as err:
        load(files, "causvid", checkpoint=str(tmp_path / "nope.pt"))
    message = one_line(err)
    assert "model.backend.checkpoint" in message and "nope.pt" in message and "tianweiy/CausVid" in message
    with pytest.raises(ConfigError) as err:
        load(files, "longlive", lora=None)
    assert "model.backend.lora is not set" in one_line(err) and "lora.pt" in one_line(err)
    with pytest.raises(ConfigError) as err:
        load(files, "causvid", lora=str(files["releases"]["longlive"]["lora"]))
    assert "model.backend.lora is only for" in one_line(err)
    with pytest.raises(ConfigError) as err:
        load(files, "self_forcing", base=None)
    assert "model.backend.base is not set" in one_line(err) and "Wan-AI/Wan2.1-T2V-1.3B" in one_line(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        load(files, "self_forcing", base=str(tmp_path / "empty"))
    message = one_line(err)
    assert "models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl, Wan2.1_VAE.pth" in message and "original layout" in message
    with pytest.raises(ConfigError) as err:
        load_wan("self_forcin", checkpoint="x.pt")
    assert "model.backend.release must be one of self_forcing, causvid, rolling_forcing, longlive" in one_line(err)


def truncated(path, tmp_path):
    out = tmp_path / path.name
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def test_truncated_files_give_one_line_errors(files, tmp_path):
    ckpt = truncated(files["releases"]["self_forcing"]["checkpoint"], tmp_path)
    with pytest.raises(ConfigError) as err:
        load(files, "self_forcing", checkpoint=str(ckpt))
    message = one_line(err)
    assert "model.backend.checkpoint" in message and "not a readable PyTorch checkpoint" in message
    assert str(ckpt) in message and "self_forcing_dmd.pt" in message

    base = shutil.copytree(files["original"], tmp_path / "base")
    t5 = base / "models_t5_umt5-xxl-enc-bf16.pth"
    t5.write_bytes(t5.read_bytes()[:1000])
    with pytest.raises(ConfigError) as err:
        load(files, "self_forcing", base=str(base))
    assert "model.backend.base" in one_line(err) and "models_t5_umt5-xxl-enc-bf16.pth" in one_line(err)

    lora = truncated(files["releases"]["longlive"]["lora"], tmp_path)
    with pytest.raises(ConfigError) as err:
        load(files, "longlive", lora=str(lora))
    assert "model.backend.lora" in one_line(err) and "not a readable PyTorch checkpoint" in one_line(err)


def test_wrong_layouts_list_the_first_offending_keys(files, tmp_path):
    # CausVid's file given as Self-Forcing's: no EMA entry
    with pytest.raises(ConfigError) as err:
        load(files, "self_forcing", checkpoint=str(files["releases"]["causvid"]["checkpoint"]))
    assert "has no 'generator_ema' entry (it holds: generator)" in one_line(err)

    # a VAE state dict given as a checkpoint
    with pytest.raises(ConfigError) as err:
        load(files, "causvid", checkpoint=str(files["original"] / "Wan2.1_VAE.pth"))
    assert "has no 'generator' entry (it holds: encoder.conv1.weight" in one_line(err)

    # weights already in diffusers' layout, where the original is expected
    diffusers_state = WanTransformer3DModel(**architecture_of(TINY_DIT)).state_dict()
    torch.save({"generator": {f"model.{k}": v for k, v in diffusers_state.items()}}, tmp_path / "diffusers.pt")
    with pytest.raises(ConfigError) as err:
        load(files, "causvid", checkpoint=str(tmp_path / "diffusers.pt"))
    message = one_line(err)
    assert "does not fit; keys:" in message and "missing (" in message and "unexpected (" in message
    assert "expected model.pt (CausVid autoregressive" in message

    # another width: the right names, other shapes
    wide = wan_dit_state(0, TINY_DIT | {"ffn_dim": 512})
    torch.save({"generator": release_entry(wide)}, tmp_path / "wide.pt")
    with pytest.raises(ConfigError) as err:
        load(files, "causvid", checkpoint=str(tmp_path / "wide.pt"))
    assert "6 with other shapes (blocks.0.ffn.net.0.proj.weight (512, 256) != (384, 256)" in one_line(err)

    # a LoRA without its second block
    lora = {k: v for k, v in longlive_lora(5).items() if ".blocks.1." not in k}
    torch.save(lora, tmp_path / "lora.pt")
    with pytest.raises(ConfigError) as err:
        load(files, "longlive", lora=str(tmp_path / "lora.pt"))
    message = one_line(err)
    assert "model.backend.lora" in message and "20 missing (base_model.model.blocks.1.attn1.to_q.lora_A.weight" in message

    # an original-layout T5 missing a tensor
    base = shutil.copytree(files["original"], tmp_path / "base")
    t5 = base / "models_t5_umt5-xxl-enc-bf16.pth"
    state = torch.load(t5, weights_only=True)
    del state["blocks.1.ffn.fc2.weight"]
    torch.save(state, t5)
    with pytest.raises(ConfigError) as err:
        load(files, "causvid", base=str(base))
    assert "1 missing (encoder.block.1.layer.1.DenseReluDense.wo.weight)" in one_line(err)


def test_the_cli_reports_an_unset_checkpoint_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "model=self_forcing", "eval=none", f"hydra.run.dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "error: model.backend.checkpoint is not set: give the local path of self_forcing_dmd.pt" in result.stderr
    assert not (tmp_path / "summary.json").exists() and (tmp_path / "error.json").exists()
