"""The toy trainer runs, checkpoints, resumes and exports weights the harness loads."""

from __future__ import annotations

import json

import torch
from safetensors import safe_open

from bench.toy.model import load_toy
from bench.toy.train import block_causal_mask, main


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
