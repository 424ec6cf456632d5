"""ESPCN (Shi et al. 2016): features in LR space, then a sub-pixel convolution (pixel shuffle) to the HR grid."""

from __future__ import annotations

from tinygrad import Tensor

from ..ops import pixel_shuffle
from .base import ConvUnit, SRNet
from .layers import conv
from .registry import register


@register("espcn", "ESPCN: 5-3-3 convolutions (64/32, tanh) in LR space and a pixel shuffle; variant 'paper': "
                   "C-64-64-C*r*r with ReLU and BatchNorm")
class ESPCN(SRNet):
  name = "espcn"
  upsampling_layers = ("subpixel",)

  def __init__(self, scale: int, channels: int | None = 1, variant: str = "original", batchnorm: bool | None = None,
               activation: str | None = None, border: str = "zeros"):
    super().__init__(scale, channels, border)
    if variant not in ("original", "paper"):
      raise ValueError(f"unknown ESPCN variant {variant!r}; choose 'original' or 'paper'")
    paper = variant == "paper"
    f1, f2 = (64, 64) if paper else (64, 32)
    act = activation or ("relu" if paper else "tanh")
    bn = paper if batchnorm is None else batchnorm
    self.feature_channels = f2
    self.extract = ConvUnit(conv(self.channels, f1, 5), f1, act, bn)
    self.map = ConvUnit(conv(f1, f2, 3), f2, act, bn)
    self.subpixel = conv(f2, self.channels * scale * scale, 3)
    self.receptive_field = 1 + 4 + 2 + 2

  def features(self, x: Tensor) -> Tensor:
    return self.map(self.extract(x))

  def __call__(self, x: Tensor) -> Tensor:
    return self.trim(pixel_shuffle(self.subpixel(self.features(self.extend(x))), self.scale))
