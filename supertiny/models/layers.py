"""Small building blocks shared by the model families (attribute names follow torch.nn, so state dicts match)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

from tinygrad import Tensor, nn

from ..ops import pixel_shuffle, tanh
from ..runtime.conv import conv2d
from ..runtime.transformer import linear

T = TypeVar("T", nn.Conv2d, nn.ConvTranspose2d)

ACTIVATIONS = ("relu", "tanh", "prelu", "leaky_relu", "gelu")


class PReLU:
  """Parametric ReLU with one slope per channel (torch.nn.PReLU(num_parameters=channels))."""

  def __init__(self, channels: int, init: float = 0.25):
    self.weight = Tensor.full((channels,), init)

  def __call__(self, x: Tensor) -> Tensor:
    slope = self.weight.reshape(1, -1, *([1] * (x.ndim - 2)))
    return x.relu() - slope * (-x).relu()


def activation(name: str, channels: int) -> Callable[[Tensor], Tensor]:
  """The activation `name`; PReLU carries weights, the others are plain functions."""
  if name == "relu":
    return Tensor.relu
  if name == "tanh":
    # a rational tanh (supertiny.ops: tinygrad's own costs as much as a convolution layer on the CPU), realised on
    # its own: fused into the next convolution's padding copy, each of its ~15 operations would carry the border
    # mask and compile to scalar code
    return lambda x: tanh(x).contiguous()
  if name == "prelu":
    return PReLU(channels)
  if name == "leaky_relu":
    return lambda x: x.leaky_relu(0.2)
  if name == "gelu":
    return lambda x: x.gelu(approximate="none")
  raise ValueError(f"unknown activation {name!r}; choose from {', '.join(ACTIVATIONS)}")


class Conv2d(nn.Conv2d):
  """Stride-1 convolution with zero padding that keeps the spatial size (odd kernels). Same weights and result as
  tinygrad's nn.Conv2d; on the CPU it runs supertiny.runtime.conv's explicit kernels, several times faster."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int, bias: bool = True):
    super().__init__(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)

  def __call__(self, x: Tensor) -> Tensor:
    return conv2d(x, self.weight, self.bias, padding=self.padding)


class Linear(nn.Linear):
  """tinygrad's nn.Linear (same weights and result) through supertiny.runtime.transformer.linear, which realizes its
  input first so the LayerNorm or GELU before it is computed once, not once per output feature."""

  def __call__(self, x: Tensor) -> Tensor:
    return linear(x, self.weight, self.bias)


class SameConvTranspose2d(nn.ConvTranspose2d):
  """A stride-1 transposed convolution that keeps the size (odd kernel, padding kernel // 2). It equals a
  convolution with the kernel flipped and its channel axes swapped, and runs as one (the CPU kernels of Conv2d);
  the weights keep torch's transposed layout."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int):
    super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)

  def __call__(self, x: Tensor) -> Tensor:
    return conv2d(x, self.weight.transpose(0, 1).flip((2, 3)), self.bias, padding=self.padding)


class PatchExpand(nn.ConvTranspose2d):
  """A transposed convolution whose stride equals its kernel: every input pixel becomes its own kernel x kernel
  block of output pixels. Same weights and result as nn.ConvTranspose2d, computed as one matrix product (tinygrad
  convolves a zero-stuffed input instead, kernel^2 times the work: 6400 times for a 20-pixel patch at x4)."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int):
    super().__init__(in_channels, out_channels, kernel, stride=kernel)

  def __call__(self, x: Tensor) -> Tensor:
    b, _, h, w = x.shape
    cin, cout, k, _ = self.weight.shape
    blocks = x.permute(0, 2, 3, 1).matmul(self.weight.reshape(cin, cout * k * k))  # b, h, w, cout*k*k
    out = blocks.reshape(b, h, w, cout, k, k).permute(0, 3, 1, 4, 2, 5).reshape(b, cout, h * k, w * k)
    return out if self.bias is None else out + self.bias.reshape(1, cout, 1, 1)


class StridedConvTranspose2d(nn.ConvTranspose2d):
  """A transposed convolution with stride s (FSRCNN's deconvolution, the paper's upsampling layer). Same weights
  and result as nn.ConvTranspose2d, computed in input space: output phase (i, j) of every s x s block is a
  stride-1 convolution of the input with taps i, j of the kernel taken every s, so one convolution with s^2 times
  the output channels and a pixel shuffle give it all. tinygrad convolves a zero-stuffed input instead: s^2 times
  the work, on its generic path."""

  def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int = 0,
               output_padding: int = 0):
    super().__init__(in_channels, out_channels, kernel, stride=stride, padding=padding, output_padding=output_padding)

  def __call__(self, x: Tensor) -> Tensor:
    cin, cout, k, _ = self.weight.shape
    s, p, extra = self.stride, self.padding, self.output_padding
    taps = -(-k // s)  # input pixels that reach one output pixel, per axis
    # phase-major kernel: [o, i, j] <- weight[:, o, (taps-1-m)*s + i, (taps-1-n)*s + j], zero past the kernel's end
    w = self.weight.pad(((0, 0), (0, 0), (0, taps * s - k), (0, taps * s - k))).reshape(cin, cout, taps, s, taps, s)
    w = w.flip((2, 4)).permute(1, 3, 5, 0, 2, 4).reshape(cout * s * s, cin, taps, taps)
    h, wd = x.shape[2:]
    size = ((h - 1) * s - 2 * p + k + extra, (wd - 1) * s - 2 * p + k + extra)
    blocks = [-(-(p + n) // s) for n in size]  # output blocks needed to cover the crop [p, p + size)
    x = x.pad(((0, 0), (0, 0), (taps - 1, blocks[0] - h), (taps - 1, blocks[1] - wd)))
    out = pixel_shuffle(conv2d(x, w), s)[:, :, p: p + size[0], p: p + size[1]]
    return out if self.bias is None else out + self.bias.reshape(1, cout, 1, 1)


def conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> Conv2d:
  """Stride-1 convolution with zero padding that keeps the spatial size (odd kernels)."""
  return Conv2d(in_channels, out_channels, kernel, bias=bias)


def zeroed(layer: T) -> T:
  """`layer` with its weight and bias set to zero: the last layer of a residual branch, so that the untrained
  model is what the branch is added to."""
  layer.weight = Tensor.zeros(*layer.weight.shape)
  if layer.bias is not None:
    layer.bias = Tensor.zeros(*layer.bias.shape)
  return layer


def lr_span(*hr_kernels: int, scale: int) -> int:
  """LR pixels spanned by a stack of stride-1 HR convolutions (an upper bound, rounded up)."""
  return math.ceil(sum(k - 1 for k in hr_kernels) / scale)


# An HR pixel of MATLAB bicubic x s depends on at most 4 LR pixels (the kernel's support) per axis
BICUBIC_TAPS = 4


def parameter_count(model) -> int:
  """Trainable parameters (BatchNorm running statistics and fixed buffers excluded)."""
  from tinygrad.nn.state import get_state_dict

  skip = ("running_mean", "running_var", "num_batches_tracked")
  return sum(t.numel() for k, t in get_state_dict(model).items() if not k.endswith(skip) and t.is_param)


class ResBlock:
  """conv 3x3, ReLU, conv 3x3, scaled by `res_scale` and added to the input (EDSR's block; attribute names as the
  official code's, body.0 and body.2, so its state dicts load)."""

  def __init__(self, width: int, res_scale: float = 1.0):
    self.body = [conv(width, width, 3), Tensor.relu, conv(width, width, 3)]
    self.res_scale = res_scale

  def __call__(self, x: Tensor) -> Tensor:
    return x + self.body[2](self.body[0](x).relu()) * self.res_scale
