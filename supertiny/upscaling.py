"""Upscaling real images: the Python API `upscale` for arrays and PIL images, and whole files with everything the
file says kept (bit depth, alpha, bands, TIFF layout, georeferencing scaled, nodata)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .data.images import WRITABLE_SUFFIXES
from .data.radiometry import Radiometry
from .data.radiometry import resolve as resolve_radiometry
from .data.raster import Raster, read_raster, scaled_tags, write_raster
from .errors import SuperTinyError
from .infer import upscale_tiled
from .models.registry import SRModel
from .pretrained import load_model

MIN_SIDE = 4  # bicubic's support: smaller images have nothing for a kernel to work with


def upscale(image: Any, model: str | SRModel | None = None, scale: int | None = None, tile: int = 256,
            overlap: int | None = None, weights: str | None = None, channels: int | None = None,
            radiometry: str = "dtype", random_init: bool = False) -> Any:
  """Super-resolve a numpy array (HxW or HxWxC; uint8, uint16 or float) or a PIL image; returns the same kind.

  `model`: a zoo name (its shipped weights for `scale` and `channels`, None: any; `weights` a file of them;
  `random_init` untrained), a checkpoint file, a model object, or None for the best shipped model for `scale`
  (default 4). Large images are processed in tiles of `tile` LR pixels; the result equals an untiled run whenever the
  overlap covers the model's receptive field, which the default overlap does. `radiometry`: what the values mean
  (supertiny.data.radiometry: "12bit", "reflectance", "s2-n0400", ...); "dtype" maps integers by their dtype's
  range and floats by their own.
  """
  if not isinstance(model, str) and model is not None:
    if scale is not None and scale != model.scale:
      raise SuperTinyError(f"model {model.name} is for x{model.scale}, not x{scale}")
  else:
    model = load_model(model, scale, channels, weights, random_init)
  from PIL import Image

  if isinstance(image, Image.Image):
    return _upscale_pil(model, image, tile, overlap)
  array = np.asarray(image)
  if array.ndim not in (2, 3) or array.dtype.kind not in "uif" or array.dtype.itemsize > 8:
    raise SuperTinyError(f"expected an HxW or HxWxC image of integers or floats, got {array.dtype} {array.shape}")
  _check_size(array, "image")
  out = upscale_raster(model, Raster(array if array.ndim == 3 else array[..., None], alpha=None), tile,
                       overlap, radiometry=radiometry).pixels
  return out[..., 0] if array.ndim == 2 else out


def _upscale_pil(model: SRModel, image: Any, tile: int, overlap: int | None) -> Any:
  from PIL import Image

  mode = image.mode
  if mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "PA"):
    image = image.convert("RGBA" if mode == "PA" else ("L" if mode == "1" else "RGB"))
  array = np.asarray(image)
  if image.mode in ("I", "I;16", "I;16B", "I;16L"):
    array = array.astype(np.uint16)
  _check_size(array, "image")
  out = upscale_tiled(model, array, tile, overlap)
  # Pillow names the mode from the array: L, LA, RGB, RGBA for uint8, I;16 for 16-bit gray
  return Image.fromarray(out[..., 0] if out.shape[2] == 1 else out)


def _check_size(array: np.ndarray, label: str) -> None:
  if min(array.shape[:2]) < MIN_SIDE:
    raise SuperTinyError(f"{label}: {array.shape[1]}x{array.shape[0]} is too small to upscale "
                         f"(needs at least {MIN_SIDE} px per side)")


def upscale_raster(model: SRModel, raster: Raster, tile: int = 256, overlap: int | None = None,
                   progress: Callable[[int, int], None] | None = None, radiometry: str | Radiometry = "auto",
                   cores: int | None = None, data_range: tuple[float, float] | None = None,
                   nodata: float | None = None, fixed_tile: bool = False) -> Raster:
  """Upscale pixels and alpha, scale the georeferencing, keep nodata pixels nodata (and out of the model's way).
  Non-finite values (NaN, +-Inf) are nodata too: filled from their valid neighbours before the model, NaN again
  (or the file's nodata value) in the pixels they map to, and nowhere else. `radiometry` (a name of
  supertiny.data.radiometry.CHOICES): what the stored values mean to the model; "auto" takes the file's GDAL scale
  and offset when it has them, else the dtype's range. For a piece of a larger raster (supertiny.dask), `data_range`
  is the whole raster's (see Runner), `nodata` its no-data value and `fixed_tile` keeps one tile shape."""
  chosen = radiometry if isinstance(radiometry, Radiometry) else resolve_radiometry(radiometry, raster)
  pixels = raster.pixels
  if raster.tiff is not None:
    nodata = raster.tiff.nodata
  invalid = ~np.isfinite(pixels) if pixels.dtype.kind == "f" else np.zeros(pixels.shape, bool)
  if nodata is not None:
    invalid |= pixels == nodata
  if invalid.any():
    pixels = fill_invalid(pixels, invalid)
  out = upscale_tiled(model, pixels, tile, overlap, alpha=raster.alpha, progress=progress, cores=cores,
                      value_range=None if chosen is None else chosen.value_range, data_range=data_range,
                      fixed_tile=fixed_tile)
  if nodata is not None:
    # a valid pixel that comes out equal to nodata (a clipped overshoot, often 0) would read as a hole: nudge it
    hit = out == nodata
    if hit.any():
      if out.dtype.kind == "f":
        out[hit] = np.nextafter(out.dtype.type(nodata), out.dtype.type(np.inf))
      else:
        out[hit] = nodata + 1 if nodata < np.iinfo(out.dtype).max else nodata - 1
  if invalid.any():
    holes = invalid.repeat(model.scale, axis=0).repeat(model.scale, axis=1)
    out[holes] = nodata if nodata is not None else np.nan
  tiff = scaled_tags(raster.tiff, model.scale) if raster.tiff is not None else None
  return Raster(out, raster.alpha, tiff)


def fill_invalid(pixels: np.ndarray, invalid: np.ndarray, rounds: int = 16) -> np.ndarray:
  """A copy of `pixels` with invalid values replaced by the mean of their valid neighbours, growing inwards one
  pixel per round (so holes do not ring into the pixels around them); what is left after `rounds` takes its
  band's valid mean (0 for a band with none)."""
  work = np.where(invalid, 0.0, pixels).astype(np.float64)
  valid = ~invalid
  for _ in range(rounds):
    if valid.all():
      break
    padded_values = np.pad(work * valid, ((1, 1), (1, 1), (0, 0)))
    padded_valid = np.pad(valid, ((1, 1), (1, 1), (0, 0))).astype(np.float64)
    h, w = valid.shape[:2]
    total = sum(padded_values[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    count = sum(padded_valid[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
    grow = ~valid & (count > 0)
    if not grow.any():
      break
    work[grow] = total[grow] / count[grow]
    valid = valid | grow
  for b in range(work.shape[2]):
    if not valid[..., b].all():
      known = work[..., b][valid[..., b]]
      work[..., b][~valid[..., b]] = known.mean() if known.size else 0.0
  if pixels.dtype.kind in "ui":
    return np.round(work).astype(pixels.dtype)
  return work.astype(pixels.dtype)


def upscale_file(model: SRModel, source: Path, target: Path, tile: int = 256, overlap: int | None = None,
                 overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                 radiometry: str = "auto") -> Raster:
  """Read `source`, upscale it, write `target` (atomically) in the target's format."""
  result = upscale_source(model, source, target, tile, overlap, overwrite, progress, radiometry)
  write_output(target, result)
  return result


def upscale_source(model: SRModel, source: Path, target: Path, tile: int = 256, overlap: int | None = None,
                   overwrite: bool = False, progress: Callable[[int, int], None] | None = None,
                   radiometry: str = "auto") -> Raster:
  """The first half of upscale_file: check that `target` may be written, read `source` and upscale it."""
  if target.exists() and target.resolve() == source.resolve():
    raise SuperTinyError(f"{target}: is the input itself; write the output elsewhere")
  if target.exists() and not overwrite:
    raise SuperTinyError(f"{target}: already exists (pass --overwrite to replace it)")
  if target.suffix.lower() not in WRITABLE_SUFFIXES:
    raise SuperTinyError(f"{target}: cannot write {target.suffix or 'files without a suffix'} "
                         f"(writes {', '.join(sorted(WRITABLE_SUFFIXES))})")
  raster = read_raster(source)
  _check_size(raster.pixels, str(source))
  chosen = resolve_radiometry(radiometry, raster, source)  # "auto" also reads a product's metadata file
  return upscale_raster(model, raster, tile, overlap, progress, "dtype" if chosen is None else chosen)


def write_output(target: Path, result: Raster) -> None:
  """The second half of upscale_file: write `result` to `target` atomically (its folder made as needed)."""
  target.parent.mkdir(parents=True, exist_ok=True)
  write_raster(target, result)
