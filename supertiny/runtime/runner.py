"""One runner for every image path: `Runner(model)(image)` super-resolves an image of any size, band count and
stored type (uint8, uint16, float) into one of the same type, tile by tile, on every core.

Each tile is one jit call that does everything on the device in float32 (supertiny.runtime.pipeline): scaling the
stored values, the colour route, the model, clipping and rounding to the stored type. numpy only copies a tile's
pixels into the jit's input and the pixels it owns out of its output.

Tiles overlap by at least `overlap` LR pixels, and every output pixel is taken from the tile its LR pixel lies
deepest inside. When that depth covers the model's reach (half its receptive field) everywhere, the tiled image
equals the untiled one exactly; otherwise (global models, small overlaps) tiles are feathered together with weights
that fall linearly to the tile edges, which hides the seams.

Memory stays bounded whatever the images: a few jits per core (the most recently used shapes), the memory of
dropped ones and of runs never captured handed back after each image.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tinygrad import Device, Tensor

from ..errors import SuperTinyError
from . import internals, replay
from .cores import CorePool, DeviceRunner, core_devices, model_device
from .pipeline import Route, tile_forward


@dataclass(frozen=True)
class TilePlan:
  """Where the tiles of one axis start, their size, and each tile's per-pixel weight along the axis."""
  starts: tuple[int, ...]
  size: int
  weights: tuple[np.ndarray, ...]
  exact: bool

  def owned(self, i: int) -> slice:
    """The pixels of tile i (in tile coordinates) that it alone gives to an exact image."""
    nonzero = np.flatnonzero(self.weights[i])
    return slice(int(nonzero[0]), int(nonzero[-1]) + 1)


def reach(model, bands: int, alpha: bool) -> int | None:
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


def even_tile(length: int, tile: int, overlap: int, count: int | None = None) -> int:
  """The size of `count` equal tiles covering `length` with `overlap` (None: as few as tiles of at most `tile`
  allow): equal tiles waste less than tiles of exactly `tile` with one squeezed in at the end."""
  if count is None:
    count = 1 if length <= tile else math.ceil((length - overlap) / (tile - overlap))
  return length if count <= 1 else min(length, math.ceil((length + (count - 1) * overlap) / count))


def image_range(image: np.ndarray) -> tuple[float, float]:
  """The values that map to [0, 1] for the model: the dtype's range for unsigned integers; for floats [0, 1] when
  the data lies inside it, else the data's own finite minimum and maximum (reflectances, digital numbers stored as
  float), as for signed integers (int16 reflectance x 10000, elevations)."""
  if image.dtype.kind == "u":
    return 0.0, float(np.iinfo(image.dtype).max)
  finite = image[np.isfinite(image)]
  if finite.size == 0:
    return 0.0, 1.0
  lo, hi = float(finite.min()), float(finite.max())
  if lo >= 0.0 and hi <= 1.0:
    return 0.0, 1.0
  return lo, hi if hi > lo else lo + 1.0


def guess_alpha(model, bands: int) -> bool:
  """Whether the last band of an image with no alpha flag is alpha: it is for 2- and 4-band images, unless the
  model takes that many channels (a model made for this band count takes them all)."""
  return bands in (2, 4) and model.channels != bands


def lanes(model, cores: int | None) -> tuple[str, ...]:
  """The device of each thread that runs tiles: on the CPU, the model's own device once per core. Each thread
  replays its own jits (own buffers, shared weights) by direct kernel calls, and tiles of one shape share the
  compiled kernels. Where replays go through tinygrad (its internals unusable, SUPERTINY_REPLAY=tinygrad), whose
  device state is not for two threads at once, and off the CPU, one thread."""
  devices = core_devices(cores)
  home = model_device(model)
  if isinstance(home, tuple):  # sharded weights: tiles go in on the first device and are sharded in the jit
    return (Device.canonicalize(home[0]),)
  if len(devices) == 1 or not (internals.USABLE and replay.DIRECT):
    return (Device.canonicalize(home),)
  return (Device.canonicalize(home),) * len(devices)


class Runner:
  """`runner(image)`: the model's output for an HxW or HxWxC image (uint8, uint16 or float), as an image of the
  same dtype `scale` times larger. Integers map to [0, 1] by their dtype's range, floats as `image_range` says;
  outputs are clipped to that range.

  `cores`: CPU cores to use, a copy of the model on each (None: SUPERTINY_CORES or every core; elsewhere the
  default device). `tile` and `overlap` are in LR pixels (overlap None: the model's receptive field, or 32 for
  global models); on the CPU, an image of one tile is cut into one band of rows per core when the overlap costs
  little. The result does not depend on the cores or tiles whenever the overlap covers the model's reach."""

  def __init__(self, model, cores: int | None = None, tile: int = 256, overlap: int | None = None,
               jits_per_core: int = 1, fixed_tile: bool = False):
    if tile < 1 or (overlap is not None and overlap < 0):
      raise SuperTinyError(f"tile must be positive and overlap non-negative (got tile {tile}, overlap {overlap})")
    self.model, self.tile, self.overlap = model, tile, overlap
    # fixed: tiles of exactly `tile` px on every image at least that large, so that images of many sizes (the
    # chunks of a larger raster) share one compiled shape; else equal tiles sized to each image
    self.fixed_tile = fixed_tile
    self.pool = CorePool(model, lanes(model, cores), jits_per_core)

  def _grid(self, height: int, width: int, overlap: int, context: int | None) -> tuple[TilePlan, TilePlan]:
    if self.tile <= overlap and max(height, width) > self.tile:
      raise SuperTinyError(f"tile {self.tile} must be larger than the overlap {overlap}")
    if self.fixed_tile:
      rows, cols = min(height, self.tile), min(width, self.tile)
      return plan_axis(height, rows, overlap, context), plan_axis(width, cols, overlap, context)
    rows, cols = even_tile(height, self.tile, overlap), even_tile(width, self.tile, overlap)
    if rows == height and cols == width:  # one tile: a band of rows per core, unless the overlap eats the gain
      cores = len(self.pool.runners)
      band = even_tile(height, self.tile, overlap, cores)
      if cores > 1 and context is not None and band > overlap and band <= 0.8 * height:
        rows = band
    return plan_axis(height, rows, overlap, context), plan_axis(width, cols, overlap, context)

  def __call__(self, image: np.ndarray, alpha: bool | None = None,
               progress: Callable[[int, int], None] | None = None,
               value_range: tuple[float, float] | None = None,
               data_range: tuple[float, float] | None = None) -> np.ndarray:
    """`image` (HxW or HxWxC) super-resolved into the same dtype. `value_range`: the stored values that mean 0 and 1
    to the model (a radiometry: supertiny.data.radiometry), integers included, with outputs clipped only to what
    the dtype holds; None maps integers by their dtype's range and floats by image_range(), or by `data_range` when
    given (the whole image's, for a piece of it)."""
    image = np.asarray(image)
    squeeze = image.ndim == 2
    if squeeze:
      image = image[:, :, None]
    if image.ndim != 3 or image.dtype.kind not in "uif" or (image.dtype.kind in "ui" and image.itemsize > 2):
      raise SuperTinyError(f"expected an HxW or HxWxC image of uint8, uint16, int8, int16 or floats, got "
                           f"{image.dtype} {image.shape}")
    height, width, bands = image.shape
    model = self.model
    stacked = getattr(model, "input_channels", None)
    if stacked is not None and stacked != model.channels:
      raise SuperTinyError(f"model {model.name!r} takes a stack of {stacked} channels (revisits and their masks), not "
                           "an image: run it on revisit stacks (supertiny timeseries, docs/satellite.md)")
    if alpha is None:
      alpha = guess_alpha(model, bands)
    mapped = value_range is not None
    lo, hi = value_range if mapped else data_range if data_range is not None else image_range(image)
    if not hi > lo:
      raise SuperTinyError(f"value range ({lo}, {hi}) is empty")
    stored = image.dtype.name if image.dtype.kind == "u" else "float32"
    source = image if image.dtype.name == stored else image.astype(np.float32)
    context = reach(model, bands, alpha)
    overlap = self.overlap if self.overlap is not None else (2 * context if context is not None else 32)
    rows, cols = self._grid(height, width, overlap, context)
    exact = rows.exact and cols.exact
    if not exact:
      warnings.warn(f"tiles overlap by {overlap} px, less than {model.name}'s receptive field needs "
                    f"({'global' if context is None else 2 * context} px): seams are feathered and the result "
                    "differs slightly from an untiled run", stacklevel=2)
    route = Route(model.channels, bands, bool(alpha), stored, final=exact, mapped=mapped)
    route.check(model.name)
    s = model.scale
    # models that map a band stack to other bands (a band sharpener) say how many they return
    out = np.empty((height * s, width * s, getattr(model, "output_bands", bands)), dtype=source.dtype)
    bounds = np.array([lo, hi], dtype=np.float32)
    key = (rows.size, cols.size, route)
    cold = False

    def forward(m, tile: Tensor, limits: Tensor) -> Tensor:
      return tile_forward(m, tile, limits, route, self.pool.runners[0].dtype)

    tiles = [(r, c) for r in range(len(rows.starts)) for c in range(len(cols.starts))]
    self.pool.sync()
    if exact:
      def compute(runner: DeviceRunner, rc: tuple[int, int]) -> None:
        nonlocal cold
        r, c = rc
        y, x = rows.starts[r], cols.starts[c]
        piece = source[y: y + rows.size, x: x + cols.size]
        cold |= key not in runner.jits or runner.jits[key][0].cnt < 2
        result = runner.run(key, forward, piece, bounds, copy=False)
        ky, kx = rows.owned(r), cols.owned(c)
        out[(y + ky.start) * s: (y + ky.stop) * s, (x + kx.start) * s: (x + kx.stop) * s] = \
          result[ky.start * s: ky.stop * s, kx.start * s: kx.stop * s]

      done = 0
      for first in range(0, len(tiles), len(self.pool.runners)):
        group = tiles[first: first + len(self.pool.runners)]
        self.pool.map(compute, group)
        done += len(group)
        if progress is not None:
          progress(done, len(tiles))
    else:
      cold = True
      self._feathered(source, out, rows, cols, key, forward, bounds, tiles, (lo, hi), mapped, progress)
    if cold or any(r.evicted for r in self.pool.runners):
      self.pool.release()
    if image.dtype.kind == "i":  # signed integers go through float32, and come back rounded into their range
      info = np.iinfo(image.dtype)
      out = np.clip(np.round(out), info.min, info.max).astype(image.dtype)
    elif image.dtype.kind == "f" and out.dtype != image.dtype:
      out = out.astype(image.dtype)
    return out[..., 0] if squeeze else out

  def _feathered(self, source: np.ndarray, out: np.ndarray, rows: TilePlan, cols: TilePlan, key: tuple,
                 forward: Callable[..., Tensor], bounds: np.ndarray, tiles: list[tuple[int, int]],
                 limits: tuple[float, float], mapped: bool, progress: Callable[[int, int], None] | None) -> None:
    """Tiles blended by their weights in float32, keeping only the output rows still open (one row of tiles)."""
    s, (lo, hi) = self.model.scale, limits
    top = float(np.iinfo(out.dtype).max) if out.dtype.kind == "u" else None
    width, bands = out.shape[1], out.shape[2]
    band = np.zeros((0, width, bands), np.float32)  # accumulated weighted output of the open HR rows
    band_weight = np.zeros((0, width, 1), np.float32)
    band_top = done = 0
    for r, y in enumerate(rows.starts):
      row_tiles = [t for t in tiles if t[0] == r]
      results = self.pool.map(lambda runner, rc, y=y: runner.run(key, forward, source[
        y: y + rows.size, cols.starts[rc[1]]: cols.starts[rc[1]] + cols.size], bounds), row_tiles)
      grow = (y + rows.size) * s - band_top - band.shape[0]
      if grow > 0:
        band = np.concatenate([band, np.zeros((grow, width, bands), np.float32)])
        band_weight = np.concatenate([band_weight, np.zeros((grow, width, 1), np.float32)])
      top_row = y * s - band_top
      for (_, c), result in zip(row_tiles, results, strict=True):
        x = cols.starts[c]
        weight = np.outer(np.repeat(rows.weights[r], s), np.repeat(cols.weights[c], s))[..., None]
        band[top_row: top_row + result.shape[0], x * s: x * s + result.shape[1]] += result * weight
        band_weight[top_row: top_row + result.shape[0], x * s: x * s + result.shape[1]] += weight
      done += len(row_tiles)
      if progress is not None:
        progress(done, len(tiles))
      # rows above the next tile row get no more contributions: write them out and drop them
      finished = (rows.starts[r + 1] * s if r + 1 < len(rows.starts) else out.shape[0]) - band_top
      values = band[:finished] / band_weight[:finished]
      if mapped:
        values = values * (hi - lo) + lo
        out[band_top: band_top + finished] = np.clip(np.round(values), 0, top) if top is not None else values
      else:
        out[band_top: band_top + finished] = (np.clip(np.round(values * top), 0, top) if top is not None
                                              else values * (hi - lo) + lo)
      band, band_weight, band_top = band[finished:], band_weight[finished:], band_top + finished


_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(cores, tile, overlap): Runner}


def runner_for(model, cores: int | None = None, tile: int = 256, overlap: int | None = None,
               fixed_tile: bool = False) -> Runner:
  """The model's Runner for these settings, kept while the model lives (its jits are reused across calls)."""
  runners = _RUNNERS.get(model)
  if runners is None:
    runners = _RUNNERS.setdefault(model, {})
  key = (core_devices(cores), tile, overlap, fixed_tile)
  if key not in runners:
    runners[key] = Runner(model, cores, tile, overlap, fixed_tile=fixed_tile)
  return runners[key]


_BATCH_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_batch(model, batch: np.ndarray) -> np.ndarray:
  """The model's float32 output for a float32 NCHW batch, whole: no tiles and no colour route, for inputs that are
  not images (the revisit stacks of multi-revisit models). One jit per batch shape, on the model's device."""
  runner = _BATCH_RUNNERS.get(model)
  if runner is None:
    device = model_device(model)
    runner = _BATCH_RUNNERS[model] = DeviceRunner(model, device if isinstance(device, str) else device[0])
  return runner(batch)
