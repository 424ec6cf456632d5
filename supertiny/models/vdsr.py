"""VDSR (Kim et al. 2016): 20 3x3 convolutions on the bicubic image, learning the residual."""

from __future__ import annotations

from tinygrad import Tensor

from ..ops import upsample
from .base import ConvUnit, SRNet
from .layers import BICUBIC_TAPS, conv, lr_span
from .registry import register


@register("vdsr", "VDSR: 20 layers of 64-channel 3x3 convolutions, global residual over bicubic")
class VDSR(SRNet):
  name = "vdsr"

  def __init__(self, scale: int, channels: int | None = 1, depth: int = 20, width: int = 64,
               batchnorm: bool = False, activation: str = "relu", border: str = "zeros"):
    super().__init__(scale, channels, border)
    self.input = ConvUnit(conv(self.channels, width, 3), width, activation, batchnorm)
    self.body = [ConvUnit(conv(width, width, 3), width, activation, batchnorm) for _ in range(depth - 2)]
    self.output = conv(width, self.channels, 3)
    self.receptive_field = lr_span(*([3] * depth), scale=scale) + BICUBIC_TAPS

  def __call__(self, x: Tensor) -> Tensor:
    upsampled = upsample(self.extend(x), self.scale)
    h = self.input(upsampled)
    for layer in self.body:
      h = layer(h)
    return self.trim(upsampled + self.output(h))
