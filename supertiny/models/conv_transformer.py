"""The paper's convolution-transformer, made sound.

A convolutional patch embedder (128-d), a depthwise-convolution positional encoding (so any image size works),
6 pre-norm transformer encoder blocks with 8 heads, then each token is upsampled to its (patch * scale)^2 block of
output pixels by pixel shuffle or a transposed convolution, and added to the bicubic image (global residual).
The embedder can be another zoo model's LR feature extractor, as the paper's future work proposes.
Encoder blocks use torch.nn.TransformerEncoderLayer's attribute names (self_attn.in_proj_weight, linear1, ...).
"""

from __future__ import annotations

from tinygrad import Tensor, nn

from ..ops import pixel_shuffle, resize
from ..runtime.transformer import attention, linear
from .base import SRNet
from .layers import Linear, PatchExpand, zeroed
from .registry import create_model, register
from .swinir import image_of, mirror_pad_to, tokens_of


class MultiheadSelfAttention:
  def __init__(self, dim: int, heads: int):
    self.heads = heads
    bound = (6 / (dim + 3 * dim)) ** 0.5
    self.in_proj_weight = Tensor.uniform(3 * dim, dim, low=-bound, high=bound)
    self.in_proj_bias = Tensor.zeros(3 * dim)
    self.out_proj = Linear(dim, dim)

  def __call__(self, x: Tensor) -> Tensor:
    b, n, d = x.shape
    qkv = linear(x, self.in_proj_weight, self.in_proj_bias).reshape(b, n, 3, self.heads, d // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attended = attention(q, k, v)
    return self.out_proj(attended.transpose(1, 2).reshape(b, n, d))


class EncoderBlock:
  """Pre-norm transformer encoder block: x + attention(norm(x)), then x + MLP(norm(x)) with GELU."""

  def __init__(self, dim: int, heads: int, hidden: int):
    self.self_attn = MultiheadSelfAttention(dim, heads)
    self.linear1, self.linear2 = Linear(dim, hidden), Linear(hidden, dim)
    self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

  def __call__(self, x: Tensor) -> Tensor:
    x = x + self.self_attn(self.norm1(x))
    return x + self.linear2(self.linear1(self.norm2(x)).gelu(approximate="none"))


@register("conv-transformer", "convolutional patch embedder (128-d) + 6 transformer blocks (8 heads), pixel shuffle "
                              "or transposed-conv upsampling, bicubic residual; embedder swappable")
class ConvTransformer(SRNet):
  name = "conv-transformer"

  def __init__(self, scale: int, channels: int | None = 3, dim: int = 128, depth: int = 6, heads: int = 8,
               patch: int = 4, mlp_ratio: float = 4.0, upsampler: str = "pixelshuffle", embedder: str | None = None,
               residual: bool = True, zero_output: bool = False):
    super().__init__(scale, channels)
    if upsampler not in ("pixelshuffle", "transposed"):
      raise ValueError(f"unknown upsampler {upsampler!r}; choose 'pixelshuffle' or 'transposed'")
    self.patch, self.residual, self.upsampler = patch, residual, upsampler
    self.backbone = None
    in_channels = self.channels
    if embedder is not None:
      self.backbone = create_model(embedder, scale=scale, channels=self.channels).as_embedder()
      in_channels = self.backbone.feature_channels
    self.embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
    self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
    self.blocks = [EncoderBlock(dim, heads, int(dim * mlp_ratio)) for _ in range(depth)]
    self.norm = nn.LayerNorm(dim)
    block = patch * scale
    if upsampler == "pixelshuffle":
      self.upsample = nn.Conv2d(dim, self.channels * block * block, 1)
    else:
      self.upsample = PatchExpand(dim, self.channels, block)
    if zero_output:
      # an untrained residual model is then bicubic itself; from the default start its output is noise of about
      # half the pixel range, which Adam spends its first few hundred steps removing (docs/paper.md)
      zeroed(self.upsample)
    self.receptive_field = None  # global attention

  def __call__(self, x: Tensor) -> Tensor:
    h, w = x.shape[2:]
    p = self.patch
    padded = mirror_pad_to(x, -(-h // p) * p, -(-w // p) * p)
    features = self.backbone.features(padded) if self.backbone is not None else padded
    grid = self.embed(features)
    grid = grid + self.position(grid)
    size = (grid.shape[2], grid.shape[3])
    tokens = tokens_of(grid)
    for block in self.blocks:
      tokens = block(tokens)
    grid = image_of(self.norm(tokens), size)
    if self.upsampler == "pixelshuffle":
      out = pixel_shuffle(self.upsample(grid), p * self.scale)
    else:
      out = self.upsample(grid)
    out = out[:, :, : h * self.scale, : w * self.scale]
    return out + resize(x, float(self.scale)) if self.residual else out
