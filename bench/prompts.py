"""The prompts of a run: a list in the config or a UTF-8 text file with one prompt per line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from memory_policies import ConfigError
from memory_policies.plan import check_text, shown

MAX_PROMPTS = 10_000
MAX_PROMPT_CHARS = 2_000  # umT5 reads 512 tokens; the toy model 16 words
MAX_PATH_CHARS = 4_096
MAX_FILE_BYTES = 16 * 2**20
EXPECTED = "UTF-8 text with one prompt per line"


def shown_path(path: Path, keep: int = 150) -> str:
    """The path quoted, its start cut when long: the end names the file."""
    text = str(path)
    return repr(text if len(text) <= keep else "..." + text[3 - keep :])


def check_prompt_list(name: str, value: object, source: str = "") -> list[str]:
    """1 to MAX_PROMPTS strings, each non-empty, one line and at most MAX_PROMPT_CHARS characters."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not 1 <= len(value) <= MAX_PROMPTS:
        raise ConfigError(f"{name}{source} must be a list of 1 to {MAX_PROMPTS} prompts (strings), got {shown(value)}")
    return [check_text(f"{name}[{i}]{source}", p, MAX_PROMPT_CHARS).strip() for i, p in enumerate(value)]


def check_prompts(name: str, value: object) -> object:
    """The `prompts` field: a list of prompts, or the path of a prompts file (read by `load_prompts`)."""
    if isinstance(value, str):
        return check_text(name, value, MAX_PATH_CHARS)
    return check_prompt_list(name, value)


def read_prompts_file(name: str, path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, each a prompt."""
    if not path.is_file():
        raise ConfigError(f"{name}: file {shown_path(path)} not found (give a list of strings or a text file path)")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{name}: file {shown_path(path)} has {size} bytes; a prompts file holds at most {MAX_FILE_BYTES}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{name}: file {shown_path(path)} is not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); "
            f"expected {EXPECTED}"
        ) from None
    if "\0" in text:
        raise ConfigError(f"{name}: file {shown_path(path)} is binary (NUL bytes); expected {EXPECTED}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(f"{name}: file {shown_path(path)} holds no prompt; expected {EXPECTED}")
    return check_prompt_list(name, lines, f" (file {shown_path(path)}, blank lines skipped)")


def load_prompts(prompts: object, name: str = "prompts") -> list[str]:
    """`prompts` is a list of strings or the path of a UTF-8 text file with one prompt per line."""
    if isinstance(prompts, str):
        return read_prompts_file(name, Path(check_text(name, prompts, MAX_PATH_CHARS)).expanduser())
    return check_prompt_list(name, prompts)
