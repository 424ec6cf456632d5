"""SRCNN (Dong et al. 2014/2016): bicubic upsampling, then patch extraction, non-linear mapping, reconstruction."""

from __future__ import annotations

from tinygrad import Tensor

from ..ops import resize
from .base import ConvUnit, SRNet
from .layers import BICUBIC_TAPS, conv, lr_span
from .registry import register

VARIANTS = {"9-5-5": (9, 5, 5), "9-1-5": (9, 1, 5), "paper": (5, 5, 3)}


@register("srcnn", "SRCNN: bicubic, then 9-5-5 convolutions with 64/32 filters (variants 9-1-5 and the paper's 5-5-3)")
class SRCNN(SRNet):
  name = "srcnn"

  def __init__(self, scale: int, channels: int | None = 1, variant: str = "9-5-5", filters: tuple[int, int] = (64, 32),
               batchnorm: bool = False, activation: str = "relu", border: str = "zeros"):
    super().__init__(scale, channels, border)
    if variant not in VARIANTS:
      raise ValueError(f"unknown SRCNN variant {variant!r}; choose from {', '.join(VARIANTS)}")
    k1, k2, k3 = VARIANTS[variant]
    f1, f2 = filters
    self.extract = ConvUnit(conv(self.channels, f1, k1), f1, activation, batchnorm)
    self.map = ConvUnit(conv(f1, f2, k2), f2, activation, batchnorm)
    self.reconstruct = conv(f2, self.channels, k3)
    self.receptive_field = lr_span(k1, k2, k3, scale=scale) + BICUBIC_TAPS

  def __call__(self, x: Tensor) -> Tensor:
    return self.trim(self.reconstruct(self.map(self.extract(resize(self.extend(x), float(self.scale))))))
