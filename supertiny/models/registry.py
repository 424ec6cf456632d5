"""The model registry: every model, learned or not, is built by name through `create_model`.

A model is a plain object with `__call__(x: Tensor) -> Tensor` taking an NCHW float batch of LR images in [0, 1]
and returning it `scale` times larger, plus the attributes `name`, `scale` and `channels` (1 = Y channel,
3 = RGB, another N = N-band images such as multispectral scenes, None = any number of channels, as the
interpolation baselines).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tinygrad import Tensor

from ..errors import SuperTinyError
from .base import BicubicResidual, StackedRevisits

CHANNEL_NAMES = {"y": 1, "rgb": 3, "1": 1, "3": 3}  # the two spellings of a learned model's input channels


class SRModel(Protocol):
  name: str
  scale: int
  channels: int | None

  def __call__(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class ModelSpec:
  name: str
  build: Callable[..., SRModel]
  summary: str
  scales: tuple[int, ...] | None  # None: any integer scale
  learned: bool


MODELS: dict[str, ModelSpec] = {}


def register(name: str, summary: str, scales: tuple[int, ...] | None = None, learned: bool = True):
  """Class decorator adding a model to the registry under `name`."""
  def wrap(build: Callable[..., SRModel]) -> Callable[..., SRModel]:
    if name in MODELS:
      raise ValueError(f"model {name!r} registered twice")
    MODELS[name] = ModelSpec(name, build, summary, scales, learned)
    return build
  return wrap


def create_model(name: str, scale: int = 4, channels: int | None = 3, bicubic_residual: bool = False,
                 revisits: int | None = None, **options: Any) -> SRModel:
  """Build the registered model `name` for `scale` and `channels` (1 = Y, 3 = RGB, N = N bands);
  `bicubic_residual` adds the bicubic image to a learned model's output (models.base.BicubicResidual), for models
  without a residual of their own; `revisits` k > 1 makes a single-image model take k co-registered revisits
  stacked as input channels (models.base.StackedRevisits; multi-frame models such as fusion take it themselves, and
  None leaves them their default)."""
  if name not in MODELS:
    raise SuperTinyError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}")
  spec = MODELS[name]
  if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
    raise SuperTinyError(f"scale must be a positive integer, got {scale!r}")
  if spec.scales is not None and scale not in spec.scales:
    raise SuperTinyError(f"model {name!r} supports scales {', '.join(map(str, spec.scales))}, not {scale}")
  if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
    raise SuperTinyError(f"channels must be a positive integer (1 = Y, 3 = RGB), got {channels!r}")
  own_revisits = "revisits" in inspect.signature(spec.build).parameters
  if revisits is not None and (isinstance(revisits, bool) or not isinstance(revisits, int) or revisits < 1):
    raise SuperTinyError(f"revisits must be a positive integer, got {revisits!r}")
  if own_revisits and revisits is not None:
    options["revisits"] = revisits
  stacked = 1 if own_revisits else revisits or 1  # for a StackedRevisits front; multi-frame models stack their own
  if stacked > 1 and (not spec.learned or channels is None):
    raise SuperTinyError(f"model {name!r} cannot take {stacked} revisits: "
                         + ("it learns nothing; give it the clearest revisit" if not spec.learned
                            else "give it a channel count"))
  model = spec.build(scale=scale, channels=channels, **options)
  if bicubic_residual:
    if not spec.learned or hasattr(model, "residual"):
      raise SuperTinyError(f"model {name!r} cannot take a bicubic residual: it "
                           + ("learns nothing" if not spec.learned else "has its own (its `residual` option)"))
    model = BicubicResidual(model)
  if stacked > 1:
    model = StackedRevisits(model, stacked)
  return model
