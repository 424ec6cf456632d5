"""SwinIR-light (Liang et al. 2021): residual Swin Transformer blocks with shifted-window attention and
relative position bias, a one-step pixel-shuffle upsampler.

Attribute names follow the official SwinIR code (conv_first, patch_embed.norm, layers.i.residual_group.blocks.j,
layers.i.conv, norm, conv_after_body, upsample.0), so its state dicts load directly. Inputs are mirror-padded to
a multiple of the window as the official test script does, and the output is cropped back.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from tinygrad import Tensor, nn

from ..ops import pixel_shuffle
from ..runtime.transformer import attention
from .base import SRNet
from .edsr import DIV2K_RGB_MEAN
from .layers import Linear, conv
from .registry import register


@lru_cache(maxsize=8)
def relative_position_onehot(window: int) -> np.ndarray:
  """(window^4, (2*window-1)^2) one-hot rows: token pair (i, j) -> its relative-offset slot in the bias table."""
  ys, xs = np.meshgrid(np.arange(window), np.arange(window), indexing="ij")
  ys, xs = ys.ravel(), xs.ravel()
  dy = ys[:, None] - ys[None, :] + window - 1
  dx = xs[:, None] - xs[None, :] + window - 1
  index = (dy * (2 * window - 1) + dx).ravel()
  onehot = np.zeros((index.size, (2 * window - 1) ** 2), dtype=np.float32)
  onehot[np.arange(index.size), index] = 1.0
  return onehot


@lru_cache(maxsize=32)
def shifted_window_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
  """(windows, window^2, window^2) additive mask: -100 between tokens that the cyclic shift brought together."""
  region = np.zeros((height, width), dtype=np.float32)
  bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
  label = 0
  for rows in bounds:
    for cols in bounds:
      region[rows, cols] = label
      label += 1
  tiles = region.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
  tiles = tiles.reshape(-1, window * window)
  return np.where(tiles[:, None, :] != tiles[:, :, None], -100.0, 0.0).astype(np.float32)


def to_windows(x: Tensor, window: int) -> Tensor:
  """(B, H, W, C) -> (B * windows, window^2, C), windows in row-major order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, window * window, c)


def from_windows(windows: Tensor, window: int, h: int, w: int) -> Tensor:
  """Inverse of to_windows: (B * windows, window^2, C) -> (B, H, W, C)."""
  c = windows.shape[-1]
  x = windows.reshape(-1, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
  return x.reshape(-1, h, w, c)


class WindowAttention:
  def __init__(self, dim: int, window: int, heads: int):
    self.window, self.heads = window, heads
    self.relative_position_bias_table = Tensor.normal((2 * window - 1) ** 2, heads, std=0.02)
    self.qkv = Linear(dim, 3 * dim)
    self.proj = Linear(dim, dim)

  def position_bias(self) -> Tensor:
    n = self.window * self.window
    onehot = Tensor(relative_position_onehot(self.window), device=self.relative_position_bias_table.device)
    return (onehot @ self.relative_position_bias_table).reshape(n, n, self.heads).permute(2, 0, 1)

  def __call__(self, x: Tensor, mask: Tensor | None) -> Tensor:
    bw, n, c = x.shape
    q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    bias = self.position_bias().unsqueeze(0)
    if mask is not None:  # window i of the batch is window i % windows of its image
      windows = mask.shape[0]
      bias = (bias + mask.reshape(windows, 1, n, n)).repeat(bw // windows, 1, 1, 1)
    return self.proj(attention(q, k, v, bias).transpose(1, 2).reshape(bw, n, c))


class Mlp:
  def __init__(self, dim: int, hidden: int):
    self.fc1, self.fc2 = Linear(dim, hidden), Linear(hidden, dim)

  def __call__(self, x: Tensor) -> Tensor:
    return self.fc2(self.fc1(x).gelu(approximate="none"))


class SwinBlock:
  def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float):
    self.window, self.shift = window, shift
    self.norm1 = nn.LayerNorm(dim)
    self.attn = WindowAttention(dim, window, heads)
    self.norm2 = nn.LayerNorm(dim)
    self.mlp = Mlp(dim, int(dim * mlp_ratio))

  def __call__(self, x: Tensor, size: tuple[int, int]) -> Tensor:
    h, w = size
    b, length, c = x.shape
    y = self.norm1(x).reshape(b, h, w, c)
    mask = None
    if self.shift:
      y = y.roll((-self.shift, -self.shift), (1, 2))
      mask = Tensor(shifted_window_mask(h, w, self.window, self.shift), device=x.device)
    y = from_windows(self.attn(to_windows(y, self.window), mask), self.window, h, w)
    if self.shift:
      y = y.roll((self.shift, self.shift), (1, 2))
    x = x + y.reshape(b, length, c)
    return x + self.mlp(self.norm2(x))


class ResidualGroup:
  def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float):
    self.blocks = [SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio) for i in range(depth)]


class RSTB:
  """Residual Swin Transformer block: Swin blocks, then a 3x3 convolution, plus the input."""

  def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float):
    self.residual_group = ResidualGroup(dim, depth, heads, window, mlp_ratio)
    self.conv = conv(dim, dim, 3)

  def __call__(self, tokens: Tensor, size: tuple[int, int]) -> Tensor:
    y = tokens
    for block in self.residual_group.blocks:
      y = block(y, size)
    return tokens + tokens_of(self.conv(image_of(y, size)))


def tokens_of(x: Tensor) -> Tensor:
  """(B, C, H, W) -> (B, H*W, C)."""
  return x.flatten(2).transpose(1, 2)


def image_of(tokens: Tensor, size: tuple[int, int]) -> Tensor:
  """(B, H*W, C) -> (B, C, H, W)."""
  return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *size)


class PatchEmbedNorm:
  def __init__(self, dim: int):
    self.norm = nn.LayerNorm(dim)


def mirror_pad_to(x: Tensor, height: int, width: int) -> Tensor:
  """Extend the bottom and right by mirroring (edge row included), as SwinIR's test script pads."""
  while x.shape[2] < height:
    x = x.cat(x.flip(2), dim=2)
  while x.shape[3] < width:
    x = x.cat(x.flip(3), dim=3)
  return x[:, :, :height, :width]


@register("swinir-light", "SwinIR lightweight: 4 RSTBs x 6 Swin blocks, dim 60, 6 heads, window 8, pixel shuffle",
          scales=(2, 3, 4, 8))
class SwinIRLight(SRNet):
  name = "swinir-light"

  def __init__(self, scale: int, channels: int | None = 3, dim: int = 60, depths: tuple[int, ...] = (6, 6, 6, 6),
               heads: int = 6, window: int = 8, mlp_ratio: float = 2.0):
    super().__init__(scale, channels)
    self.window = window
    self.mean = DIV2K_RGB_MEAN if self.channels == 3 else (0.0,)
    self.conv_first = conv(self.channels, dim, 3)
    self.patch_embed = PatchEmbedNorm(dim)
    self.layers = [RSTB(dim, depth, heads, window, mlp_ratio) for depth in depths]
    self.norm = nn.LayerNorm(dim)
    self.conv_after_body = conv(dim, dim, 3)
    self.upsample = [conv(dim, self.channels * scale * scale, 3)]
    self.receptive_field = None  # shifted windows chain attention across the whole image

  def __call__(self, x: Tensor) -> Tensor:
    h, w = x.shape[2:]
    # the official test script always pads up to the next multiple of the window (a full window when divisible)
    x = mirror_pad_to(x, (h // self.window + 1) * self.window, (w // self.window + 1) * self.window)
    size = (x.shape[2], x.shape[3])
    mean = Tensor(list(self.mean), device=x.device).reshape(1, -1, 1, 1)
    shallow = self.conv_first(x - mean)
    tokens = self.patch_embed.norm(tokens_of(shallow))
    for layer in self.layers:
      tokens = layer(tokens, size)
    deep = self.conv_after_body(image_of(self.norm(tokens), size)) + shallow
    out = pixel_shuffle(self.upsample[0](deep), self.scale) + mean
    return out[:, :, : h * self.scale, : w * self.scale]
