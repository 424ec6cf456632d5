"""Tensor and array ops: pixel shuffle, tanh, MATLAB-compatible resize, colour conversion, modcrop.

Arrays are numpy images laid out HxWxC (or HxW); tensors are tinygrad NCHW. The resize and colour functions
come in both flavours and share one definition of the maths, so data preparation (numpy, float64) and models
that pre-upsample (tinygrad, differentiable) compute the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from tinygrad import Tensor, dtypes

from .runtime.conv import conv2d

# ---------------------------------------------------------------------------------------------------------------
# Pixel shuffle (sub-pixel convolution), with PyTorch's channel ordering: channel c*r*r + i*r + j of the input
# becomes pixel (i, j) of the r x r block of output channel c.


def pixel_shuffle(x: Tensor, factor: int) -> Tensor:
  """(N, C*r*r, H, W) -> (N, C, H*r, W*r), as torch.nn.PixelShuffle."""
  n, c, h, w = x.shape
  if c % (factor * factor):
    raise ValueError(f"pixel_shuffle: {c} channels is not a multiple of {factor}^2")
  out_c = c // (factor * factor)
  return x.reshape(n, out_c, factor, factor, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, out_c, h * factor, w * factor)


def pixel_unshuffle(x: Tensor, factor: int) -> Tensor:
  """(N, C, H*r, W*r) -> (N, C*r*r, H, W), as torch.nn.PixelUnshuffle."""
  n, c, h, w = x.shape
  if h % factor or w % factor:
    raise ValueError(f"pixel_unshuffle: size {h}x{w} is not divisible by {factor}")
  return (x.reshape(n, c, h // factor, factor, w // factor, factor).permute(0, 1, 3, 5, 2, 4)
          .reshape(n, c * factor * factor, h // factor, w // factor))


# ---------------------------------------------------------------------------------------------------------------
# tanh as a rational function. tinygrad builds tanh from its own exp2, a range reduction with inf/nan branches
# that clang compiles to scalar code: up to 12 ns per value on this project's CPU (it depends on the shape), as long
# as a convolution layer of ESPCN. x * P(x^2) / Q(x^2) is nine multiply-adds, a division and a clamp, which
# vectorise (about 1 ns per value; benchmarks/activations.py).
# The coefficients are a Lawson-weighted least-squares fit to tanh on [0, 9] with P(0) = Q(0) = 1 (so tanh(x) ~ x
# near zero); in float32 the result is within 3.5e-7 of tanh everywhere (tanh(9) is 1 - 3e-8) and the gradient,
# by autograd through the formula, within 4e-7 of 1 - tanh^2 (tests/test_ops.py).

TANH_CLAMP = 9.0
TANH_NUMERATOR = (1.0, 0.13380318854262213, 0.0034947598196334345, 2.059610465523673e-05, 1.333808027914607e-08)
TANH_DENOMINATOR = (1.0, 0.4671363627869676, 0.025873797708077705, 0.00032843068027551344, 7.769468811694136e-07)


def _polynomial(s: Tensor, coefficients: tuple[float, ...]) -> Tensor:
  """coefficients[0] + coefficients[1] * s + ..., by Horner's rule."""
  out = s * coefficients[-1] + coefficients[-2]
  for c in reversed(coefficients[:-2]):
    out = out * s + c
  return out


def tanh(x: Tensor) -> Tensor:
  """tanh, within 3.5e-7 in float32 and several times faster than Tensor.tanh on the CPU. Half-precision inputs
  are computed in float32 (the smallest coefficient is below float16's range)."""
  if x.dtype in (dtypes.half, dtypes.bfloat16):
    return tanh(x.float()).cast(x.dtype)
  x = x.clip(-TANH_CLAMP, TANH_CLAMP)
  s = x * x
  return x * _polynomial(s, TANH_NUMERATOR) / _polynomial(s, TANH_DENOMINATOR)


# ---------------------------------------------------------------------------------------------------------------
# Colour: MATLAB rgb2ycbcr / ycbcr2rgb (ITU-R BT.601, studio range), on values in [0, 1].

_RGB_TO_YCBCR = np.array([[65.481, 128.553, 24.966],
                          [-37.797, -74.203, 112.0],
                          [112.0, -93.786, -18.214]]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0]) / 255.0
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def _mix_channels(planes: list, matrix: np.ndarray, offset_in: np.ndarray, offset_out: np.ndarray) -> list:
  """out_i = sum_j matrix[i, j] * (planes[j] - offset_in[j]) + offset_out[i]; works for arrays and tensors."""
  shifted = [p - float(o) for p, o in zip(planes, offset_in, strict=True)]
  return [sum(float(m) * p for m, p in zip(row, shifted, strict=True)) + float(o)
          for row, o in zip(matrix, offset_out, strict=True)]


def rgb_to_ycbcr(image: np.ndarray | Tensor) -> np.ndarray | Tensor:
  """RGB in [0, 1] -> YCbCr in [0, 1] as MATLAB's rgb2ycbcr on doubles. Arrays: HxWx3; tensors: Nx3xHxW."""
  return _convert(image, _RGB_TO_YCBCR, np.zeros(3), _YCBCR_OFFSET)


def ycbcr_to_rgb(image: np.ndarray | Tensor) -> np.ndarray | Tensor:
  """Inverse of rgb_to_ycbcr (MATLAB's ycbcr2rgb on doubles); no clipping."""
  return _convert(image, _YCBCR_TO_RGB, _YCBCR_OFFSET, np.zeros(3))


def rgb_to_y(image: np.ndarray | Tensor) -> np.ndarray | Tensor:
  """Only the luma plane of rgb_to_ycbcr: HxW for arrays, Nx1xHxW for tensors."""
  planes = _split(image)
  (y,) = _mix_channels(planes, _RGB_TO_YCBCR[:1], np.zeros(3), _YCBCR_OFFSET[:1])
  return y if isinstance(image, np.ndarray) else y.unsqueeze(1)


def _split(image: np.ndarray | Tensor) -> list:
  if isinstance(image, np.ndarray):
    if image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"expected an HxWx3 array, got shape {image.shape}")
    return [image[..., i] for i in range(3)]
  if image.ndim != 4 or image.shape[1] != 3:
    raise ValueError(f"expected an Nx3xHxW tensor, got shape {image.shape}")
  return [image[:, i] for i in range(3)]


def _convert(image, matrix, offset_in, offset_out):
  planes = _mix_channels(_split(image), matrix, offset_in, offset_out)
  return np.stack(planes, axis=-1) if isinstance(image, np.ndarray) else Tensor.stack(*planes, dim=1)


# ---------------------------------------------------------------------------------------------------------------
# Resize exactly as MATLAB's imresize: for each output pixel a set of input taps and weights along one axis,
# kernel widened by 1/scale when shrinking (antialiasing), symmetric border handling, and axes processed in
# order of increasing scale.


def _cubic(x: np.ndarray) -> np.ndarray:
  ax = np.abs(x)
  ax2, ax3 = ax * ax, ax * ax * ax
  return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
          + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _triangle(x: np.ndarray) -> np.ndarray:
  return (x + 1) * ((x >= -1) & (x < 0)) + (1 - x) * ((x >= 0) & (x <= 1))


def _box(x: np.ndarray) -> np.ndarray:
  return ((x >= -0.5) & (x < 0.5)).astype(np.float64)


# name -> (kernel, support width, antialias when shrinking); MATLAB never antialiases 'nearest'
_KERNELS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], float, bool]] = {
  "bicubic": (_cubic, 4.0, True),
  "bilinear": (_triangle, 2.0, True),
  "nearest": (_box, 1.0, False),
}
RESIZE_METHODS = tuple(_KERNELS)


@lru_cache(maxsize=256)
def resize_weights(in_len: int, out_len: int, scale: float, method: str = "bicubic") -> tuple[np.ndarray, np.ndarray]:
  """Taps of a 1-D MATLAB imresize: (weights, indices), each out_len x P; output[i] = sum_k w[i,k] x[idx[i,k]]."""
  if method not in _KERNELS:
    raise ValueError(f"unknown resize method {method!r}; choose from {', '.join(RESIZE_METHODS)}")
  kernel, width, antialias = _KERNELS[method]
  if scale < 1 and antialias:
    base = kernel
    kernel = lambda x: scale * base(scale * x)  # noqa: E731
    width = width / scale
  u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate
  left = np.floor(u - width / 2)
  taps = int(math.ceil(width)) + 2
  indices = left[:, None] + np.arange(taps)[None, :]
  weights = kernel(u[:, None] - indices)
  weights = weights / weights.sum(axis=1, keepdims=True)
  mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # symmetric padding, 0-based
  indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
  used = np.any(weights != 0, axis=0)
  return weights[:, used], indices[:, used]


def resize_matrix(in_len: int, out_len: int, scale: float, method: str = "bicubic") -> np.ndarray:
  """The same 1-D resize as a dense out_len x in_len matrix (repeated border taps are summed)."""
  weights, indices = resize_weights(in_len, out_len, scale, method)
  matrix = np.zeros((out_len, in_len))
  np.add.at(matrix, (np.repeat(np.arange(out_len), indices.shape[1]), indices.ravel()), weights.ravel())
  return matrix


def _plan(in_size: tuple[int, int], scale: float | tuple[float, float] | None,
          size: tuple[int, int] | None) -> list[tuple[int, int, int, float]]:
  """[(axis, in_len, out_len, scale)] in MATLAB's processing order (smallest scale first, rows on ties)."""
  if (scale is None) == (size is None):
    raise ValueError("give exactly one of scale and size")
  if size is not None:
    out = tuple(int(s) for s in size)
    scales = tuple(o / i for o, i in zip(out, in_size, strict=True))
  else:
    scales = (float(scale), float(scale)) if np.isscalar(scale) else tuple(float(s) for s in scale)
    if min(scales) <= 0:
      raise ValueError(f"scale must be positive, got {scale}")
    out = tuple(int(math.ceil(i * s)) for i, s in zip(in_size, scales, strict=True))
  if min(out) < 1:
    raise ValueError(f"resize of {in_size[0]}x{in_size[1]} gives an empty image")
  order = sorted(range(2), key=lambda a: scales[a])
  return [(a, in_size[a], out[a], scales[a]) for a in order]


def imresize(image: np.ndarray, scale: float | tuple[float, float] | None = None, *,
             size: tuple[int, int] | None = None, method: str = "bicubic") -> np.ndarray:
  """MATLAB imresize on a numpy image (HxW or HxWxC), computed in float64.

  Integer images are converted to float, resized, then rounded and clipped back to their dtype, as MATLAB does
  for uint8/uint16; float images are returned as float64 without clipping.
  """
  src = np.asarray(image)
  out = src.astype(np.float64)
  for axis, in_len, out_len, s in _plan(src.shape[:2], scale, size):
    weights, indices = resize_weights(in_len, out_len, s, method)
    moved = np.moveaxis(out, axis, 0)
    acc = np.zeros((out_len,) + moved.shape[1:])
    shape = (out_len,) + (1,) * (moved.ndim - 1)
    for k in range(weights.shape[1]):  # one tap at a time keeps memory at one output image
      acc += weights[:, k].reshape(shape) * moved[indices[:, k]]
    out = np.moveaxis(acc, 0, axis)
  if np.issubdtype(src.dtype, np.integer):
    info = np.iinfo(src.dtype)
    return np.clip(np.round(out), info.min, info.max).astype(src.dtype)
  return out


def resize(x: Tensor, scale: float | tuple[float, float] | None = None, *, size: tuple[int, int] | None = None,
           method: str = "bicubic") -> Tensor:
  """MATLAB imresize on an NCHW tensor: two matrix products, differentiable, no rounding or clipping."""
  for axis, in_len, out_len, s in _plan(tuple(x.shape[2:]), scale, size):
    matrix = Tensor(resize_matrix(in_len, out_len, s, method).astype(np.float32), device=x.device)
    x = matrix.matmul(x) if axis == 0 else x.matmul(matrix.T)
  return x


@lru_cache(maxsize=32)
def upsample_taps(scale: int, method: str = "bicubic") -> tuple[np.ndarray, int]:
  """The 1-D taps of an integer MATLAB imresize upscale, which repeat with period `scale`: (weights, first) where
  output pixel n*scale + p is sum_k weights[p, k] * x[n + first + k] (symmetric padding beyond the edges)."""
  probe = 8 + 2 * int(math.ceil(_KERNELS[method][1]))  # interior enough that no tap is mirrored
  weights, indices = resize_weights(probe, probe * scale, float(scale), method)
  centre = probe // 2
  rows = weights[centre * scale: (centre + 1) * scale]
  offsets = indices[centre * scale: (centre + 1) * scale] - centre
  first, last = int(offsets.min()), int(offsets.max())
  dense = np.zeros((scale, last - first + 1))
  for p in range(scale):
    for w, o in zip(rows[p], offsets[p], strict=True):
      dense[p, o - first] += w
  return dense, first


def _symmetric_pad(x: Tensor, before: int, after: int, axis: int) -> Tensor:
  """Pad one axis by mirroring with the edge repeated (MATLAB's 'symmetric', numpy's mode='symmetric')."""
  pieces = []
  if before:
    pieces.append(x.shrink(tuple((0, before) if a == axis else None for a in range(x.ndim))).flip(axis))
  pieces.append(x)
  if after:
    n = x.shape[axis]
    pieces.append(x.shrink(tuple((n - after, n) if a == axis else None for a in range(x.ndim))).flip(axis))
  return Tensor.cat(*pieces, dim=axis) if len(pieces) > 1 else x


def pad_symmetric(x: Tensor, pad: int) -> Tensor:
  """Extend the last two axes of `x` by `pad` pixels on every side, mirrored with the edge repeated (numpy's
  mode='symmetric'); a pad wider than the image mirrors the extended image again, as numpy does."""
  for axis in (x.ndim - 2, x.ndim - 1):
    before = after = pad
    while before or after:
      step_before, step_after = min(before, x.shape[axis]), min(after, x.shape[axis])
      x = _symmetric_pad(x, step_before, step_after, axis)
      before, after = before - step_before, after - step_after
  return x


def upsample(x: Tensor, scale: int, method: str = "bicubic") -> Tensor:
  """MATLAB imresize of an NCHW tensor by an integer `scale` (no rounding or clipping): the same values as
  `resize(x, scale)`, computed as one small convolution per output phase and a pixel shuffle instead of two dense
  matrix products, so its cost grows with the pixels, not their square. Sides of at least 2 px."""
  if scale == 1:
    return x
  taps, first = upsample_taps(scale, method)
  size = taps.shape[1]
  n, c, h, w = x.shape
  padded = _symmetric_pad(_symmetric_pad(x.reshape(n * c, 1, h, w), -first, size - 1 + first, 2),
                          -first, size - 1 + first, 3)
  # phase (p, q) of the output is the outer product of the row taps of p and the column taps of q
  kernel = np.einsum("pa,qb->pqab", taps, taps).reshape(scale * scale, 1, size, size)
  phases = conv2d(padded, Tensor(kernel.astype(np.float32), device=x.device).cast(x.dtype))
  return pixel_shuffle(phases, scale).reshape(n, c, h * scale, w * scale)


def lanczos_shift_taps(shift: float, reach: int) -> np.ndarray:
  """The 1-D taps that resample a signal at `shift` pixels: 3 sin(u) sin(u/3) / u^2 with u = pi (j - shift) + 0.001
  at j = -reach..reach, unwindowed and unnormalised, as WorldStrat's metric has them (the 0.001 avoids u = 0)."""
  u = math.pi * (np.arange(-reach, reach + 1) - shift) + 0.001
  return 3 * np.sin(u) * np.sin(u / 3) / (u * u)


def shift_image(image: np.ndarray, dy: float, dx: float) -> np.ndarray:
  """An HxW or HxWxC float image resampled at (y + dy, x + dx): Lanczos-3 taps normalised to sum 1, edges
  repeated. Sub-pixel misregistration, as between two satellite revisits."""
  out = np.asarray(image, dtype=np.float64)
  for axis, shift in ((0, dy), (1, dx)):
    if shift == 0:
      continue
    reach = 3 + math.ceil(abs(shift))
    taps = lanczos_shift_taps(shift, reach)
    taps = taps / taps.sum()
    padded = np.pad(out, [(reach, reach) if a == axis else (0, 0) for a in range(out.ndim)], mode="edge")
    length = out.shape[axis]
    out = sum(taps[j] * np.take(padded, np.arange(j, j + length), axis=axis) for j in range(taps.size))
  return out


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crop the bottom and right so both sides are multiples of scale (the protocol's first step)."""
  h, w = image.shape[:2]
  return image[: h - h % scale, : w - w % scale]
