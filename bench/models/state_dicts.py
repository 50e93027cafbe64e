"""The strict state-dict check every weights loader runs (toy and real): one line naming what does not fit.

Free of the `real` extra's packages, so the toy loader can use it on a core install.
"""

from __future__ import annotations

from pathlib import Path

import torch

from memory_policies import ConfigError


def preview(items: list[str], count: int = 5) -> str:
    """The first `count` items and how many more there are."""
    more = f", ... {len(items) - count} more" if len(items) > count else ""
    return ", ".join(items[:count]) + more


def check_keys(
    want: dict[str, torch.Tensor], state: dict[str, torch.Tensor], field: str, path: Path, expected: str
) -> None:
    """Raise one line naming the first missing, unexpected and reshaped keys of `state`, if any."""
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    reshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(want[k].shape)}"
        for k in want
        if k in state and tuple(state[k].shape) != tuple(want[k].shape)
    ]
    problems = [
        f"{len(found)} {what} ({preview(found)})"
        for what, found in (("missing", missing), ("unexpected", unexpected), ("with other shapes", reshaped))
        if found
    ]
    if problems:
        raise ConfigError(f"{field}: {path} does not fit; keys: {'; '.join(problems)}; expected {expected}")
