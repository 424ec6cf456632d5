"""Running a model on an image from Python: thin names over supertiny.runtime's Runner, which every image path
(eval, upscale, compare, the Python API) goes through."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .models.registry import SRModel
from .runtime.runner import runner_for


def upscale_tiled(model: SRModel, image: np.ndarray, tile: int = 256, overlap: int | None = None,
                  alpha: bool | None = None, progress: Callable[[int, int], None] | None = None,
                  cores: int | None = None, value_range: tuple[float, float] | None = None,
                  data_range: tuple[float, float] | None = None, fixed_tile: bool = False) -> np.ndarray:
  """Super-resolve an image (HxW or HxWxC; uint8, uint16 or float) tile by tile into one of the same dtype: see
  supertiny.runtime.runner.Runner; HxWxC out, whatever came in. `progress(done, total)` is called after each
  group of tiles; `value_range`: the stored values that mean 0 and 1 (a radiometry's); `data_range`: the whole
  image's range, for a piece of it; `fixed_tile`: tiles of exactly `tile` px (see Runner)."""
  image = np.asarray(image)
  runner = runner_for(model, cores, tile, overlap, fixed_tile)
  return runner(image[:, :, None] if image.ndim == 2 else image, alpha, progress, value_range, data_range)


def upscale_array(model: SRModel, image: np.ndarray) -> np.ndarray:
  """Super-resolve an integer image (uint8 or uint16, HxWxC) into an integer image of the same dtype."""
  return upscale_tiled(model, image)


def super_resolve(model: SRModel, image: np.ndarray, alpha: bool | None = None) -> np.ndarray:
  """Super-resolve a float image in [0, 1] (HxW or HxWxC) with `model`; returns float32 HxWxC in [0, 1].

  Y-channel models (channels=1) see the Y of colour images while Cb and Cr are upscaled with bicubic; RGB models
  see grayscale images as three equal channels; alpha is upscaled with bicubic; models with channels=None take
  every channel as it is. `alpha` says whether the last band is alpha (None: it is for 2- and 4-band images,
  unless the model takes that many channels).
  """
  image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
  return upscale_tiled(model, image, alpha=alpha)
