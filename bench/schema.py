"""The schema of `bench.run`'s config: every field of every group typed and range-checked, and no
unknown key anywhere, before anything is built or loaded. Each error is one ConfigError line naming
the field as the user types it, the value given and what is allowed.

A policy's and a sampler's fields are declared once, by their class (`FIELDS`, checked again when
the class is built from Python); the backends' and loggers' fields are declared here; the `eval`
group by `bench.evaluation.config`. Checks that relate fields of one object (a
budget larger than the reservoir) stay with the object and run when it is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.cli import describe
from bench.evaluation.config import validate as check_eval
from bench.models.checkpoints import RELEASES
from bench.models.execution import DTYPES, check_device
from bench.prompts import MAX_PATH_CHARS, MAX_PROMPTS, check_prompt_list, check_prompts
from memory_policies import ConfigError
from memory_policies.plan import (
    Check,
    check_bool,
    check_choice,
    check_fields,
    check_int,
    check_text,
    shown,
)

MAX_LATENT_FRAMES = 14_400  # one hour of video at 0.25 s per latent frame
MAX_BATCH = 64
MAX_SEED = 2**63 - 1 - MAX_PROMPTS  # video v is seeded seed + v: every seed stays a valid 64-bit seed
HIDDEN_KEYS = ("_target_", "_convert_")

TOP_LEVEL: dict[str, Check] = {
    "num_latent_frames": partial(check_int, low=1, high=MAX_LATENT_FRAMES),
    "prompts": check_prompts,
    "seed": partial(check_int, low=0, high=MAX_SEED),
    "batch_size": partial(check_int, low=1, high=MAX_BATCH),
}
GROUPS = ("model", "sampler", "policy", "eval", "logger")  # in the order they are checked
OPTIONAL = ("memory", "hydra")  # an experiment's `memory` sweep node; hydra's own node when composed with it


def check_path(name: str, value: object) -> str | None:
    """A local file or folder path given by the user; null where the loader has a default or none is needed."""
    return check_text(name, value, MAX_PATH_CHARS, nullable=True)


def check_mapping(name: str, value: object) -> object:
    if value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping of WanTransformer3DModel arguments or null, got {shown(value)}")
    return value


PIXELS = partial(check_int, low=16, high=4096)
BACKENDS: dict[str, dict[str, Check]] = {
    "bench.toy.model.load_toy": {
        "weights": check_path,
        "video_scale": partial(check_int, low=1, high=16),
        "device": partial(check_device, auto=False),
    },
    "bench.models.wan.load_wan": {
        "release": partial(check_choice, allowed=tuple(RELEASES)),
        "checkpoint": check_path,
        "base": check_path,
        "lora": check_path,
        "height": PIXELS,
        "width": PIXELS,
        "device": partial(check_device, auto=True),
        "dtype": partial(check_choice, allowed=("auto", *DTYPES)),
        "offload_text_encoder": check_bool,
        "architecture": check_mapping,
    },
}
LOGGERS: dict[str, dict[str, Check]] = {
    "local": {"name": check_text},
    "wandb": {
        "name": check_text,
        "project": partial(check_text, max_chars=128),
        "entity": partial(check_text, max_chars=128, nullable=True),
        "mode": partial(check_choice, allowed=("offline", "online", "disabled")),
        "group": partial(check_text, max_chars=128, nullable=True),
        "max_videos": partial(check_int, low=0, high=MAX_PROMPTS, nullable=True),
    },
}


def resolved(cfg: DictConfig) -> dict:
    """The config as plain values; a broken interpolation is one line naming its key."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(describe(err)) from None


def group(values: dict, name: str) -> dict:
    node = values.get(name)
    if not isinstance(node, dict):
        raise ConfigError(f"{name} must be a config group (a mapping), got {shown(node)}")
    return node


def target_class(name: str, node: dict) -> type:
    """The class a group's `_target_` names, which declares the group's `FIELDS`."""
    target = node.get("_target_")
    try:
        cls = get_class(target) if isinstance(target, str) else None
    except (ImportError, ValueError, AttributeError):  # a path that does not import, or not a class
        cls = None
    if cls is None or not isinstance(getattr(cls, "FIELDS", None), dict):
        raise ConfigError(f"{name}._target_ must name a class of the harness that declares FIELDS, got {shown(target)}")
    return cls


def check_model(model: dict, sampler_cls: type) -> None:
    """The model group: its sampler settings (checked as the sampler's own), prompts and backend."""
    fields: dict[str, Check] = {
        "name": check_text,
        **{key: sampler_cls.FIELDS[key] for key in ("steps", "shift", "warp", "renoise")},
        "default_prompts": check_prompt_list,
        "trained_frames": partial(check_int, low=1, high=MAX_LATENT_FRAMES),
    }
    check_fields("model", model, fields, extra=("backend",))
    backend = group(model, "backend") if "backend" in model else {}
    target = backend.get("_target_")
    if target not in BACKENDS:
        raise ConfigError(f"model.backend._target_ must be one of {', '.join(BACKENDS)}; got {shown(target)}")
    check_fields("model.backend", backend, BACKENDS[target], HIDDEN_KEYS)


def check_policy(policy: dict, sampler: dict, values: dict) -> None:
    cls = target_class("policy", policy)
    if "chunk" in policy:  # the chunk has one home, the sampler, which build() hands to the policy
        raise ConfigError(
            f"policy.chunk is the sampler's chunk: set sampler.chunk_frames (now {sampler.get('chunk_frames')}), "
            f"not policy.chunk (got {shown(policy['chunk'])})"
        )
    check_fields("policy", policy, cls.FIELDS, HIDDEN_KEYS)
    if "memory" in values and values["memory"] is not None:  # an experiment's sweep node, read by the policy
        memory = values["memory"]
        if not isinstance(memory, dict):
            raise ConfigError(f"memory must be a mapping of policy fields, got {shown(memory)}")
        check_fields("memory", memory, {k: v for k, v in cls.FIELDS.items() if k not in ("name", "chunk")})


def check_sampler_meant_for(sampler_cls: type, policy: dict) -> None:
    """A sampler made for one policy (its `MEMORY`) runs with that policy only."""
    meant = getattr(sampler_cls, "MEMORY", None)
    if meant is not None and policy.get("name") != meant:
        raise ConfigError(
            f"sampler {sampler_cls.__name__} runs with the memory it was made for, policy={meant} "
            f"(docs/real_backends.md); got policy={shown(policy.get('name'))}"
        )


def validate(cfg: DictConfig) -> None:
    """Raise one ConfigError line for the first field of `bench.run`'s config that is not allowed."""
    values = resolved(cfg)
    allowed = [*TOP_LEVEL, *GROUPS]
    for key in values:
        if key not in allowed and key not in OPTIONAL:
            raise ConfigError(
                f"{shown(key)} is not a config key (a group typed wrong?); the keys are: {', '.join(allowed)}"
            )
    for key, check in TOP_LEVEL.items():
        if key in values:
            check(key, values[key])
    sampler = group(values, "sampler")
    sampler_cls = target_class("sampler", sampler)
    check_model(group(values, "model"), sampler_cls)
    check_fields("sampler", sampler, sampler_cls.FIELDS, HIDDEN_KEYS)
    policy = group(values, "policy")
    check_policy(policy, sampler, values)
    check_sampler_meant_for(sampler_cls, policy)
    group(values, "eval")
    check_eval(cfg.eval)  # the eval group's own schema; its backbones are built by check_config later
    logger = group(values, "logger")
    check_choice("logger.name", logger.get("name"), tuple(LOGGERS))
    check_fields("logger", logger, LOGGERS[logger["name"]])
