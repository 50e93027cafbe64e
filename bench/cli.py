"""What every Hydra app of the harness shares: building config nodes with one-line errors."""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from memory_policies import ConfigError


def instantiate_checked(node: DictConfig):
    """`instantiate`, letting a ConfigError raised by the target through as itself (one line)."""
    try:
        return instantiate(node)
    except InstantiationException as err:
        if isinstance(err.__cause__, (ConfigError, FileNotFoundError)):
            raise err.__cause__ from None
        raise
