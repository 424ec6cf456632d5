"""PyTorch reference implementations of the zoo, written from the papers and official layouts with torch.nn
building blocks (test-only). Their state-dict names are the layouts SuperTiny loads: official EDSR-PyTorch and
SwinIR names for those two, SuperTiny's own for the rest."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def symmetric_pad(x: torch.Tensor, p: int) -> torch.Tensor:
  """Mirror padding that repeats the edge pixel (MATLAB's 'symmetric'); torch's 'reflect' does not."""
  x = torch.cat([x[..., :p].flip(-1), x, x[..., -p:].flip(-1)], dim=-1)
  return torch.cat([x[..., :p, :].flip(-2), x, x[..., -p:, :].flip(-2)], dim=-2)


def mirror_pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
  """Extend bottom and right by flipping (edge included), as SwinIR's test script pads."""
  while x.shape[2] < height:
    x = torch.cat([x, x.flip(2)], 2)
  while x.shape[3] < width:
    x = torch.cat([x, x.flip(3)], 3)
  return x[:, :, :height, :width]


def matlab_bicubic_up(x: torch.Tensor, scale: int) -> torch.Tensor:
  """MATLAB imresize bicubic upscaling: PyTorch's a = -0.5 bicubic on a symmetric-padded image, cropped."""
  p = 4
  h, w = x.shape[-2:]
  up = F.interpolate(symmetric_pad(x, p), size=((h + 2 * p) * scale, (w + 2 * p) * scale), mode="bicubic",
                     antialias=True, align_corners=False)
  return up[..., p * scale: (p + h) * scale, p * scale: (p + w) * scale]


class Unit(nn.Module):
  def __init__(self, layer: nn.Module, channels: int, act: str, batchnorm: bool):
    super().__init__()
    self.layer = layer
    self.bn = nn.BatchNorm2d(channels) if batchnorm else None
    self.act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "prelu": nn.PReLU(channels)}[act]

  def forward(self, x):
    x = self.layer(x)
    return self.act(self.bn(x) if self.bn is not None else x)


def same_conv(cin: int, cout: int, k: int) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, k, padding=k // 2)


class SingleKernel(nn.Module):
  def __init__(self, scale: int, channels: int):
    super().__init__()
    self.scale = scale
    self.conv = same_conv(channels, channels, 13)

  def forward(self, x):
    return self.conv(matlab_bicubic_up(x, self.scale))


class TransposedConv(nn.Module):
  def __init__(self, scale: int, channels: int, batchnorm: bool = False):
    super().__init__()
    pad = max(0, math.ceil((5 - scale) / 2))
    self.up = Unit(nn.ConvTranspose2d(channels, 64, 5, stride=scale, padding=pad, output_padding=2 * pad - 5 + scale),
                   64, "relu", batchnorm)
    self.refine = Unit(nn.ConvTranspose2d(64, 32, 3, padding=1), 32, "relu", batchnorm)
    self.out = nn.ConvTranspose2d(32, channels, 5, padding=2)

  def forward(self, x):
    return self.out(self.refine(self.up(x)))


class SRCNN(nn.Module):
  def __init__(self, scale: int, channels: int, kernels=(9, 5, 5), batchnorm: bool = False):
    super().__init__()
    self.scale = scale
    self.extract = Unit(same_conv(channels, 64, kernels[0]), 64, "relu", batchnorm)
    self.map = Unit(same_conv(64, 32, kernels[1]), 32, "relu", batchnorm)
    self.reconstruct = same_conv(32, channels, kernels[2])

  def forward(self, x):
    return self.reconstruct(self.map(self.extract(matlab_bicubic_up(x, self.scale))))


class ESPCN(nn.Module):
  def __init__(self, scale: int, channels: int, paper: bool = False):
    super().__init__()
    f2, act = (64, "relu") if paper else (32, "tanh")
    self.extract = Unit(same_conv(channels, 64, 5), 64, act, paper)
    self.map = Unit(same_conv(64, f2, 3), f2, act, paper)
    self.subpixel = same_conv(f2, channels * scale * scale, 3)
    self.shuffle = nn.PixelShuffle(scale)

  def forward(self, x):
    return self.shuffle(self.subpixel(self.map(self.extract(x))))


class BicubicResidual(nn.Module):
  """A model's output added to the MATLAB-bicubic image."""

  def __init__(self, net: nn.Module, scale: int):
    super().__init__()
    self.net, self.scale = net, scale

  def forward(self, x):
    return self.net(x) + matlab_bicubic_up(x, self.scale)


class StackedRevisits(nn.Module):
  """k revisits stacked as channels, merged by a 3x3 convolution into one image for a single-image model."""

  def __init__(self, net: nn.Module, channels: int, revisits: int):
    super().__init__()
    self.net, self.merge = net, nn.Conv2d(revisits * channels, channels, 3, padding=1)

  def forward(self, x):
    return self.net(self.merge(x))


class FSRCNN(nn.Module):
  def __init__(self, scale: int, channels: int, d: int = 56, s: int = 12, m: int = 4, padding: int = 4):
    super().__init__()
    self.extract = Unit(same_conv(channels, d, 5), d, "prelu", False)
    self.shrink = Unit(same_conv(d, s, 1), s, "prelu", False)
    self.mapping = nn.ModuleList([Unit(same_conv(s, s, 3), s, "prelu", False) for _ in range(m)])
    self.expand = Unit(same_conv(s, d, 1), d, "prelu", False)
    self.deconv = nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=padding,
                                     output_padding=scale - 9 + 2 * padding)

  def forward(self, x):
    x = self.shrink(self.extract(x))
    for layer in self.mapping:
      x = layer(x)
    return self.deconv(self.expand(x))


class VDSR(nn.Module):
  def __init__(self, scale: int, channels: int, depth: int = 20):
    super().__init__()
    self.scale = scale
    self.input = Unit(same_conv(channels, 64, 3), 64, "relu", False)
    self.body = nn.ModuleList([Unit(same_conv(64, 64, 3), 64, "relu", False) for _ in range(depth - 2)])
    self.output = same_conv(64, channels, 3)

  def forward(self, x):
    up = matlab_bicubic_up(x, self.scale)
    h = self.input(up)
    for layer in self.body:
      h = layer(h)
    return up + self.output(h)


# --- EDSR, official EDSR-PyTorch layout ---------------------------------------------------------------------------

class MeanShift(nn.Conv2d):
  def __init__(self, rgb_range: float, sign: int):
    super().__init__(3, 3, 1)
    self.weight.data = torch.eye(3).view(3, 3, 1, 1)
    self.bias.data = sign * rgb_range * torch.tensor(DIV2K_MEAN)
    for p in self.parameters():
      p.requires_grad = False


class ResBlock(nn.Module):
  def __init__(self, width: int):
    super().__init__()
    self.body = nn.Sequential(same_conv(width, width, 3), nn.ReLU(True), same_conv(width, width, 3))

  def forward(self, x):
    return self.body(x) + x


class EDSR(nn.Module):
  def __init__(self, scale: int, blocks: int = 16, width: int = 64, rgb_range: float = 255.0):
    super().__init__()
    self.rgb_range = rgb_range
    self.sub_mean = MeanShift(rgb_range, -1)
    self.add_mean = MeanShift(rgb_range, 1)
    self.head = nn.Sequential(same_conv(3, width, 3))
    self.body = nn.Sequential(*[ResBlock(width) for _ in range(blocks)], same_conv(width, width, 3))
    steps: list[nn.Module] = []
    factors = [2] * int(math.log2(scale)) if scale & (scale - 1) == 0 else [3]
    for f in factors:
      steps += [same_conv(width, f * f * width, 3), nn.PixelShuffle(f)]
    self.tail = nn.Sequential(nn.Sequential(*steps), same_conv(width, 3, 3))

  def forward(self, x):  # takes [0, 1] like SuperTiny's models; the official network works in [0, 255]
    x = self.sub_mean(x * self.rgb_range)
    x = self.head(x)
    x = self.body(x) + x
    return self.add_mean(self.tail(x)) / self.rgb_range


# --- SwinIR-light, official SwinIR layout --------------------------------------------------------------------------

def windows_of(x, w):
  b, h, wd, c = x.shape
  return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def windows_back(x, w, h, wd):
  c = x.shape[-1]
  return x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, wd, c)


class WindowAttention(nn.Module):
  def __init__(self, dim, window, heads):
    super().__init__()
    self.window, self.heads, self.scale = window, heads, (dim // heads) ** -0.5
    self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, heads) * 0.02)
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
    self.qkv = nn.Linear(dim, 3 * dim)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x, mask):
    bw, n, c = x.shape
    q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    attn = (q * self.scale) @ k.transpose(-2, -1)
    bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
    attn = attn + bias.unsqueeze(0)
    if mask is not None:
      nw = mask.shape[0]
      attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.heads, n, n)
    return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
  def __init__(self, dim, heads, window, shift):
    super().__init__()
    self.window, self.shift = window, shift
    self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
    self.attn = WindowAttention(dim, window, heads)
    self.mlp = Mlp(dim, dim * 2)

  def mask(self, h, w):
    img = torch.zeros(1, h, w, 1)
    label = 0
    for hs in (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None)):
      for ws in (slice(0, -self.window), slice(-self.window, -self.shift), slice(-self.shift, None)):
        img[:, hs, ws, :] = label
        label += 1
    win = windows_of(img, self.window).squeeze(-1)
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

  def forward(self, x, size):
    h, w = size
    b, n, c = x.shape
    y = self.norm1(x).view(b, h, w, c)
    if self.shift:
      y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
    y = windows_back(self.attn(windows_of(y, self.window), self.mask(h, w) if self.shift else None), self.window, h, w)
    if self.shift:
      y = torch.roll(y, (self.shift, self.shift), (1, 2))
    x = x + y.reshape(b, n, c)
    return x + self.mlp(self.norm2(x))


class BasicLayer(nn.Module):
  def __init__(self, dim, depth, heads, window):
    super().__init__()
    self.blocks = nn.ModuleList([SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2)
                                 for i in range(depth)])


class RSTB(nn.Module):
  def __init__(self, dim, depth, heads, window):
    super().__init__()
    self.residual_group = BasicLayer(dim, depth, heads, window)
    self.conv = same_conv(dim, dim, 3)

  def forward(self, x, size):
    y = x
    for blk in self.residual_group.blocks:
      y = blk(y, size)
    b, n, c = y.shape
    return self.conv(y.transpose(1, 2).reshape(b, c, *size)).flatten(2).transpose(1, 2) + x


class PatchEmbed(nn.Module):
  def __init__(self, dim):
    super().__init__()
    self.norm = nn.LayerNorm(dim)


class SwinIRLight(nn.Module):
  def __init__(self, scale, channels=3, dim=60, depths=(6, 6, 6, 6), heads=6, window=8):
    super().__init__()
    self.scale, self.window = scale, window
    mean = torch.tensor(DIV2K_MEAN).view(1, 3, 1, 1) if channels == 3 else torch.zeros(1, 1, 1, 1)
    self.register_buffer("mean", mean, persistent=False)
    self.conv_first = same_conv(channels, dim, 3)
    self.patch_embed = PatchEmbed(dim)
    self.layers = nn.ModuleList([RSTB(dim, d, heads, window) for d in depths])
    self.norm = nn.LayerNorm(dim)
    self.conv_after_body = same_conv(dim, dim, 3)
    self.upsample = nn.Sequential(same_conv(dim, channels * scale * scale, 3), nn.PixelShuffle(scale))

  def forward(self, x):
    h, w = x.shape[-2:]
    hp, wp = (h // self.window + 1) * self.window, (w // self.window + 1) * self.window
    x = mirror_pad_to(x, hp, wp) - self.mean
    shallow = self.conv_first(x)
    t = self.patch_embed.norm(shallow.flatten(2).transpose(1, 2))
    for layer in self.layers:
      t = layer(t, (hp, wp))
    deep = self.conv_after_body(self.norm(t).transpose(1, 2).reshape(shallow.shape)) + shallow
    return (self.upsample(deep) + self.mean)[:, :, : h * self.scale, : w * self.scale]


# --- conv-transformer ---------------------------------------------------------------------------------------------

class ConvTransformer(nn.Module):
  def __init__(self, scale, channels, dim=128, depth=6, heads=8, patch=4, upsampler="pixelshuffle"):
    super().__init__()
    self.scale, self.patch, self.upsampler = scale, patch, upsampler
    self.embed = nn.Conv2d(channels, dim, patch, stride=patch)
    self.position = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
    self.blocks = nn.ModuleList([nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                                            batch_first=True, norm_first=True) for _ in range(depth)])
    self.norm = nn.LayerNorm(dim)
    block = patch * scale
    if upsampler == "pixelshuffle":
      self.upsample = nn.Conv2d(dim, channels * block * block, 1)
    else:
      self.upsample = nn.ConvTranspose2d(dim, channels, block, stride=block)

  def forward(self, x):
    h, w = x.shape[-2:]
    p = self.patch
    hp, wp = -(-h // p) * p, -(-w // p) * p
    g = self.embed(mirror_pad_to(x, hp, wp))
    g = g + self.position(g)
    t = g.flatten(2).transpose(1, 2)
    for blk in self.blocks:
      t = blk(t)
    g = self.norm(t).transpose(1, 2).reshape(g.shape)
    out = self.upsample(g)
    if self.upsampler == "pixelshuffle":
      out = F.pixel_shuffle(out, p * self.scale)
    return out[:, :, : h * self.scale, : w * self.scale] + matlab_bicubic_up(x, self.scale)


class RevisitFusion(nn.Module):
  """Multi-revisit fusion: a shared encoder (conv, residual blocks) over each revisit beside the first, attention
  logits per revisit and pixel plus the log of its consensus weight, softmax over revisits, the first revisit's
  features beside the pooled ones, decoder and pixel shuffle onto the MATLAB bicubic upscale of a consensus of the
  clear revisits."""

  def __init__(self, scale: int, channels: int, revisits: int, width: int = 32, blocks: int = 2):
    super().__init__()
    self.scale, self.channels, self.revisits = scale, channels, revisits
    self.encode = nn.ModuleList([same_conv(2 * channels + 1, width, 3), *[ResBlock(width) for _ in range(blocks)]])
    self.attend = same_conv(width, 1, 3)
    self.decode = nn.ModuleList([same_conv(2 * width, width, 3), same_conv(width, channels * scale * scale, 3)])

  def forward(self, x):
    n, _, h, w = x.shape
    k, c = self.revisits, self.channels
    stack = x.view(n, k, c + 1, h, w)
    bands, clear = stack[:, :, :c], stack[:, :, c:]
    matched, weights = self.consensus(bands, clear)
    reference = bands[:, 0]
    features = torch.cat([matched * clear, reference[:, None].expand(n, k, c, h, w), clear], 2).view(n * k, -1, h, w)
    for layer in self.encode:
      features = layer(features)
    features = F.relu(features)
    attention = torch.softmax(self.attend(features).view(n, k, 1, h, w) + torch.log(weights.clamp(min=1e-12)), dim=1)
    per_revisit = features.view(n, k, -1, h, w)
    fused = torch.cat([per_revisit[:, 0], (per_revisit * attention).sum(1)], 1)
    residual = self.decode[1](F.relu(self.decode[0](fused)))
    total = weights.sum(1)
    base = torch.where(total > 0.5, (matched * weights).sum(1) / total.clamp(min=1e-6), torch.zeros_like(reference))
    return F.pixel_shuffle(residual, self.scale) + matlab_bicubic_up(base, self.scale)

  @staticmethod
  def consensus(bands, clear, agreement=0.04):
    """One sample and revisit at a time: revisit i > 0 plus its mean difference from the first over the pixels both
    see; the first's weight its clear mask; another's its mask, times exp(-(d / agreement)^2) where the first is
    clear, d its mean absolute band difference from the first."""
    n, k = bands.shape[:2]
    matched, weights = bands.clone(), clear.clone()
    for s in range(n):
      first, first_clear = bands[s, 0], clear[s, 0, 0]
      for i in range(1, k):
        seen = clear[s, i, 0] * first_clear
        offset = ((first - bands[s, i]) * seen).sum((1, 2)) / max(float(seen.sum()), 1.0)
        matched[s, i] = bands[s, i] + offset[:, None, None]
        distance = (matched[s, i] - first).abs().mean(0)
        agree = torch.where(first_clear > 0.5, torch.exp(-(distance / agreement) ** 2), torch.ones_like(distance))
        weights[s, i, 0] = clear[s, i, 0] * agree
    return matched, weights


class BandSharpener(nn.Module):
  """DSen2-style band sharpening: conv, ReLU, residual blocks scaled by res_scale, conv to the target bands, added
  to the (already upsampled) target bands that follow the guide bands in the input."""

  def __init__(self, guide: int, target: int, width: int, blocks: int, res_scale: float):
    super().__init__()
    self.guide, self.res_scale = guide, res_scale
    self.head = same_conv(guide + target, width, 3)
    self.body = nn.ModuleList([ResBlock(width) for _ in range(blocks)])
    self.tail = same_conv(width, target, 3)

  def forward(self, x):
    t = F.relu(self.head(x))
    for block in self.body:
      t = t + block.body(t) * self.res_scale
    return x[:, self.guide:] + self.tail(t)
