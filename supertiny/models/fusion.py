"""Multi-revisit fusion in the spirit of HighRes-net (Deudon et al. 2020), WorldStrat's multi-frame baseline: every
revisit is encoded by the same network beside a reference (the first revisit, by convention the clearest: a scene
changes between dates, so a mean of dates is further from any one of them), the encodings are fused by learned
per-pixel attention over the revisits that are clear there and set beside the reference's own features, and a pixel
shuffle decodes them into the residual over the bicubic upscale of a consensus of the revisits clear at each pixel,
brightness-matched to the reference and weighted by their agreement with it (`consensus`, which also gates the
attention). With one revisit it is a single-image model of the same design (the study in supertiny.timeseries
compares the two).

Input: N x k(C+1) x H x W, each revisit's C bands followed by its clear mask (1 clear, 0 cloud, shadow or no
data; masked pixels may hold anything finite, gap-filled values are best), the clearest revisit first. Output:
N x C x sH x sW.
"""

from __future__ import annotations

from tinygrad import Tensor

from ..ops import pixel_shuffle, upsample
from .base import SRNet
from .layers import ResBlock, conv, zeroed
from .registry import register

# reflectance difference at which a revisit counts e^-1 against the first one in the consensus; differences between
# dates a few weeks apart are about 0.01, clouds 0.1 and more (docs/satellite.md)
AGREEMENT = 0.04


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
    # an untrained model predicts the consensus itself: trained on a few dozen targets, the residual has to earn
    # its place against it
    self.decode = [conv(2 * width, width, 3), zeroed(conv(width, self.channels * scale * scale, 3))]
    self.receptive_field = 1 + 2 * (1 + 2 * blocks) + 2 + 2 * 2

  def __call__(self, x: Tensor) -> Tensor:
    n, _, h, w = x.shape
    k, c = self.revisits, self.channels
    stack = x.reshape(n, k, c + 1, h, w)
    bands, clear = stack[:, :, :c], stack[:, :, c:]
    matched, weights = consensus(bands, clear)
    reference = bands[:, 0]  # the first revisit (the clearest, by convention): N x C x H x W
    pairs = Tensor.cat(matched * clear, reference.unsqueeze(1).expand(n, k, c, h, w), clear, dim=2)
    features = pairs.reshape(n * k, 2 * c + 1, h, w).sequential(self.encode).relu()
    width = features.shape[1]
    # a revisit the consensus leaves out (not clear, or at odds with a clear reference) gets no attention either
    logits = self.attend(features).reshape(n, k, 1, h, w) + weights.maximum(1e-12).log()
    per_revisit = features.reshape(n, k, width, h, w)
    pooled = (per_revisit * logits.softmax(axis=1)).sum(1)
    # the reference's own features beside the pooled ones: what the other revisits add cannot dilute it
    fused = Tensor.cat(per_revisit[:, 0], pooled, dim=1)
    residual = self.decode[1](self.decode[0](fused).relu())
    return pixel_shuffle(residual, self.scale) + upsample(blend(matched, weights), self.scale)


def consensus(bands: Tensor, clear: Tensor, agreement: float = AGREEMENT) -> tuple[Tensor, Tensor]:
  """(matched, weights) of N x k x C x H x W revisits and their N x k x 1 x H x W clear masks. `matched`: every revisit
  brought to the first one's brightness (plus its mean difference from it over the pixels both see). `weights`
  (N x k x 1 x H x W): the first revisit's is its clear mask; where it is clear another counts by its agreement
  with it, exp(-(mean |difference| / agreement)^2), so that a cloud or shadow the mask missed, or a field harvested
  between the dates, drops out; where it is not, the others clear there count equally."""
  reference, reference_clear = bands[:, :1], clear[:, :1]
  others, others_clear = bands[:, 1:], clear[:, 1:]
  if others.shape[1] == 0:
    return bands, clear
  both = others_clear * reference_clear
  offset = ((reference - others) * both).sum((3, 4), keepdim=True) / both.sum((3, 4), keepdim=True).maximum(1)
  aligned = others + offset
  agrees = (-((aligned - reference).abs().mean(2, keepdim=True) / agreement).square()).exp()
  weights = others_clear * (reference_clear * agrees + (1 - reference_clear))
  return Tensor.cat(reference, aligned, dim=1), Tensor.cat(reference_clear, weights, dim=1)


def blend(matched: Tensor, weights: Tensor) -> Tensor:
  """N x C x H x W: the weighted mean of the matched revisits, 0 where no revisit sees the ground (anchored to a
  cloud, the residual would first have to undo it). With one revisit: the revisit where it is clear, else 0."""
  total = weights.sum(1)
  return (total > 0.5).where((matched * weights).sum(1) / total.maximum(1e-6), 0.0)

