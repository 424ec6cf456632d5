"""The protocol's image pairs: an HR image modcropped, and its LR image degraded from it with MATLAB bicubic (or read
from a folder of given LR images and checked against it). Shared by evaluation and training data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SuperTinyError
from ..metrics import gaussian_window
from ..ops import imresize, modcrop
from .cache import cached_degrade
from .images import list_images, read_image, to_float
from .raster import read_raster


def colour_only(array: np.ndarray, path: Path) -> np.ndarray:
  bands = array.shape[2]
  if bands in (2, 4):
    return array[..., :-1]  # alpha carries no detail to score or learn
  if bands not in (1, 3):
    raise SuperTinyError(f"{path}: {bands}-band images are not supported here (Y needs gray or RGB images)")
  return array


def min_side(scale: int) -> int:
  """Smallest HR side the protocol can score: the shave on both borders plus one SSIM window."""
  return 2 * scale + gaussian_window().size


def _check_size(array: np.ndarray, scale: int, path: Path) -> None:
  h, w = array.shape[:2]
  if min(h, w) < min_side(scale):
    raise SuperTinyError(f"{path}: {w}x{h} is too small to evaluate at x{scale} "
                         f"(needs at least {min_side(scale)} px per side)")


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
  """The protocol's LR image: MATLAB bicubic downscale of a modcropped integer image, rounded to its dtype."""
  return imresize(hr, 1.0 / scale)


def load_pair(hr_path: Path, scale: int, lr_path: Path | None = None, check_size: bool = True,
              cache: Path | None = None, rescale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """(LR, HR) integer arrays for one image: HR modcropped, LR degraded from it or read from lr_path.

  `check_size` refuses images too small to score (training pairs only need to be at least one LR pixel); `cache`
  is a folder that keeps degraded images between runs (data.cache); `rescale` resizes the HR image first (MATLAB
  bicubic, rounded to its dtype: training-set augmentation)."""
  hr = colour_only(read_image(hr_path), hr_path)
  if rescale != 1.0:
    if lr_path is not None:
      raise ValueError("rescale makes a new HR image: it has no given LR image")
    hr = imresize(hr, rescale)
  if check_size:
    _check_size(hr, scale, hr_path)
  elif min(hr.shape[:2]) < scale:
    raise SuperTinyError(f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}")
  hr = modcrop(hr, scale)
  if lr_path is None:
    return (degrade(hr, scale) if cache is None else cached_degrade(hr, scale, degrade, cache)), hr
  lr = colour_only(read_image(lr_path), lr_path)
  if lr.shape[2] != hr.shape[2]:
    raise SuperTinyError(f"{lr_path}: {lr.shape[2]} channels but its HR image {hr_path.name} has {hr.shape[2]}")
  want = (lr.shape[0] * scale, lr.shape[1] * scale)
  if hr.shape[0] < want[0] or hr.shape[1] < want[1] or hr.shape[0] - want[0] >= scale or hr.shape[1] - want[1] >= scale:
    raise SuperTinyError(f"{lr_path}: {lr.shape[1]}x{lr.shape[0]} times {scale} does not match its HR image "
                         f"{hr_path.name} ({hr.shape[1]}x{hr.shape[0]} after modcrop)")
  return lr, hr[: want[0], : want[1]]


def load_raster_pair(hr_path: Path, scale: int, lr_path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(LR, HR) as float64 HxWxC for satellite pairs scored with shift correction: float rasters (reflectance) as
  they are, integers over their dtype's range; HR modcropped; LR read from lr_path (it must be HR / scale) or
  degraded from HR with MATLAB bicubic, not rounded."""
  def as_float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) if pixels.dtype.kind == "f" else to_float(pixels)

  hr = modcrop(as_float(read_raster(hr_path).pixels), scale)
  if lr_path is None:
    return imresize(hr, 1.0 / scale), hr
  lr = as_float(read_raster(lr_path).pixels)
  expected = (hr.shape[0] // scale, hr.shape[1] // scale, hr.shape[2])
  if lr.shape != expected:
    raise SuperTinyError(f"{lr_path}: {lr.shape[1]}x{lr.shape[0]}x{lr.shape[2]}, expected "
                         f"{expected[1]}x{expected[0]}x{expected[2]} for {hr_path} at x{scale}")
  return lr, hr


def match_lr_files(hr_files: list[Path], lr_folder: str | Path) -> dict[Path, Path]:
  """HR file -> the LR file of the same name (suffix aside) in lr_folder; every HR file must have one."""
  lr_by_stem = {p.stem: p for p in list_images(lr_folder)}
  missing = [p for p in hr_files if p.stem not in lr_by_stem]
  if missing:
    raise SuperTinyError(f"{missing[0]}: no LR image with the same name in {lr_folder}"
                         + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
  return {p: lr_by_stem[p.stem] for p in hr_files}
