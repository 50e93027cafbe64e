"""Memory policies: which past latent frames a causal video model attends to, and where (RoPE)."""

from .deep_forcing import DeepForcingPolicy
from .dense import DensePolicy
from .memrope import MemRoPEPolicy
from .plan import Average, ConfigError, MemoryPolicy, Plan, ReservoirView
from .relaxed import RelaxedPolicy
from .rolling_sink import RollingSinkPolicy

__all__ = [
    "Average",
    "ConfigError",
    "DeepForcingPolicy",
    "DensePolicy",
    "MemRoPEPolicy",
    "MemoryPolicy",
    "Plan",
    "RelaxedPolicy",
    "ReservoirView",
    "RollingSinkPolicy",
]
