"""PSNR and SSIM exactly as the super-resolution literature reports them.

The protocol (see docs/evaluation.md): both images are quantised to 8-bit values, compared on the Y channel of
MATLAB's rgb2ycbcr (single-channel images as they are), with `scale` pixels shaved from every border; PSNR with
peak 255; SSIM as Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, valid region).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .ops import rgb_to_y

PEAK = 255.0


def _shave(image: np.ndarray, border: int) -> np.ndarray:
  if border <= 0:
    return image
  if min(image.shape[:2]) <= 2 * border:
    raise ValueError(f"image of {image.shape[1]}x{image.shape[0]} is too small to shave {border} px per border")
  return image[border:-border, border:-border]


def psnr(image: np.ndarray, reference: np.ndarray, shave: int = 0, peak: float = PEAK) -> float:
  """PSNR in dB between two arrays of the same shape holding values in [0, peak]."""
  if image.shape != reference.shape:
    raise ValueError(f"shapes differ: {image.shape} vs {reference.shape}")
  diff = _shave(image.astype(np.float64), shave) - _shave(reference.astype(np.float64), shave)
  mse = float(np.mean(diff * diff))
  return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """Normalised 1-D Gaussian; its outer product is MATLAB's fspecial('gaussian', size, sigma)."""
  x = np.arange(size) - (size - 1) / 2
  g = np.exp(-(x * x) / (2 * sigma * sigma))
  return g / g.sum()


def _filter_valid(plane: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Separable 2-D correlation, 'valid' region only (MATLAB filter2(..., 'valid'))."""
  rows = sliding_window_view(plane, window.size, axis=0) @ window
  return sliding_window_view(rows, window.size, axis=1) @ window


def ssim(image: np.ndarray, reference: np.ndarray, shave: int = 0, peak: float = PEAK) -> float:
  """SSIM (Wang et al. 2004) between two HxW or HxWxC arrays in [0, peak]; multi-channel: mean over channels."""
  if image.shape != reference.shape:
    raise ValueError(f"shapes differ: {image.shape} vs {reference.shape}")
  a = _shave(image.astype(np.float64), shave)
  b = _shave(reference.astype(np.float64), shave)
  if a.ndim == 3:
    return float(np.mean([ssim(a[..., c], b[..., c], 0, peak) for c in range(a.shape[2])]))
  window = gaussian_window()
  if min(a.shape) < window.size:
    raise ValueError(f"image of {a.shape[1]}x{a.shape[0]} (after shave) is smaller than the 11x11 SSIM window")
  c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
  mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
  var_a = _filter_valid(a * a, window) - mu_a * mu_a
  var_b = _filter_valid(b * b, window) - mu_b * mu_b
  cov = _filter_valid(a * b, window) - mu_a * mu_b
  ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
  return float(ssim_map.mean())


def to_metric_space(image: np.ndarray, space: str = "y") -> np.ndarray:
  """A float image in [0, 1] (HxW or HxWxC) -> the array the metrics compare, in [0, 255].

  `space="y"`: colour images become MATLAB's Y channel, rounded to integers as MATLAB's uint8 rgb2ycbcr does;
  single-channel images stay as they are. `space="rgb"`: all channels, as 8-bit values.
  """
  if space not in ("y", "rgb"):
    raise ValueError(f"unknown metric space {space!r}: use 'y' or 'rgb'")
  if image.ndim == 3 and image.shape[2] == 1:
    image = image[..., 0]
  if space == "y" and image.ndim == 3:
    if image.shape[2] != 3:
      raise ValueError(f"the Y channel needs 1 or 3 channels, got {image.shape[2]}")
    return np.round(rgb_to_y(np.round(image * 255) / 255) * 255)
  return np.round(image * 255)


def evaluate_pair(sr: np.ndarray, hr: np.ndarray, scale: int, space: str = "y",
                  shave: int | None = None) -> tuple[float, float]:
  """(PSNR, SSIM) of a super-resolved float image against its ground truth, by the protocol."""
  border = scale if shave is None else shave
  a, b = to_metric_space(sr, space), to_metric_space(hr, space)
  return psnr(a, b, border), ssim(a, b, border)
