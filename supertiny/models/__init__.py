"""Model zoo: importing a family module registers its models."""

from . import interpolation  # noqa: F401  (registers nearest, bilinear, bicubic)
from .registry import MODELS, ModelSpec, SRModel, create_model, register

__all__ = ["MODELS", "ModelSpec", "SRModel", "create_model", "register"]
