"""FSRCNN (Dong et al. 2016): shrink, map, expand in LR space, then a 9x9 transposed convolution to HR."""

from __future__ import annotations

import math

from tinygrad import Tensor

from .base import ConvUnit, SRNet
from .layers import StridedConvTranspose2d, conv
from .registry import register


@register("fsrcnn", "FSRCNN: d=56, s=12, m=4 with PReLU, upsampled by a 9x9 transposed convolution")
class FSRCNN(SRNet):
  name = "fsrcnn"
  upsampling_layers = ("deconv",)

  def __init__(self, scale: int, channels: int | None = 1, d: int = 56, s: int = 12, m: int = 4,
               centered: bool = False, border: str = "zeros"):
    super().__init__(scale, channels, border)
    self.feature_channels = d
    self.extract = ConvUnit(conv(self.channels, d, 5), d, "prelu")
    self.shrink = ConvUnit(conv(d, s, 1), s, "prelu")
    self.mapping = [ConvUnit(conv(s, s, 3), s, "prelu") for _ in range(m)]
    self.expand = ConvUnit(conv(s, d, 1), d, "prelu")
    # output size (H - 1) * r - 2 * p + 9 + extra = r * H. An odd scale can put each kernel's centre on its LR pixel's
    # centre (HR pixel r * i + (r - 1) / 2, MATLAB's grid) with p = (9 - r) / 2; p = 4 puts it one HR pixel early.
    padding = (9 - scale) // 2 if centered and scale % 2 else 4
    self.deconv = StridedConvTranspose2d(d, self.channels, 9, stride=scale, padding=padding,
                                         output_padding=scale - 9 + 2 * padding)
    self.receptive_field = 1 + 4 + 2 * m + math.ceil(9 / scale)

  def features(self, x: Tensor) -> Tensor:
    x = self.shrink(self.extract(x))
    for layer in self.mapping:
      x = layer(x)
    return self.expand(x)

  def __call__(self, x: Tensor) -> Tensor:
    return self.trim(self.deconv(self.features(self.extend(x))))
