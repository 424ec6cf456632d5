"""The benchmark protocol: modcrop, MATLAB-bicubic degradation, super-resolve, PSNR/SSIM on Y with border shave.

Input rules (documented in docs/evaluation.md): alpha is dropped (only colour is scored); 16-bit images are
degraded and rounded at 16 bits, then scored on 8-bit values like every other image; grayscale images are scored
on their single channel; sizes that are not multiples of the scale are cropped at the bottom and right.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.images import list_images, to_float
from .data.pairs import degrade, load_pair, load_raster_pair, match_lr_files, min_side  # noqa: F401  (public names)
from .errors import SuperTinyError
from .infer import upscale_tiled
from .metrics import corrected_metrics, evaluate_pair
from .models.registry import SRModel
from .ops import rgb_to_y


@dataclass
class ImageScore:
  name: str
  psnr: float
  ssim: float


@dataclass
class DatasetScore:
  name: str
  images: list[ImageScore] = field(default_factory=list)

  @property
  def psnr(self) -> float:
    return float(np.mean([s.psnr for s in self.images]))

  @property
  def ssim(self) -> float:
    return float(np.mean([s.ssim for s in self.images]))


METRICS = ("psnr", "cpsnr")


def score(sr: np.ndarray, hr: np.ndarray, scale: int, space: str = "y", metric: str = "psnr",
          window: str = "symmetric") -> tuple[float, float]:
  """(PSNR, SSIM) of an integer SR image against its integer HR image: by the protocol (`metric="psnr"`), or
  shift- and brightness-corrected (`"cpsnr"`: cPSNR and cSSIM at peak 1 on float values, for satellite pairs
  that are never perfectly registered; `window` as in metrics.corrected_metrics)."""
  if metric == "psnr":
    return evaluate_pair(to_float(sr), to_float(hr), scale, space)
  if metric != "cpsnr":
    raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
  return corrected_score(to_float(sr), to_float(hr), space, window)


def corrected_score(sr: np.ndarray, hr: np.ndarray, space: str = "y", window: str = "symmetric") -> tuple[float, float]:
  """(cPSNR, cSSIM) of float HxWxC images where 1 is full scale; `space="y"` scores the Y of RGB images."""
  sr, hr = sr.astype(np.float64), hr.astype(np.float64)
  if space == "y" and sr.ndim == 3 and sr.shape[2] == 3:
    sr, hr = rgb_to_y(sr), rgb_to_y(hr)
  corrected = corrected_metrics(sr, hr, window=window)
  return corrected.psnr, corrected.ssim


def _whole_if_global(model: SRModel, lr: np.ndarray) -> int:
  """Tile size for scoring: models with a finite receptive field are tiled exactly, as upscale does; global ones
  (SwinIR, the convolution-transformer) see the whole image, as their published scores do."""
  return max(lr.shape[:2]) if getattr(model, "receptive_field", None) is None else 256


def evaluate_folder(model: SRModel, folder: str | Path, scale: int, lr_folder: str | Path | None = None,
                    space: str = "y", progress: Callable[[str], None] | None = None, last: int = 0,
                    metric: str = "psnr", window: str = "symmetric") -> DatasetScore:
  """Score `model` on every image of an HR folder (the dataset is named after the folder), or on its `last`
  images by name (a held-back validation part), with `metric` (see `score`)."""
  folder = Path(folder)
  hr_files = list_images(folder)[-last:] if last else list_images(folder)
  lr_files = match_lr_files(hr_files, lr_folder) if lr_folder is not None else {}
  result = DatasetScore(folder.resolve().name)
  for path in hr_files:
    if metric == "cpsnr":  # satellite pairs: float rasters as they are, nothing rounded
      lr, hr = load_raster_pair(path, scale, lr_files.get(path))
      sr = upscale_tiled(model, lr.astype(np.float32), tile=_whole_if_global(model, lr), value_range=(0.0, 1.0))
      p, s = corrected_score(sr, hr, space, window)
    else:
      lr, hr = load_pair(path, scale, lr_files.get(path))
      p, s = score(upscale_tiled(model, lr, tile=_whole_if_global(model, lr)), hr, scale, space, metric, window)
    result.images.append(ImageScore(path.stem, p, s))
    if progress is not None:
      progress(path.name)
  return result


def evaluate_worldstrat(model: SRModel, root: str | Path, split: str = "test", window: str = "symmetric",
                        progress: Callable[[str], None] | None = None, protocol: str = "aoi") -> DatasetScore:
  """Score `model` on a WorldStrat split (supertiny.data.worldstrat) by cPSNR/cSSIM against the SPOT
  R, G, B (over 10000), with the brightness and shift correction that also absorbs the two sensors' calibration
  offsets. `protocol` "aoi": each AOI's clearest L2A revisit in true colour (B04, B03, B02 reflectance) upscaled by
  the model's integer scale and resampled to the HR grid with MATLAB bicubic (WorldStrat's ratio is not an
  integer: 10 m to 1.5 m), one score per AOI. "benchmark": the released benchmark's way, the first revisit cut
  into its 9 chips (data.worldstrat.benchmark_chips), each upscaled and resized bilinearly to its 156x156 HR chip,
  one score per chip. A multi-revisit model (`revisits` k > 1: fusion, or any model built with revisits=k) gets
  the k clearest revisits (the first k for "benchmark") stacked, clipped to [0, 1]."""
  from .data.worldstrat import WorldStrat, benchmark_chips, revisit_stack
  from .ops import imresize
  from .runtime.runner import forward_batch

  if protocol not in ("aoi", "benchmark"):
    raise SuperTinyError(f"unknown WorldStrat protocol {protocol!r}: use aoi or benchmark")
  benchmark = protocol == "benchmark"
  k, masks = getattr(model, "revisits", 1), getattr(model, "revisit_masks", False)
  if (k > 1 or masks) and model.channels != 3:
    raise SuperTinyError(f"{model.name}: a multi-revisit model is scored on WorldStrat in true colour (channels 3), "
                         f"not {model.channels}")
  dataset = WorldStrat(root, split, revisits=k, select="first" if benchmark else "clearest", bands="rgb")
  result = DatasetScore(f"WorldStrat {split}" + (" (benchmark chips)" if benchmark else ""))
  for sample in dataset:
    parts = [(c.name, c.lr, c.clear, c.hr) for c in benchmark_chips(sample)] if benchmark else \
        [(sample.name, sample.lr, sample.clear, sample.hr)]
    for name, views, clear, hr_bands in parts:
      hr = np.moveaxis(hr_bands, 0, -1)
      if k > 1 or masks:  # a revisit stack is not an image: the model sees it whole
        stack = revisit_stack(np.clip(views, 0.0, 1.0), clear, masks)
        sr = np.moveaxis(forward_batch(model, stack[None].astype(np.float32))[0], 0, -1)
      else:
        lr = np.moveaxis(views[0], 0, -1)
        sr = upscale_tiled(model, lr, tile=_whole_if_global(model, lr), value_range=(0.0, 1.0))
      on_grid = imresize(sr.astype(np.float64), size=hr.shape[:2], method="bilinear" if benchmark else "bicubic")
      result.images.append(ImageScore(name, *corrected_score(on_grid, hr, "rgb", window)))
    if progress is not None:
      progress(sample.name)
  return result
