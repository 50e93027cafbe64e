"""The toy trainer runs, checkpoints, resumes and exports weights the harness loads (and refuses others)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from bench.toy import train
from bench.toy.model import load_toy
from bench.toy.train import block_causal_mask, main
from memory_policies import ConfigError


def test_block_causal_layout():
    m = block_causal_mask(window=6, tokens=1, chunk=3)  # [clean 0..5 | noisy 0..5]
    assert m[1, :6].tolist() == [True] * 3 + [False] * 3  # clean chunk 0 sees clean chunk 0
    assert m[4, :6].all() and not m[4, 6:].any()  # clean chunk 1 sees clean chunks 0-1, no noise
    assert m[6, :6].sum() == 0 and m[6, 6:9].all() and not m[6, 9:].any()  # noisy chunk 0: only itself
    assert m[10, :3].all() and not m[10, 3:6].any() and m[10, 9:].all() and not m[10, 6:9].any()


def test_few_steps_resume_and_export(tmp_path, capsys):
    ck, out = tmp_path / "last.pt", tmp_path / "toy.safetensors"
    common = ["--window", "6", "--short-window", "3", "--batch", "2", "--checkpoint", str(ck), "--every", "1"]
    main([*common, "--steps", "2"])
    first = torch.load(ck, weights_only=False)
    assert first["step"] == 2 and all(torch.isfinite(torch.tensor(first["losses"])))
    main([*common, "--steps", "3", "--export", str(out)])
    log = capsys.readouterr().out
    assert "resumed from" in log and "at step 2" in log
    assert torch.load(ck, weights_only=False)["step"] == 3
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["step"]) == 3
    backend = load_toy(out)
    assert backend.encode_text(["a red square moving fast"]).shape == (1, 16, 32)


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """Killed after its step-2 checkpoint and resumed, a 4-step run (warm-up and cosine both crossed)
    ends with the same weights, EMA, optimiser state and losses as the same run left alone."""
    common = ["--window", "6", "--short-window", "3", "--batch", "1", "--steps", "4", "--warmup", "2", "--every", "1"]
    straight, resumed = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    main([*common, "--checkpoint", str(straight)])

    real_loss, calls = train.training_loss, []

    def killed_at_the_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train, "training_loss", killed_at_the_third_step)
    with pytest.raises(KeyboardInterrupt):
        main([*common, "--checkpoint", str(resumed)])
    assert torch.load(resumed, weights_only=False)["step"] == 2
    monkeypatch.undo()
    main([*common, "--checkpoint", str(resumed)])

    a, b = torch.load(straight, weights_only=False), torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 4 and a["losses"] == b["losses"]
    for key in ("dit", "text", "ema_dit", "ema_text"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert a["opt"]["state"].keys() == b["opt"]["state"].keys()
    for state_a, state_b in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):  # step and moments
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert [g["lr"] for g in a["opt"]["param_groups"]] == [g["lr"] for g in b["opt"]["param_groups"]]


def test_a_weights_file_that_does_not_fit_is_one_line_naming_its_keys(random_toy_weights, tmp_path):
    state = load_file(str(random_toy_weights))
    del state["text.where.weight"]
    state["dit.extra"] = torch.zeros(1)
    state["dit.proj_out.bias"] = torch.zeros(5)  # 3 output channels x patch 4 x 4 = 48 in the toy
    bad = tmp_path / "foreign.safetensors"
    save_file(state, str(bad))
    with pytest.raises(ConfigError) as err:
        load_toy(bad)
    line = str(err.value)
    assert "\n" not in line and line.startswith(f"model.backend.weights: {bad} does not fit")
    assert "1 missing (text.where.weight)" in line and "1 unexpected (dit.extra)" in line
    assert "dit.proj_out.bias (5,) != (48,)" in line
