"""The MUSIQ port's pieces against values worked out by hand: multi-scale tokenisation (sizes, SAME
padding, hashed positions, padding masks), weight standardisation, masking, and imaging_quality's
'longer' resize. Parity with pyiqa's MUSIQ inside vbench is in the slow tests/test_eval_vbench.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.evaluation.backbones.musiq import (
    MUSIQ,
    Encoder,
    StdConv,
    Tokens,
    hashed_positions,
    load_musiq,
    multiscale_tokens,
)
from bench.evaluation.backbones.preprocess import limit_longer_side


def test_hashed_positions_by_hand():
    # 5 rows, 7 columns onto the 10x10 grid: row r -> floor(10 r / 5), column c -> floor(10 c / 7).
    rows, cols = [0, 2, 4, 6, 8], [0, 1, 2, 4, 5, 7, 8]
    assert hashed_positions(5, 7).tolist() == [10 * r + c for r in rows for c in cols]
    assert hashed_positions(12, 1).tolist() == [10 * (10 * r // 12) for r in range(12)]


def test_multiscale_tokens_of_a_77x130_image():
    image = torch.rand(1, 3, 77, 130) * 2 - 1
    tokens = multiscale_tokens(image)
    # 224: 77 * 224/130 = 132.7 -> 133 x 224 -> 5 x 7 = 35 patches, padded to 7 x 7 = 49.
    # 384: 77 * 384/130 = 227.4 -> 227 x 384 -> 8 x 12 = 96 patches, padded to 12 x 12 = 144.
    # original: 77 x 130 -> 3 x 5 = 15 patches, none padded.
    assert tokens.patches.shape == (1, 49 + 144 + 15, 3, 32, 32)
    expected_mask = [1] * 35 + [0] * 14 + [1] * 96 + [0] * 48 + [1] * 15
    assert tokens.mask[0].tolist() == [bool(v) for v in expected_mask]
    assert tokens.scales[0].tolist() == [0] * 49 + [1] * 96 + [0] * 48 + [2] * 15  # padding is all zeros
    assert tokens.positions[0, 49 + 144 :].tolist() == hashed_positions(3, 5).tolist()
    assert not tokens.patches[0, 35:49].any() and not tokens.patches[0, 145:193].any()
    # SAME padding of the original scale: 3*32 - 77 = 19 rows (9 above), 5*32 - 130 = 30 columns (15 left).
    first = tokens.patches[0, 193]
    assert not first[:, :9].any() and not first[:, :, :15].any()
    assert torch.equal(first[:, 9:, 15:], image[0, :, :23, :17])
    last = tokens.patches[0, -1]  # bottom-right patch: 10 rows and 15 columns of padding after the image
    assert torch.equal(last[:, :22, :17], image[0, :, 55:, 113:]) and not last[:, 22:].any()


def test_weight_standardisation_ignores_scale_and_offset_of_the_weights():
    torch.manual_seed(0)
    conv = StdConv(4, 8, 3, bias=False)
    x = torch.randn(2, 4, 9, 9)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(7.0).add_(3.0)
    # Equal up to the 1e-5 added to the std (about 1e-4 of it here).
    torch.testing.assert_close(conv(x), before, atol=1e-4, rtol=5e-4)
    assert before.shape == (2, 8, 9, 9)  # SAME padding at stride 1


def test_masked_tokens_do_not_reach_the_class_token():
    torch.manual_seed(0)
    encoder = Encoder(dim=12, mlp_dim=24, heads=6, layers=2, scales=3)
    for p in encoder.parameters():
        torch.nn.init.normal_(p, std=0.5)
    mask = torch.tensor([[True, True, False, True, False]])
    tokens = Tokens(
        torch.zeros(1, 5, 3, 32, 32), torch.tensor([[0, 5, 0, 7, 0]]), torch.tensor([[0, 0, 0, 1, 0]]), mask
    )
    x = torch.randn(1, 5, 12)
    changed = x.clone()
    changed[:, ~mask[0]] = torch.randn(1, 2, 12) * 10
    cls = encoder(x, tokens)[:, 0]
    torch.testing.assert_close(encoder(changed, tokens)[:, 0], cls)
    changed[:, 1] = torch.randn(12)  # an unmasked token does reach it
    assert not torch.allclose(encoder(changed, tokens)[:, 0], cls)


def test_loading_is_strict_and_shaped_by_the_weights(tmp_path):
    torch.manual_seed(0)
    model = MUSIQ(dim=48, mlp_dim=96, layers=2, classes=10)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "ava.pth")
    loaded = load_musiq(tmp_path / "ava.pth")
    images = torch.rand(2, 3, 40, 70)
    with torch.no_grad():
        scores = loaded(images)
    torch.testing.assert_close(scores, model.eval()(images))
    assert scores.shape == (2,) and ((scores >= 1) & (scores <= 10)).all()  # mean of a 1..10 distribution
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a pyiqa MUSIQ state dict"):
        load_musiq(tmp_path / "other.pth")


def test_longer_side_resize_as_vbench():
    frames = np.zeros((1, 4, 1024, 3), np.uint8)
    frames[..., 0::2, :] = 10
    frames[..., 1::2, 0] = 11  # halving averages neighbours, and vbench's float frames are not rounded
    frames[..., 1::2, 1] = 13
    frames[..., 1::2, 2] = 10
    out = limit_longer_side(frames) * 255
    assert out.shape == (1, 3, 2, 512) and out.dtype == torch.float32
    torch.testing.assert_close(out[:, 0], torch.full((1, 2, 512), 10.5))
    torch.testing.assert_close(out[:, 1], torch.full((1, 2, 512), 11.5))
    torch.testing.assert_close(out[:, 2], torch.full((1, 2, 512), 10.0))
    small = np.random.default_rng(0).integers(0, 256, (2, 512, 300, 3), dtype=np.uint8)
    assert torch.equal(limit_longer_side(small), torch.from_numpy(small).permute(0, 3, 1, 2) / 255.0)
    assert limit_longer_side(np.zeros((1, 700, 300, 3), np.uint8)).shape == (1, 3, 512, 219)  # int(300 * 512/700)


def test_every_tensor_follows_the_images_device():
    """On the meta device any tensor made on the CPU inside forward fails the op that mixes them, so
    this checks on a CPU machine that eval.device=cuda keeps the whole computation on the GPU."""
    model = MUSIQ(dim=48, mlp_dim=96, layers=1, classes=10).to("meta")
    scores = model(torch.rand(2, 3, 40, 70, device="meta"))
    assert scores.shape == (2,) and scores.device.type == "meta"
