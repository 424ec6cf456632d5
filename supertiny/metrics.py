"""PSNR and SSIM exactly as the super-resolution literature reports them.

The protocol (see docs/evaluation.md): both images are quantised to 8-bit values, compared on the Y channel of
MATLAB's rgb2ycbcr (single-channel images as they are), with `scale` pixels shaved from every border; PSNR with
peak 255; SSIM as Wang et al. 2004 (11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, valid region).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .ops import lanczos_shift_taps, rgb_to_y

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


# -- shift- and brightness-corrected metrics for satellite pairs (WorldStrat, PROBA-V style) -----------------------

@dataclass(frozen=True)
class CorrectedScore:
  """cPSNR (dB, peak 1), cSSIM and MAE of one SR/HR pair at the (rows, cols) shift of the HR that fit best."""
  psnr: float
  ssim: float
  mae: float
  shift: tuple[float, float]


def _ssim_same(a: np.ndarray, b: np.ndarray, size: int = 5, sigma: float = 1.5) -> np.ndarray:
  """kornia's SSIM map: a size x size Gaussian window, same-size output with reflected borders, C1 = 0.01^2,
  C2 = 0.03^2 at peak 1. a, b: HxW."""
  window = gaussian_window(size, sigma)
  pad = size // 2

  def blur(plane: np.ndarray) -> np.ndarray:
    return _filter_valid(np.pad(plane, pad, mode="reflect"), window)

  mu_a, mu_b = blur(a), blur(b)
  var_a, var_b = blur(a * a) - mu_a * mu_a, blur(b * b) - mu_b * mu_b
  cov = blur(a * b) - mu_a * mu_b
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))


def corrected_metrics(sr: np.ndarray, hr: np.ndarray, clear: np.ndarray | None = None, shift_px: float = 2,
                      step: float = 0.5, window: str = "symmetric") -> CorrectedScore:
  """Shift- and brightness-corrected PSNR/SSIM of an SR image against its HR (HxW or HxWxC, values in [0, 1] or any
  units where 1 is full scale), as WorldStrat scores its benchmark (docs/satellite.md has the definition):

  1. the SR takes each channel's mean difference to the HR (over clear pixels when `clear`, an HxW boolean mask of
     the pixels to score, is given);
  2. the HR is resampled at every (rows, cols) shift in [-shift_px, shift_px] by `step` with unnormalised
     Lanczos-3 taps (a 'valid' correlation: the candidates lose the taps' reach on every side);
  3. the SR, cropped to match, is compared with each candidate; the lowest MSE picks the shift, and PSNR, MAE and
     SSIM (kornia's: 5x5 Gaussian window, reflected borders) are taken there.

  `window="symmetric"` (default) compares SR pixel m with the HR at m + t, with taps normalised to sum 1;
  `window="original"` reproduces the released code exactly: unnormalised taps, and a crop that compares m with
  m + reach - shift_px + t, so that a perfectly registered SR is scored at a one-pixel offset or more."""
  if window not in ("symmetric", "original"):
    raise ValueError(f"unknown shift window {window!r}: use 'symmetric' or 'original'")
  if sr.shape != hr.shape:
    raise ValueError(f"shapes differ: {sr.shape} vs {hr.shape}")
  sr64, hr64 = sr.astype(np.float64), hr.astype(np.float64)
  if sr64.ndim == 2:
    sr64, hr64 = sr64[..., None], hr64[..., None]
  height, width, _ = hr64.shape
  reach = 3 + math.ceil(shift_px)
  out_h, out_w = height - 2 * reach, width - 2 * reach
  if out_h < 1 or out_w < 1:
    raise ValueError(f"image of {width}x{height} is too small for a +-{shift_px} px shift search")
  if clear is not None and clear.shape != (height, width):
    raise ValueError(f"mask of {clear.shape[::-1]} does not match the image's {width}x{height}")
  scored = np.ones((height, width), bool) if clear is None else clear.astype(bool)
  if not scored.any():
    raise ValueError("no clear pixel to score")
  bias = (hr64 - sr64)[scored].mean(axis=0)
  corrected = sr64 + bias
  offset = reach if window == "symmetric" else math.ceil(shift_px)
  crop = corrected[offset: offset + out_h, offset: offset + out_w]
  inside = scored[offset: offset + out_h, offset: offset + out_w]
  if not inside.any():
    raise ValueError("no clear pixel inside the scored region")
  shifts = np.arange(-shift_px, shift_px + step / 2, step)
  taps = {t: lanczos_shift_taps(t, reach) for t in shifts}
  if window == "symmetric":  # taps that sum to 1: no gain error at half-pixel shifts (up to 2.6% in the original)
    taps = {t: k / k.sum() for t, k in taps.items()}
  # rows first (one pass per row shift), then columns: every (ty, tx) candidate from 2 x len(shifts) passes
  rows = {t: np.einsum("khwc,k->hwc", sliding_window_view(hr64, 2 * reach + 1, axis=0).transpose(3, 0, 1, 2), k)
          for t, k in taps.items()}
  best = (math.inf, 0.0, 0.0)
  col_taps = taps
  for ty, filtered in rows.items():
    windows = sliding_window_view(filtered, 2 * reach + 1, axis=1)  # h', w', c, taps
    for tx, taps in col_taps.items():
      candidate = windows @ taps
      mse = float(np.mean((crop - candidate)[inside] ** 2))
      if mse < best[0]:
        best = (mse, float(ty), float(tx))
  mse, ty, tx = best
  candidate = sliding_window_view(rows[ty], 2 * reach + 1, axis=1) @ col_taps[tx]
  ssim_maps = np.stack([_ssim_same(crop[..., c], candidate[..., c]) for c in range(crop.shape[2])], axis=-1)
  return CorrectedScore(psnr=math.inf if mse == 0 else -10 * math.log10(mse),
                        ssim=float(ssim_maps[inside].mean()),
                        mae=float(np.abs(crop - candidate)[inside].mean()), shift=(ty, tx))
