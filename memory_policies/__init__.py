"""Memory policies: which past latent frames a causal video model attends to, and where (RoPE)."""

from .dense import DensePolicy
from .plan import ConfigError, MemoryPolicy, Plan, ReservoirView
from .relaxed import RelaxedPolicy

__all__ = ["ConfigError", "DensePolicy", "MemoryPolicy", "Plan", "RelaxedPolicy", "ReservoirView"]
