"""Model zoo: importing a family module registers its models."""

from . import (  # noqa: F401  (each import registers its models)
  conv_transformer,
  edsr,
  espcn,
  fsrcnn,
  fusion,
  interpolation,
  paper,
  srcnn,
  swinir,
  vdsr,
)
from .layers import parameter_count
from .registry import MODELS, ModelSpec, SRModel, create_model, register

__all__ = ["MODELS", "ModelSpec", "SRModel", "create_model", "parameter_count", "register"]
