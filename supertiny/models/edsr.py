"""EDSR-baseline (Lim et al. 2017): residual blocks without BatchNorm, pixel-shuffle upsampler, RGB mean shift.

Attribute names follow the official EDSR-PyTorch layout (head.0, body.N.body.0/2, body.16, tail.0.*, tail.1), so
its state dicts load directly. Like the official code, the network works on values in [0, rgb_range] (255).
"""

from __future__ import annotations

import math

from tinygrad import Tensor

from ..ops import pixel_shuffle
from .base import SRNet
from .layers import ResBlock, conv, lr_span
from .registry import register

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def shuffle_factors(scale: int) -> list[int]:
  """Pixel-shuffle steps of the official upsampler: x2 steps for powers of two, one x3 step for scale 3."""
  if scale & (scale - 1) == 0:
    return [2] * int(math.log2(scale))
  if scale == 3:
    return [3]
  raise ValueError(f"EDSR upsamples by 2^n or 3, not {scale}")


def upsampler(scale: int, width: int) -> list:
  """[conv, factor, conv, factor, ...]: the official nn.Sequential of conv + PixelShuffle, indices kept."""
  layers: list = []
  for f in shuffle_factors(scale):
    layers += [conv(width, f * f * width, 3), f]
  return layers


def run_upsampler(layers: list, x: Tensor) -> Tensor:
  for i in range(0, len(layers), 2):
    x = pixel_shuffle(layers[i](x), layers[i + 1])
  return x


@register("edsr-baseline", "EDSR-baseline: 16 residual blocks, 64 channels, no BatchNorm, pixel shuffle, mean shift",
          scales=(2, 3, 4, 8))
class EDSR(SRNet):
  name = "edsr-baseline"
  upsampling_layers = ("tail",)

  def __init__(self, scale: int, channels: int | None = 3, blocks: int = 16, width: int = 64, res_scale: float = 1.0,
               rgb_range: float = 255.0, border: str = "zeros"):
    super().__init__(scale, channels, border)
    self.feature_channels = width
    self.rgb_range = rgb_range
    self.mean = DIV2K_RGB_MEAN if self.channels == 3 else (sum(DIV2K_RGB_MEAN) / 3,)
    self.head = [conv(self.channels, width, 3)]
    self.body = [ResBlock(width, res_scale) for _ in range(blocks)] + [conv(width, width, 3)]
    self.tail = [upsampler(scale, width), conv(width, self.channels, 3)]
    factors = shuffle_factors(scale)  # each conv after a shuffle works on a finer grid
    self.receptive_field = 1 + 2 * (2 * blocks + 2) + sum(
      lr_span(3, scale=math.prod(factors[:i])) for i in range(len(factors) + 1))

  def _mean(self, device: str | tuple[str, ...]) -> Tensor:
    return Tensor(list(self.mean), device=device).reshape(1, -1, 1, 1) * self.rgb_range

  def features(self, x: Tensor) -> Tensor:
    h = self.head[0](x * self.rgb_range - self._mean(x.device))
    res = h
    for layer in self.body:
      res = layer(res)
    return res + h

  def __call__(self, x: Tensor) -> Tensor:
    out = self.tail[1](run_upsampler(self.tail[0], self.features(self.extend(x))))
    return self.trim((out + self._mean(out.device)) / self.rgb_range)
