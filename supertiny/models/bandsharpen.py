"""Band sharpening for multi-resolution sensors such as Sentinel-2, in the spirit of DSen2 (Lanaras et al. 2018,
"Super-resolution of Sentinel-2 images: learning a globally applicable deep neural network"): the coarse bands,
already upsampled with bicubic to the fine grid, are sharpened by a residual that a small network computes from
them and the fine bands, which carry the spatial detail. Every band stays in its own spectral units: the network
only adds high frequencies.

Input: N x (guide + target) x H x W on the fine grid, the fine (guide) bands first, then the upsampled coarse
(target) bands, in reflectance. Output: N x target x H x W, the sharpened coarse bands.
"""

from __future__ import annotations

from tinygrad import Tensor
from tinygrad.nn.state import get_parameters

from .layers import ResBlock, conv


class BandSharpener:
  """DSen2's design, smaller for a CPU: conv 3x3, ReLU, `blocks` residual blocks (scaled by `res_scale`, as DSen2's
  0.1), conv 3x3 to the target bands, added to the upsampled target bands."""

  name = "bandsharpen"
  scale = 1
  channels = None  # the runner passes every band of the stack through unchanged

  def __init__(self, guide_bands: int = 4, target_bands: int = 6, width: int = 32, blocks: int = 4,
               res_scale: float = 0.1):
    self.guide_bands, self.output_bands = guide_bands, target_bands
    self.head = conv(guide_bands + target_bands, width, 3)
    self.body = [ResBlock(width, res_scale) for _ in range(blocks)]
    self.tail = conv(width, target_bands, 3)
    self.receptive_field = 1 + 2 * (2 + 2 * blocks)

  def parameters(self) -> list[Tensor]:
    return get_parameters(self)

  def __call__(self, x: Tensor) -> Tensor:
    coarse = x[:, self.guide_bands:]
    return coarse + self.tail(self.head(x).relu().sequential(self.body))
