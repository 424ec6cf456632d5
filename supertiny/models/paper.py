"""The paper's own designs: one big kernel after bicubic, and a stack of transposed convolutions."""

from __future__ import annotations

import math

from tinygrad import Tensor

from ..ops import resize
from .base import ConvUnit, SRNet
from .layers import BICUBIC_TAPS, SameConvTranspose2d, StridedConvTranspose2d, conv, lr_span
from .registry import register


@register("single-kernel", "bicubic, then one 13x13 convolution (the paper's surprising best model)")
class SingleKernel(SRNet):
  name = "single-kernel"

  def __init__(self, scale: int, channels: int | None = 3, kernel: int = 13, border: str = "zeros"):
    super().__init__(scale, channels, border)
    self.conv = conv(self.channels, self.channels, kernel)
    self.receptive_field = lr_span(kernel, scale=scale) + BICUBIC_TAPS

  def __call__(self, x: Tensor) -> Tensor:
    return self.trim(self.conv(resize(self.extend(x), float(self.scale))))


@register("transposed-conv", "three transposed convolutions C-64-32-C (5, 3, 5), the first strided by the scale")
class TransposedConv(SRNet):
  name = "transposed-conv"

  def __init__(self, scale: int, channels: int | None = 3, batchnorm: bool = False, activation: str = "relu",
               border: str = "zeros"):
    super().__init__(scale, channels, border)
    c = self.channels
    # output = (H - 1) * s - 2p + 5 + op must be s * H: choose padding p and output padding op (< s) for that
    pad = max(0, math.ceil((5 - scale) / 2))
    out_pad = 2 * pad - (5 - scale)
    self.up = ConvUnit(StridedConvTranspose2d(c, 64, 5, stride=scale, padding=pad, output_padding=out_pad), 64,
                       activation, batchnorm)
    self.refine = ConvUnit(SameConvTranspose2d(64, 32, 3), 32, activation, batchnorm)
    self.out = SameConvTranspose2d(32, c, 5)
    self.receptive_field = math.ceil((5 - 1 + 2 + 4) / scale) + 1

  def __call__(self, x: Tensor) -> Tensor:
    return self.trim(self.out(self.refine(self.up(self.extend(x)))))
