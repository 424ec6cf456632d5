"""Running a model on an image: colour handling (Y models, grayscale, alpha, bands) around the tensor call, and
tiled inference for images of any size."""

from __future__ import annotations

import hashlib
import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tinygrad import Tensor
from tinygrad.nn.state import get_parameters

from .cores import CorePool, DeviceRunner, core_devices, host_array
from .data.images import from_float, to_float
from .errors import SuperTinyError
from .models.registry import SRModel
from .ops import imresize, rgb_to_ycbcr, ycbcr_to_rgb


def model_input(model: SRModel, planes: np.ndarray) -> Tensor:
  """HxWxC float array -> the model's 1xCxHxW input, in its weights' dtype: a model made under DEFAULT_FLOAT=HALF
  then computes in half precision (a float32 input would promote every layer back to float32)."""
  x = Tensor(np.ascontiguousarray(planes.transpose(2, 0, 1)[None], dtype=np.float32))
  params = model.parameters()
  if params and isinstance(params[0].device, tuple):
    x = x.shard(params[0].device)  # weights replicated over several devices (data-parallel training)
  return x.cast(params[0].dtype) if params and params[0].dtype != x.dtype else x


def model_output(out: Tensor) -> np.ndarray:
  """The model's 1xCxHxW output -> HxWxC float64 (a copy)."""
  return out.float().numpy()[0].transpose(1, 2, 0).astype(np.float64)


def run_model(model: SRModel, planes: np.ndarray) -> np.ndarray:
  """HxWxC float array in [0, 1] -> the model's HxWxC output (unclipped); one tensor call."""
  return model_output(model(model_input(model, planes)))


class PlaneRunner:
  """super_resolve's `run` through one device's jitted copy of the model: after two calls per input shape a tile
  replays the captured kernels instead of being scheduled again, and its input is copied into the jit's input
  buffer instead of becoming a new tensor."""

  def __init__(self, runner: DeviceRunner):
    self.runner = runner

  def __call__(self, model: SRModel, planes: np.ndarray) -> np.ndarray:
    out = self.runner(np.ascontiguousarray(planes.transpose(2, 0, 1)[None], dtype=np.float32))
    return out[0].transpose(1, 2, 0).astype(np.float64)


_POOLS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {devices: (weights digest, CorePool)}


def weights_digest(model: SRModel) -> bytes:
  """A digest of every parameter's values (and BatchNorm statistics): it changes when the model is trained."""
  digest = hashlib.blake2b(digest_size=16)
  for p in get_parameters(model):
    digest.update(host_array(p).tobytes())
  return digest.digest()


def core_pool(model: SRModel, cores: int | None = None) -> CorePool:
  """The model's CorePool over `cores` CPU cores (None: SUPERTINY_CORES or all; on a GPU, the GPU), cached. The
  pool's jits read the weights' buffers as they were captured, and its copies on other cores are copies, so it is
  made again when the weights have changed since (a model trained further, or loaded anew, in the same process)."""
  devices = core_devices(cores)
  pools = _POOLS.get(model) or _POOLS.setdefault(model, {})
  digest = weights_digest(model)
  if devices not in pools or pools[devices][0] != digest:
    pools[devices] = (digest, CorePool(model, devices))
  return pools[devices][1]


def guess_alpha(model: SRModel, bands: int) -> bool:
  """Whether the last band of an image with no alpha flag is alpha: it is for 2- and 4-band images, unless the
  model takes that many channels (a model made for this band count takes them all)."""
  return bands in (2, 4) and model.channels != bands


def super_resolve(model: SRModel, image: np.ndarray, run: Callable[[SRModel, np.ndarray], np.ndarray] = run_model,
                  alpha: bool | None = None) -> np.ndarray:
  """Super-resolve a float image in [0, 1] (HxW or HxWxC) with `model`; returns float HxWxC in [0, 1].

  Y-channel models (channels=1) see the Y of colour images while Cb and Cr are upscaled with bicubic; RGB models
  see grayscale images as three equal channels; alpha is upscaled with bicubic; models with channels=None take
  every channel as it is. `alpha` says whether the last band is alpha (None: it is for 2- and 4-band images,
  unless the model takes that many channels).
  """
  if image.ndim == 2:
    image = image[:, :, None]
  bands = image.shape[2]
  if alpha is None:
    alpha = guess_alpha(model, bands)
  alpha_plane = None
  if alpha and model.channels is not None:
    image, alpha_plane = image[..., :-1], image[..., -1:]
    bands -= 1
  if model.channels is None:
    out = run(model, image)
  elif model.channels == bands:
    out = run(model, image)
  elif model.channels == 1 and bands == 3:
    ycbcr = rgb_to_ycbcr(image)
    luma = run(model, ycbcr[..., :1])
    chroma = imresize(ycbcr[..., 1:], float(model.scale))
    out = ycbcr_to_rgb(np.concatenate([luma, chroma], axis=2))
  elif model.channels == 3 and bands == 1:
    out = run(model, np.repeat(image, 3, axis=2)).mean(axis=2, keepdims=True)
  elif model.channels == 1:
    out = np.concatenate([run(model, image[..., b:b + 1]) for b in range(bands)], axis=2)
  else:
    raise SuperTinyError(f"model {model.name!r} takes {model.channels} channels; the image has {bands}")
  if alpha_plane is not None:
    out = np.concatenate([out, imresize(alpha_plane, float(model.scale))], axis=2)
  return np.clip(out, 0.0, 1.0)


def upscale_array(model: SRModel, image: np.ndarray) -> np.ndarray:
  """Super-resolve an integer image (uint8 or uint16, HxWxC) into an integer image of the same dtype."""
  return from_float(super_resolve(model, to_float(image)), image.dtype)


# ---------------------------------------------------------------------------------------------------------------
# Tiled inference. The image is cut into tiles of `tile` LR pixels that overlap by at least `overlap`; only one
# tile at a time is on the device. Every LR pixel (and the HR pixels it becomes) is taken from the tile it lies
# deepest inside. When that depth covers the model's reach (half its receptive field) everywhere, the tiled image
# equals the untiled one exactly; otherwise (global models, small overlaps) tiles are feathered together with
# weights that fall linearly to the tile edges, which hides the seams.


@dataclass(frozen=True)
class TilePlan:
  """Where the tiles of one axis start, their size, and each tile's per-pixel weight along the axis."""
  starts: tuple[int, ...]
  size: int
  weights: tuple[np.ndarray, ...]
  exact: bool


def reach(model: SRModel, bands: int, alpha: bool) -> int | None:
  """LR pixels on each side that an output pixel may depend on; None for global models."""
  if model.receptive_field is None:
    return None
  # Y models upscale chroma, and every model upscales alpha, with bicubic (4 taps)
  side_paths = model.channels is not None and (alpha or (model.channels == 1 and bands == 3))
  return math.ceil(max(model.receptive_field, 4 if side_paths else 1) / 2)


def plan_axis(length: int, tile: int, overlap: int, context: int | None) -> TilePlan:
  """Tiles of `tile` pixels over `length`, neighbours overlapping by at least `overlap`."""
  if length <= tile:
    return TilePlan((0,), length, (np.ones(length),), True)
  count = math.ceil((length - overlap) / (tile - overlap))
  starts = tuple(round(i * (length - tile) / (count - 1)) for i in range(count))
  x = np.arange(length)
  depth = np.full((count, length), -1.0)
  for i, a in enumerate(starts):
    inside = (x >= a) & (x < a + tile)
    before = x - a if a > 0 else np.full(length, np.inf)
    after = a + tile - 1 - x if a + tile < length else np.full(length, np.inf)
    depth[i, inside] = np.minimum(before, after)[inside]
  owner = depth.argmax(axis=0)
  exact = context is not None and bool(np.all(depth[owner, x] >= context))
  if exact:
    full = [(owner == i).astype(np.float64) for i in range(count)]
  else:
    full = [np.where(depth[i] >= 0, np.minimum(depth[i] + 1, max(overlap, 1)), 0.0) for i in range(count)]
  return TilePlan(starts, tile, tuple(w[a: a + tile] for w, a in zip(full, starts, strict=True)), exact)


def value_range(image: np.ndarray) -> tuple[float, float]:
  """The values that map to [0, 1] for the model: the dtype's range for integers; for floats [0, 1] when the data
  lies inside it, else the data's own finite minimum and maximum (reflectances, digital numbers stored as float)."""
  if image.dtype.kind in "ui":
    return 0.0, float(np.iinfo(image.dtype).max)
  finite = image[np.isfinite(image)]
  if finite.size == 0:
    return 0.0, 1.0
  lo, hi = float(finite.min()), float(finite.max())
  if lo >= 0.0 and hi <= 1.0:
    return 0.0, 1.0
  return lo, hi if hi > lo else lo + 1.0


def upscale_tiled(model: SRModel, image: np.ndarray, tile: int = 256, overlap: int | None = None,
                  alpha: bool | None = None, progress: Callable[[int, int], None] | None = None,
                  cores: int | None = None) -> np.ndarray:
  """Super-resolve an image (HxW or HxWxC; uint8, uint16 or float) tile by tile into one of the same dtype.

  `tile` and `overlap` are in LR pixels (overlap None: the model's receptive field, or 32 for global models).
  Integers map to [0, 1] by their dtype's range, floats as value_range says; the output is clipped to that range.
  Working memory is one row of tiles in float64 at the output resolution plus the output itself.
  `alpha`: whether the last band is alpha (None: for 2- and 4-band images). `progress(done, total)` is called
  after each tile. On the CPU, tiles run `cores` at a time, one per core (None: SUPERTINY_CORES or every core);
  the result does not depend on it.
  """
  if image.ndim == 2:
    image = image[:, :, None]
  height, width, bands = image.shape
  if alpha is None:
    alpha = guess_alpha(model, bands)
  lo, hi = value_range(image)
  context = reach(model, bands, alpha)
  if overlap is None:
    overlap = 2 * context if context is not None else 32
  if tile < 1 or overlap < 0:
    raise SuperTinyError(f"tile must be positive and overlap non-negative (got tile {tile}, overlap {overlap})")
  if tile <= overlap and max(height, width) > tile:
    raise SuperTinyError(f"tile {tile} must be larger than the overlap {overlap}")
  rows, cols = plan_axis(height, tile, overlap, context), plan_axis(width, tile, overlap, context)
  if not (rows.exact and cols.exact):
    warnings.warn(f"tiles overlap by {overlap} px, less than {model.name}'s receptive field needs "
                  f"({'global' if context is None else 2 * context} px): seams are feathered and the result "
                  "differs slightly from an untiled run", stacklevel=2)
  s = model.scale
  out = np.empty((height * s, width * s, bands), dtype=image.dtype)  # super_resolve keeps the band count
  band = np.zeros((0, width * s, bands))              # accumulated weighted output of the open HR rows
  band_weight = np.zeros((0, width * s, 1))
  band_top, done = 0, 0
  tiles = [(r, y, wy, x, wx) for r, (y, wy) in enumerate(zip(rows.starts, rows.weights, strict=True))
           for x, wx in zip(cols.starts, cols.weights, strict=True)]

  def compute(runner: DeviceRunner, tile: tuple) -> np.ndarray:
    _, y, _, x, _ = tile
    piece = (image[y: y + rows.size, x: x + cols.size].astype(np.float64) - lo) / (hi - lo)
    return super_resolve(model, piece, PlaneRunner(runner), alpha)

  # as many tiles at a time as there are cores, each on its own device and thread (colour handling included)
  pool = core_pool(model, cores)
  width_of_group = len(pool.runners)
  for first in range(0, len(tiles), width_of_group):
    group = tiles[first: first + width_of_group]
    for (r, y, wy, x, wx), result in zip(group, pool.map(compute, group), strict=True):
      grow = (y + rows.size) * s - band_top - band.shape[0]
      if grow > 0:
        band = np.concatenate([band, np.zeros((grow, *band.shape[1:]))])
        band_weight = np.concatenate([band_weight, np.zeros((grow, *band_weight.shape[1:]))])
      weight = np.outer(np.repeat(wy, s), np.repeat(wx, s))[..., None]
      top = y * s - band_top
      band[top: top + result.shape[0], x * s: x * s + result.shape[1]] += result * weight
      band_weight[top: top + result.shape[0], x * s: x * s + result.shape[1]] += weight
      done += 1
      if progress is not None:
        progress(done, len(tiles))
      if x != cols.starts[-1]:
        continue
      # rows above the next tile row get no more contributions: write them out and drop them
      finished = (rows.starts[r + 1] * s if r + 1 < len(rows.starts) else height * s) - band_top
      values = band[:finished] / band_weight[:finished]
      out[band_top: band_top + finished] = (from_float(values, image.dtype) if image.dtype.kind in "ui"
                                            else values * (hi - lo) + lo)
      band, band_weight, band_top = band[finished:], band_weight[finished:], band_top + finished
  return out
