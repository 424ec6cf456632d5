"""Multi-revisit fusion in the spirit of HighRes-net (Deudon et al. 2020), WorldStrat's multi-frame baseline: every
revisit is encoded by the same network beside a reference (the first revisit, by convention the clearest: a scene
changes between dates, so a mean of dates is further from any one of them), the encodings are fused by learned
per-pixel attention over the revisits that are clear there and set beside the reference's own features, and a pixel
shuffle decodes them into the residual over the bicubic upscale of a composite: the reference where it is clear,
else the mean of the revisits clear there, else nothing. With one revisit it is a single-image
model of the same design (the study in supertiny.timeseries compares the two).

Input: N x k(C+1) x H x W, each revisit's C bands followed by its clear mask (1 clear, 0 cloud, shadow or no
data; masked pixels may hold anything finite, gap-filled values are best), the clearest revisit first. Output:
N x C x sH x sW.
"""

from __future__ import annotations

from tinygrad import Tensor

from ..ops import pixel_shuffle, upsample
from .base import SRNet
from .layers import ResBlock, conv
from .registry import register


@register("fusion", "multi-revisit fusion (HighRes-net-style): a shared encoder per revisit beside the clearest, "
                    "per-pixel attention over clear revisits, pixel shuffle; input k x (bands + clear mask)")
class RevisitFusion(SRNet):
  name = "fusion"

  revisit_masks = True  # its input: each revisit's bands, then its clear mask

  def __init__(self, scale: int, channels: int | None = 3, revisits: int = 4, width: int = 32, blocks: int = 2):
    super().__init__(scale, channels)
    if revisits < 1:
      raise ValueError(f"fusion needs at least one revisit, got {revisits}")
    self.revisits = revisits
    self.input_channels = revisits * (self.channels + 1)
    self.encode = [conv(2 * self.channels + 1, width, 3), *[ResBlock(width) for _ in range(blocks)]]
    self.attend = conv(width, 1, 3)
    self.decode = [conv(2 * width, width, 3), conv(width, self.channels * scale * scale, 3)]
    self.receptive_field = 1 + 2 * (1 + 2 * blocks) + 2 + 2 * 2

  def __call__(self, x: Tensor) -> Tensor:
    n, _, h, w = x.shape
    k, c = self.revisits, self.channels
    stack = x.reshape(n, k, c + 1, h, w)
    bands, clear = stack[:, :, :c], stack[:, :, c:]
    reference = bands[:, 0]  # the first revisit (the clearest, by convention): N x C x H x W
    pairs = Tensor.cat(bands * clear, reference.unsqueeze(1).expand(n, k, c, h, w), clear, dim=2)
    features = pairs.reshape(n * k, 2 * c + 1, h, w).sequential(self.encode).relu()
    width = features.shape[1]
    logits = self.attend(features).reshape(n, k, 1, h, w) + (clear - 1) * 1e4  # cloudy revisits get no weight
    per_revisit = features.reshape(n, k, width, h, w)
    pooled = (per_revisit * logits.softmax(axis=1)).sum(1)
    # the reference's own features beside the pooled ones: what the other revisits add cannot dilute it
    fused = Tensor.cat(per_revisit[:, 0], pooled, dim=1)
    residual = self.decode[1](self.decode[0](fused).relu())
    return pixel_shuffle(residual, self.scale) + upsample(composite(bands, clear), self.scale)


def composite(bands: Tensor, clear: Tensor) -> Tensor:
  """N x C x H x W from N x k x C x H x W revisits and their N x k x 1 x H x W clear masks: the first revisit where it
  is clear, else the mean of the other revisits clear there, else 0. Where no revisit sees the ground the residual
  is the whole prediction: anchored to a cloud it would first have to undo it."""
  reference = bands[:, 0]
  others, others_clear = bands[:, 1:], clear[:, 1:]
  count = others_clear.sum(1)
  others_mean = (others * others_clear).sum(1) / count.maximum(1)
  return (clear[:, 0] > 0.5).where(reference, (count > 0.5).where(others_mean, 0.0))
