"""What every Hydra app of the harness shares: one-line errors for bad input, and building config nodes.

`@hydra_app("config")` replaces `@hydra.main(...)` (as lightning-hydra-template's `task_wrapper`):
a ConfigError, a missing file, a Hydra composition or override error or an OmegaConf interpolation
error, raised while Hydra composes the config or by the app after its own clean-up (error.json), is
printed as `error: <one line>` on stderr and the process exits with status 2. Any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
    SearchPathException,
)
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from memory_policies import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"
MAX_LINE = 300  # characters of an error line, "error: " excluded
OVERRIDE_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"

USER_ERRORS = (
    ConfigError,
    FileNotFoundError,
    OmegaConfBaseException,
    ConfigCompositionException,
    OverrideParseException,
    SearchPathException,
)
"""Exceptions that are bad input, not bugs: each becomes one line naming what to fix."""

T = TypeVar("T")


def describe(err: BaseException) -> str:
    """The one line (at most MAX_LINE characters) that tells the user what was wrong."""
    if isinstance(err, MissingMandatoryValue):
        line = f"{err.full_key} is required: give {err.full_key}=<value>"
    elif isinstance(err, OmegaConfBaseException):
        message = (err.msg or str(err)).splitlines()[0]
        # "KeyError raised while resolving interpolation: "Environment variable 'X' not found"" -> the quoted part
        message = re.sub(r'^\w+ raised while resolving interpolation: "?(.*?)"?$', r"\1", message)
        line = f"{err.full_key}: {message}" if err.full_key else message
    elif isinstance(err, OverrideParseException):
        line = f"cannot parse the override {err.override!r} (see {OVERRIDE_GRAMMAR})"
    elif isinstance(err, MissingConfigException) and err.options:
        line = f"{str(err).splitlines()[0]}; the options are: {', '.join(err.options)}"
    else:  # Hydra's reports end with a documentation link and the search path; the first lines say it
        lines = [line.strip() for line in str(err).splitlines()]
        kept = [line for line in lines[:2] if line and not line.startswith("See https://")]
        line = " ".join(kept) or type(err).__name__
    line = " ".join(line.split())
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def fail(err: BaseException) -> NoReturn:
    """Report bad input as its one line and stop with status 2."""
    print(f"error: {describe(err)}", file=sys.stderr)
    raise SystemExit(2) from None


def reject_added_keys(cfg: DictConfig) -> None:
    """`+key=value` may add a config group option (`+experiment=...`), never a top-level setting the app
    does not read: a typo would otherwise run the default it meant to change. For the apps without a
    schema of their own (bench.run has bench.schema); keys added inside a node (`+relaxed.foo=1`) are
    refused by `instantiate_checked`."""
    choices = HydraConfig.get().runtime.choices
    for text in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False):  # as typed
        override = OverridesParser.create().parse_override(text)
        key = override.key_or_group
        if override.is_add() and "." not in key and key not in choices and key != "hydra":
            known = ", ".join(str(k) for k in cfg if k != "hydra")
            raise ConfigError(f"{key} is not a setting of this command (from {text!r}); the settings are: {known}")


def hydra_app(config_name: str) -> Callable[[Callable[[DictConfig], T]], Callable[[], T | None]]:
    """`hydra.main` on `conf/<config_name>.yaml`, bad input reported as one line and exit status 2, whether
    Hydra finds it while composing the config or the app finds it while running."""

    def decorate(task: Callable[[DictConfig], T]) -> Callable[[], T | None]:
        @functools.wraps(task)
        def reported(cfg: DictConfig) -> T | None:
            # Caught here, inside the job, so Hydra adds no "Error executing job" line of its own.
            try:
                return task(cfg)
            except USER_ERRORS as err:
                fail(err)

        app = hydra.main(version_base="1.3", config_path=str(CONF), config_name=config_name)(reported)

        @functools.wraps(task)
        def main() -> T | None:
            previous = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
            try:
                return app()
            except USER_ERRORS as err:
                fail(err)
            finally:
                if previous is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = previous

        return main

    return decorate


def instantiate_checked(node: DictConfig, **given: object):
    """`instantiate(node, **given)`, letting a ConfigError raised by the target through as itself (one
    line), and a key the target does not take as one line naming it."""
    try:
        return instantiate(node, **given)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ConfigError, FileNotFoundError)):
            raise err.__cause__ from None
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(err.__cause__))
        if isinstance(err.__cause__, TypeError) and unexpected:
            where = node._get_full_key(None) or "the config"
            raise ConfigError(f"{where}.{unexpected[1]} is not a setting of {where} ({node.get('_target_')})") from None
        raise
