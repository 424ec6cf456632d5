"""What every learned model shares: its identity, the BatchNorm/activation option of the paper, parameters."""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor, nn
from tinygrad.nn.state import get_parameters

from ..ops import pad_symmetric, resize
from .layers import BICUBIC_TAPS, activation, conv

BORDERS = ("zeros", "symmetric")


class SRNet:
  """Base of the learned models: `name`, `scale`, `channels` and `receptive_field` (LR pixels; None = global)."""

  name = "model"
  receptive_field: int | None = None

  def __init__(self, scale: int, channels: int | None, border: str = "zeros"):
    if channels is None:
      channels = 3  # a channel-agnostic request gets RGB
    if border not in BORDERS:
      raise ValueError(f"unknown border {border!r}; choose from {', '.join(BORDERS)}")
    self.scale, self.channels, self.border = scale, channels, border

  # How the image continues past its edges. "zeros": the layers' own zero padding. "symmetric": the LR image is
  # mirrored (edge repeated, MATLAB's 'symmetric') by the model's reach before the layers and the extension cut
  # from the output, so border pixels see image-like content, as the published test code's replicate padding gave.
  def extend(self, x: Tensor) -> Tensor:
    """The LR input as the layers see it: mirrored past its edges for border "symmetric"."""
    return x if self.border == "zeros" else pad_symmetric(x, self._border_reach())

  def trim(self, y: Tensor) -> Tensor:
    """The output of `extend`ed input cut back to the image."""
    if self.border == "zeros":
      return y
    cut = self._border_reach() * self.scale
    return y[:, :, cut:y.shape[2] - cut, cut:y.shape[3] - cut]

  def _border_reach(self) -> int:
    if self.receptive_field is None:
      raise ValueError(f"{self.name} sees the whole image: it has no finite reach to mirror its border by")
    return self.receptive_field // 2 + 1  # the most LR pixels one side of an output reaches (the span is two sides)

  def parameters(self) -> list[Tensor]:
    return get_parameters(self)

  upsampling_layers: tuple[str, ...] = ()  # what follows `features` (models with an LR-space feature extractor)

  def features(self, x: Tensor) -> Tensor:
    """LR-space feature maps (models that have them), for other models to reuse as an embedder."""
    raise NotImplementedError(f"{self.name} has no LR-space feature extractor")

  def as_embedder(self) -> SRNet:
    """This model without its upsampling layers, so only `features` (and its weights) remain."""
    if not self.upsampling_layers:
      raise ValueError(f"{self.name} has no LR-space feature extractor to embed with")
    for attribute in self.upsampling_layers:
      delattr(self, attribute)
    return self


class ConvUnit:
  """Convolution, optional BatchNorm, activation: the paper's intermediate layer."""

  def __init__(self, layer, out_channels: int, act: str, batchnorm: bool = False):
    self.layer = layer
    self.bn = nn.BatchNorm2d(out_channels) if batchnorm else None
    self.act = activation(act, out_channels)

  def __call__(self, x: Tensor) -> Tensor:
    x = self.layer(x)
    if self.bn is not None:
      x = self.bn(x)
    return self.act(x)


class BicubicResidual:
  """`net(x) + bicubic(x)`: the model learns only what bicubic misses (VDSR's global residual), so an untrained
  one starts near bicubic instead of near noise. Built by `create_model(..., bicubic_residual=True)`."""

  def __init__(self, net: SRNet):
    self.net = net
    self.name, self.scale, self.channels = net.name, net.scale, net.channels
    reach = getattr(net, "receptive_field", None)
    self.receptive_field = None if reach is None else max(reach, BICUBIC_TAPS)

  def parameters(self) -> list[Tensor]:
    return get_parameters(self)

  def __call__(self, x: Tensor) -> Tensor:
    return self.net(x) + resize(x, float(self.scale))


class StackedRevisits:
  """k co-registered revisits stacked as input channels (N, k*C, H, W; revisit r's bands at r*C...) into a
  single-image model: a learned 3x3 convolution merges them into one C-channel image, which the model
  super-resolves. It starts as the revisits' mean, so an untrained merge of k copies of one image is the model on
  that image. Built by `create_model(..., revisits=k)`."""

  def __init__(self, net, revisits: int):
    self.net, self.revisits = net, revisits
    self.name, self.scale, self.channels = net.name, net.scale, net.channels
    self.input_channels = revisits * net.channels
    self.merge = conv(self.input_channels, net.channels, 3)
    mean = np.zeros((net.channels, self.input_channels, 3, 3), np.float32)
    for r in range(revisits):
      mean[np.arange(net.channels), r * net.channels + np.arange(net.channels), 1, 1] = 1.0 / revisits
    self.merge.weight = Tensor(mean)
    self.merge.bias = Tensor.zeros(net.channels)
    reach = getattr(net, "receptive_field", None)
    self.receptive_field = None if reach is None else reach + 1

  def parameters(self) -> list[Tensor]:
    return get_parameters(self)

  def __call__(self, x: Tensor) -> Tensor:
    return self.net(self.merge(x))


__all__ = ["BicubicResidual", "ConvUnit", "SRNet", "StackedRevisits"]
