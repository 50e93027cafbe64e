"""The embedded default model: a tiny Wan-architecture DiT, its procedural sprite data, trainer, statistics and shipped weights."""
