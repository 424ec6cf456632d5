"""Interpolation baselines (nearest, bilinear, bicubic) behind the model interface: MATLAB imresize on tensors."""

from __future__ import annotations

from tinygrad import Tensor

from ..ops import upsample
from .registry import register


class Interpolation:
  """Upscale by `scale` with one of MATLAB imresize's kernels; no parameters, works on any channel count."""

  method = "bicubic"
  receptive_field = 4  # LR pixels per axis that one output pixel can depend on (the kernel's support)

  def __init__(self, scale: int, channels: int | None = None):
    self.scale, self.channels = scale, channels
    self.name = self.method

  def __call__(self, x: Tensor) -> Tensor:
    return upsample(x, self.scale, self.method)

  def parameters(self) -> list[Tensor]:
    return []


@register("nearest", "nearest-neighbour interpolation (MATLAB imresize 'nearest')", learned=False)
class Nearest(Interpolation):
  method = "nearest"
  receptive_field = 1


@register("bilinear", "bilinear interpolation (MATLAB imresize 'bilinear')", learned=False)
class Bilinear(Interpolation):
  method = "bilinear"
  receptive_field = 2


@register("bicubic", "bicubic interpolation (MATLAB imresize, a = -0.5): the reference baseline", learned=False)
class Bicubic(Interpolation):
  method = "bicubic"
