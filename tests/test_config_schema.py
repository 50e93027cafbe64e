"""Every field of every config group rejects bad values, through `python -m bench.run` itself.

The fields are found by composing every option of every group and walking its keys, so a field
added to a YAML file is covered without touching this file. A value is bad by a rule of its kind
written here (a negative count, a non-finite number, a boolean that is not true/false, ...), never
by asking the schema. Every bad value must stop the run with one line naming the field, before any
model is built: no traceback, no silent acceptance.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from pathlib import Path

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, get_method
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from test_bad_input import QUIET, call_app, one_line

import bench.run
from bench.schema import BACKENDS
from memory_policies import RelaxedPolicy

CONF = REPO / "conf"
GROUPS = ("model", "policy", "sampler", "logger")
# Fields whose comments in conf/ say null is allowed (whatever their default is).
NULLABLE = {
    "policy.window", "sampler.commit_window", "logger.entity", "logger.group", "logger.max_videos",
    "model.backend.weights", "model.backend.checkpoint", "model.backend.base", "model.backend.lora",
    "model.backend.architecture",
}
FLOATS = {"sampler.context_noise"}  # a timestep written as the integer 0 in the YAML
HUGE = 2**64  # more than any field may hold
LONG = "x" * 10_000  # longer than any name, path or prompt may be


def composed(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=overrides), resolve=True)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def consistent(group: str, option: str) -> list[str]:
    """Overrides that select `option`, with what it needs (the rolling sampler runs its own policy)."""
    return [f"{group}={option}"] + (["policy=rolling_forcing"] if (group, option) == ("sampler", "rolling") else [])


def leaves(node: dict, prefix: str):
    for key, value in node.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict) and key == "backend":
            yield from leaves(value, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}", value


def all_fields() -> list[tuple[str, object, tuple[str, ...]]]:
    """(dotted path, default value, overrides that compose it) for every field, each path once."""
    found: dict[str, tuple[object, tuple[str, ...]]] = {}
    defaults = composed([])
    for key in ("num_latent_frames", "prompts", "seed", "batch_size"):
        found[key] = (defaults[key], ())
    for group in GROUPS:
        for option in options(group):
            base = consistent(group, option)
            for path, value in leaves(composed(base)[group], group):
                found.setdefault(path, (value, tuple(base)))
    return [(path, value, base) for path, (value, base) in sorted(found.items())]


FIELDS = all_fields()


def bad_values(path: str, default: object) -> list[object]:
    """Values bad for any field of the default's kind (null too, unless the field may be null)."""
    nothing = [] if path in NULLABLE else [None]
    if isinstance(default, bool):
        return [-1, 0, 1, 1.5, "x", "yes", float("nan"), [True], {"a": True}, *nothing]
    if isinstance(default, float) or path in FLOATS:
        return [float("nan"), float("inf"), -float("inf"), 1e300, -1e300, "x", True, [1.0], {"a": 1.0}, *nothing]
    if isinstance(default, int):
        return [-1, -(10**12), HUGE, 1.5, "x", "", True, float("nan"), [1], {"a": 1}, *nothing]
    if isinstance(default, str):
        return ["", LONG, 5, 1.5, True, [default], {"a": default}, *nothing]
    if isinstance(default, list):
        element = default[0]
        elements = [-1, HUGE, "x", True, 1.5] if isinstance(element, int) else ["", LONG, 5, True, [element]]
        return [[], 5, {"a": element}, *([e] for e in elements), *nothing]
    assert default is None, (path, default)  # kind unknown: bad for any kind of value
    return [True, 5, 1.5, float("nan"), [1], LONG]


def other_kind(default: object) -> object:
    """A value of another kind than the field's."""
    if isinstance(default, (bool, int, float)):
        return "x"
    return {str: [default], list: 5}.get(type(default), True)


def override(path: str, value: object) -> str:
    return f"{path}={render(value)}"


def render(value: object) -> str:
    """Hydra's override syntax for a value (what a user would type)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return "{" + ",".join(f"{k}:{render(v)}" for k, v in value.items()) + "}"


def assert_refused(run_dir: Path, base: tuple[str, ...], path: str, value: object) -> None:
    tiny = ["eval=none", "num_latent_frames=6", "prompts=[a red square moving fast]", *QUIET, f"hydra.run.dir={run_dir}"]
    code, stderr = call_app(bench.run, *tiny, *base, override(path, value))
    line = one_line(code, stderr, run_dir)
    assert path in line, (value, line)


def test_the_walk_finds_every_group_and_backend():
    paths = {path for path, _, _ in FIELDS}
    assert {"policy.warmup", "policy.window", "sampler.commit_window", "model.backend.weights",
            "model.backend.height", "logger.mode", "model.steps", "num_latent_frames"} <= paths
    assert len(paths) > 40


@pytest.mark.parametrize("path, default, base", FIELDS, ids=[f[0] for f in FIELDS])
def test_every_field_refuses_a_value_of_another_kind(path, default, base, tmp_path):
    assert_refused(tmp_path / "run", base, path, other_kind(default))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bad_values_of_every_field_are_one_line_naming_it(data, tmp_path):
    path, default, base = data.draw(st.sampled_from(FIELDS), label="field")
    value = data.draw(st.sampled_from(bad_values(path, default)), label="value")
    assert_refused(tmp_path / f"run{time.monotonic_ns()}", base, path, value)


def mapping_nodes() -> list[tuple[str, tuple[str, ...]]]:
    """Every mapping the user can add a key to, once per class or loader it configures."""
    nodes, seen = [("", ()), ("eval", ("eval=none",))], set()
    for group in GROUPS:
        for option in options(group):
            base = consistent(group, option)
            node = composed(base)[group]
            backend = node.get("backend", {}).get("_target_")
            for path, kind in ((group, node.get("_target_") or backend or node.get("name")), (f"{group}.backend", backend)):
                if kind is not None and (path, kind) not in seen:
                    seen.add((path, kind))
                    nodes.append((path, tuple(base)))
    return nodes


@pytest.mark.parametrize("node, base", mapping_nodes())
def test_an_unknown_key_is_refused_anywhere(node, base, tmp_path):
    key = f"{node}.no_such_field" if node else "no_such_field"
    tiny = ["eval=none", "num_latent_frames=6", "prompts=[a red square moving fast]", *QUIET, f"hydra.run.dir={tmp_path}"]
    code, stderr = call_app(bench.run, *tiny, *base, f"+{key}=1")
    assert key in one_line(code, stderr, tmp_path)


def test_each_class_declares_exactly_its_fields():
    """The schema of a policy or sampler is its class's FIELDS; of a backend, its loader's arguments."""
    for group in ("policy", "sampler"):
        for option in options(group):
            cls = get_class(composed(consistent(group, option))[group]["_target_"])
            assert set(cls.FIELDS) == {f.name for f in dataclasses.fields(cls)}, cls
    for target, fields in BACKENDS.items():
        assert set(fields) == set(inspect.signature(get_method(target)).parameters), target


def simulated_peak(policy: RelaxedPolicy, num_frames: int) -> int:
    """The most frames a reservoir driven by `retain` ever holds, the chunk being written included."""
    frames, peak = [], 0
    for t in range(0, num_frames, policy.chunk):
        frames = policy.retain(frames, t) + list(range(t, t + policy.chunk))
        peak = max(peak, len(frames))
    return peak


@pytest.mark.parametrize("store", ["release", "attendable", "offload"])
@pytest.mark.parametrize(
    "sizes",
    [{"reservoir": 13}, {"reservoir": 30, "sink": 3, "history": 2, "candidates": 3}, {"reservoir": 61, "chunk": 1, "tail": 4}],
)
def test_max_frames_is_what_the_reservoir_holds(store, sizes):
    policy = RelaxedPolicy(store=store, **sizes)
    assert policy.max_frames() == simulated_peak(policy, 6 * policy.reservoir)


def test_max_frames_at_the_largest_reservoir_is_cheap():
    start = time.perf_counter()
    assert RelaxedPolicy(reservoir=1024, store="release").max_frames() == 1024  # the release holds its whole buffer
    assert RelaxedPolicy(reservoir=1024).max_frames() < 1024  # the default store, attendable
    assert RelaxedPolicy(reservoir=1024, store="offload").device_frames() == 8
    assert time.perf_counter() - start < 5
