"""Bad input to the Hydra apps is one line, `error: ...`, naming what to fix, and exit status 2.

One test runs `python -m bench.run` in a subprocess for the exit status and the shape of stderr;
the rest call the apps' real entry points in this process (`main()` with sys.argv patched).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from conftest import REPO

import bench.evaluate
import bench.perf.attention
import bench.perf.e2e
import bench.run

QUIET = ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
LONGEST_LINE = len("error: ") + 300


def call_app(module, *overrides: str) -> tuple[object, str]:
    """(exit status or return value, stderr) of `python -m <module> <overrides>`, in this process."""
    argv, stderr = sys.argv, io.StringIO()
    sys.argv = [module.__name__, *overrides]
    try:
        with redirect_stderr(stderr), redirect_stdout(io.StringIO()):
            try:
                result = module.main()
            except SystemExit as stop:
                result = stop.code
    finally:
        sys.argv = argv
    return result, stderr.getvalue()


def run_bad(run_dir: Path, *overrides: str, weights: Path | None = None) -> str:
    """`bench.run` with tiny sizes and `overrides`; asserts the one-line failure and returns the line."""
    tiny = ["eval=none", "num_latent_frames=6", "prompts=[a red square moving fast]", *QUIET]
    if weights is not None:
        tiny.append(f"model.backend.weights={weights}")
    code, stderr = call_app(bench.run, *tiny, f"hydra.run.dir={run_dir}", *overrides)
    return one_line(code, stderr, run_dir)


def one_line(code: object, stderr: str, run_dir: Path | None = None) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, stderr  # the error line and nothing else
    assert lines[-1].startswith("error: ") and len(lines[-1]) <= LONGEST_LINE, lines[-1]
    if run_dir is not None:
        assert not (run_dir / "summary.json").exists()
    return lines[-1]


def test_subprocess_exit_status_and_stderr_shape(tmp_path, random_toy_weights):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "eval=none", "num_latent_frames=6", "policy.sink=-1",
         f"model.backend.weights={random_toy_weights}", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: policy.sink must be an integer >= 0 and <= 1024, got -1"], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "run" / "summary.json").exists()
    assert "policy.sink" in json.loads((tmp_path / "run" / "error.json").read_text())["error"]


@pytest.mark.parametrize(
    "override, field",
    [
        ("policy.sink=-1", "policy.sink"),
        ("policy.reservoir=5", "policy.reservoir"),
        ("num_latent_frames=40", "num_latent_frames"),
        ("policy.lam=nan", "policy.lam"),
        ("policy.rope=spiral", "policy.rope"),
        ("prompts=[]", "prompts"),
        ("seed=-2", "seed"),
        ("model.backend.weights=/nonexistent/toy.safetensors", "model.backend.weights"),
        ("prompts=[a purple hexagon]", "prompts[0]"),
        # from issue 11: each was accepted silently, a traceback, a hang, or named the wrong field
        ("policy.warmup=-1", "policy.warmup"),
        ("policy.warmup=1.5", "policy.warmup"),
        ("policy.warmup=x", "policy.warmup"),
        ("policy.warmup=null", "policy.warmup"),
        ("policy.warmup=nan", "policy.warmup"),
        ("policy.warmup=[1]", "policy.warmup"),
        ("sampler.shift=inf", "sampler.shift"),
        ("sampler.steps=[1000,x]", "sampler.steps"),
        ("sampler.shift=[5]", "sampler.shift"),
        ("sampler.renoise=1", "sampler.renoise"),
        ("policy.reservoir=1000000000000", "policy.reservoir"),
        ("sampler.chunk_frames=-1", "sampler.chunk_frames"),
        ("+policy.chunk=4", "sampler.chunk_frames"),  # the chunk's one home is the sampler
        ("policy.sink=${nope}", "policy.sink"),
        ("seed=${oc.env:RELAXBENCH_NO_SUCH_VAR}", "seed"),
        ("+policy.foo=1", "policy.foo"),
        ("+polcy=dense", "polcy"),
        ("+model.backend.typo=1", "model.backend.typo"),
        ("logger=wandb|logger.mode=foo", "logger.mode"),
        ("batch_size=1000000", "batch_size"),
        ("num_latent_frames=3000000", "num_latent_frames"),
        ("sampler=rolling", "policy=rolling_forcing"),
    ],
)
def test_bad_value_is_one_line_naming_the_field(override, field, tmp_path, random_toy_weights):
    line = run_bad(tmp_path / "run", *override.split("|"), weights=random_toy_weights)
    assert field in line
    assert line.removeprefix("error: ") == json.loads((tmp_path / "run" / "error.json").read_text())["error"]


def test_a_corrupt_weights_file_is_named(tmp_path):
    bad = tmp_path / "toy.safetensors"
    bad.write_bytes(b"not a checkpoint")
    line = run_bad(tmp_path / "run", f"model.backend.weights={bad}")
    assert line.startswith(f"error: model.backend.weights: {bad} is not a readable safetensors file")


def test_a_huge_dense_window_is_refused_at_once(tmp_path):
    line = run_bad(tmp_path / "run", "policy=dense", "policy.window=1000000000000")
    assert line == "error: policy.window must be an integer >= 1 and <= 1024 or null, got 1000000000000"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("policy=dnse", "Could not find 'policy/dnse'; the options are: attention_sink, deep_forcing, dense,"),
        ("policy.sink==", "cannot parse the override 'policy.sink=='"),
        ("policy.nosuch=1", "Could not override 'policy.nosuch'."),
        ("policy.chunk=4", "Could not override 'policy.chunk'."),  # not a policy setting: sampler.chunk_frames is
    ],
)
def test_hydra_composition_errors_are_one_line(override, expected, tmp_path):
    assert expected in run_bad(tmp_path / "run", override)


def test_interpolation_errors_name_the_key_and_the_cause(tmp_path):
    assert run_bad(tmp_path / "a", "policy.sink=${nope}") == "error: policy.sink: Interpolation key 'nope' not found"
    line = run_bad(tmp_path / "b", "seed=${oc.env:RELAXBENCH_NO_SUCH_VAR}")
    assert line == "error: seed: Environment variable 'RELAXBENCH_NO_SUCH_VAR' not found"


@pytest.mark.parametrize(
    "content, expected",
    [
        ("a red square\ncarré bleu\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 17)"),
        (b"\x00\x01\x02binary", "is binary (NUL bytes)"),
        (b"\n  \n", "holds no prompt"),
    ],
)
def test_a_prompts_file_that_is_not_utf8_text_is_named(content, expected, tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    line = run_bad(tmp_path / "run", f"prompts={path}")
    assert line.startswith(f"error: prompts: file '{path}'") and expected in line


def test_prompts_from_a_utf8_file_reach_the_tokenizer_whole(tmp_path, random_toy_weights):
    path = tmp_path / "prompts.txt"
    path.write_text("a red square moving fast\n\na carré moving slow\n", encoding="utf-8")
    line = run_bad(tmp_path / "run", f"prompts={path}", weights=random_toy_weights)
    assert line.startswith("error: prompts[1] 'a carré moving slow' has 1 unknown word(s), first 'carré';")


def test_a_huge_unknown_word_makes_a_short_line(tmp_path, random_toy_weights):
    line = run_bad(tmp_path / "a", f"prompts=[a {'x' * 1500} square]", weights=random_toy_weights)
    assert line.startswith("error: prompts[0] 'a xxx") and "first 'xxx" in line
    line = run_bad(tmp_path / "b", f"prompts=[a {'x' * 10_000} square]")  # longer than any prompt may be
    assert line.startswith("error: prompts[0] must be a non-empty one-line string of at most 2000 characters")


@pytest.mark.parametrize(
    "module, overrides, expected",
    [
        (bench.evaluate, [], "error: videos_dir must be"),
        (bench.evaluate, ["videos_dir=${nope}"], "error: videos_dir: Interpolation key 'nope' not found"),
        (bench.evaluate, ["eval=nonesuch"], "error: In 'evaluate': Could not find 'eval/nonesuch'"),
        (bench.perf.attention, ["heads=x"], "error: heads must be an integer >= 1, got 'x'"),
        (bench.perf.e2e, ["seed=${oc.env:RELAXBENCH_NO_SUCH_VAR}"], "error: seed: Environment variable"),
        (bench.perf.e2e, ["policies.relaxed.sink=-1"], "error: policy.sink must be an integer >= 0"),
        (bench.perf.attention, ["+repeets=5"], "error: repeets is not a setting of this command"),
        (bench.perf.attention, ["+relaxed.sinks=3"], "error: relaxed.sinks is not a setting of relaxed"),
        (bench.perf.e2e, ["+policies.dense.windw=9"], "error: policies.dense.windw is not a setting of policies.dense"),
    ],
)
def test_every_app_reports_bad_input_in_one_line(module, overrides, expected, tmp_path):
    code, stderr = call_app(module, *overrides, *QUIET, f"hydra.run.dir={tmp_path}/run")
    assert one_line(code, stderr).startswith(expected)
