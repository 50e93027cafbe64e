"""The prompts of a run: a list in the config or a text file with one prompt per line."""

from __future__ import annotations

from pathlib import Path

from omegaconf import ListConfig

from memory_policies import ConfigError


def load_prompts(prompts: object) -> list[str]:
    """`prompts` is a list of strings or the path of a text file with one prompt per line."""
    if isinstance(prompts, str):
        path = Path(prompts).expanduser()
        if not path.is_file():
            raise ConfigError(f"prompts: file {path} not found (give a list of strings or a text file path)")
        items = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif isinstance(prompts, (list, tuple, ListConfig)):
        items = [str(p).strip() for p in prompts]
    else:
        raise ConfigError(f"prompts must be a list of strings or a text file path, got {type(prompts).__name__}")
    if not items or any(not p for p in items):
        raise ConfigError("prompts must hold at least one non-empty prompt")
    return items
