"""Images as files that must survive upscaling intact: pixels plus what the file says about them.

A Raster carries the pixels (HxWxC uint8, uint16, float32 or float64), whether the last band is alpha, and for TIFF
files the layout (photometric, planar configuration, extra samples, compression) and the GeoTIFF/GDAL tags
(georeferencing, CRS, nodata, GDAL metadata). `scaled_tags` rewrites the georeferencing for an image `scale` times
larger, so the output covers exactly the same ground.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuperTinyError
from .images import (
  atomic_output,
  check_pixels,
  decode_failure,
  open_tiff,
  read_image,
  write_image,
)

PIXEL_SCALE, TIEPOINT, TRANSFORMATION = 33550, 33922, 34264
GEO_KEYS, GEO_DOUBLES, GEO_ASCII = 34735, 34736, 34737
GDAL_METADATA, GDAL_NODATA = 42112, 42113
KEPT_TAGS = (PIXEL_SCALE, TIEPOINT, TRANSFORMATION, GEO_KEYS, GEO_DOUBLES, GEO_ASCII, GDAL_METADATA, GDAL_NODATA)
RASTER_TYPE_KEY, PIXEL_IS_POINT = 1025, 2
MODEL_TYPE_KEY, PROJECTED_CRS_KEY, GEOGRAPHIC_CRS_KEY = 1024, 3072, 2048
TIFF_ASCII, TIFF_SHORT, TIFF_DOUBLE = 2, 3, 12
JPEG2000_SUFFIXES = (".jp2", ".j2k", ".jpx")


def rasterio_module() -> Any:
  """rasterio, or a one-line error saying how to install it."""
  try:
    import rasterio
  except ImportError:
    raise SuperTinyError("JPEG 2000 band files and georeferenced output need GDAL: "
                         "pip install 'supertiny[geo]' (rasterio)") from None
  return rasterio


@dataclass
class TiffLayout:
  photometric: str = "minisblack"
  planar: str = "contig"
  extrasamples: tuple[int, ...] = ()
  compression: str | None = None
  tags: dict[int, tuple[int, int, object]] = field(default_factory=dict)  # code -> (TIFF dtype, count, value)

  @property
  def georeferenced(self) -> bool:
    return any(code in self.tags for code in (PIXEL_SCALE, TIEPOINT, TRANSFORMATION))

  @property
  def nodata(self) -> float | None:
    if GDAL_NODATA not in self.tags:
      return None
    text = str(self.tags[GDAL_NODATA][2]).strip().strip("\x00")
    try:
      return float(text)
    except ValueError:
      return None


@dataclass
class Raster:
  pixels: np.ndarray
  alpha: bool | None = False  # whether the last band is alpha; None: guess (2- and 4-band images have alpha)
  tiff: TiffLayout | None = None


def read_raster(path: str | Path) -> Raster:
  """Any image read_image takes, plus float TIFFs, with its alpha flag and TIFF layout and tags."""
  path = Path(path)
  if path.suffix.lower() in JPEG2000_SUFFIXES and path.is_file():
    return _read_jpeg2000(path)
  if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
    pixels = read_image(path)
    return Raster(pixels, alpha=pixels.shape[2] in (2, 4))
  try:
    with open_tiff(path) as tif:
      page = tif.pages[0]
      pixels = page.asarray()
      layout = TiffLayout(
        photometric=getattr(page.photometric, "name", "minisblack").lower(),  # an unknown value: gray
        planar="separate" if page.planarconfig == 2 else "contig",
        extrasamples=tuple(int(e) for e in page.extrasamples),
        compression=None if page.compression == 1 else "zlib",
        tags={t.code: (int(t.dtype), int(t.count), t.value) for t in page.tags.values() if t.code in KEPT_TAGS})
      separate = page.planarconfig == 2 and page.samplesperpixel > 1
  except SuperTinyError:
    raise
  except Exception as exc:  # noqa: BLE001 (decoders of untrusted bytes fail in many ways: each is this file's)
    raise SuperTinyError(f"{path}: not a readable image ({decode_failure(exc)})") from exc
  if pixels.dtype not in (np.uint8, np.uint16, np.int8, np.int16, np.float32, np.float64):
    raise SuperTinyError(f"{path}: {pixels.dtype} TIFFs are not supported (8/16-bit integers or 32/64-bit float)")
  if separate:
    pixels = np.moveaxis(pixels, 0, -1)
  if pixels.ndim == 2:
    pixels = pixels[:, :, None]
  if pixels.ndim != 3 or 0 in pixels.shape:
    raise SuperTinyError(f"{path}: TIFF with shape {pixels.shape} is not a single image")
  # only bands the file itself marks as alpha (extra samples 1 = associated, 2 = unassociated) are alpha
  alpha = bool(layout.extrasamples) and layout.extrasamples[-1] in (1, 2)
  return Raster(pixels, alpha=alpha, tiff=layout)


def _read_jpeg2000(path: Path) -> Raster:
  """A JPEG 2000 file (Sentinel-2 bands) through GDAL, with its georeferencing and nodata as GeoTIFF tags, so that a
  GeoTIFF written from it covers the same ground. Without rasterio, Pillow decodes the pixels and the
  georeferencing is lost, with a warning."""
  try:
    rasterio = rasterio_module()
  except SuperTinyError:
    warnings.warn(f"{path}: read without GDAL, so any georeferencing it has is not kept "
                  "(pip install 'supertiny[geo]')", stacklevel=3)
    pixels = read_image(path)
    return Raster(pixels, alpha=pixels.shape[2] in (2, 4))
  try:
    with rasterio.open(path) as source:
      check_pixels(path, source.width, source.height)
      pixels = np.moveaxis(source.read(), 0, -1)
      transform, crs, nodata = source.transform, source.crs, source.nodata
      alpha = source.colorinterp[-1].name == "alpha" if source.count > 1 else False
  except SuperTinyError:
    raise
  except Exception as exc:  # noqa: BLE001 (a decoder of untrusted bytes fails in many ways: each is this file's)
    raise SuperTinyError(f"{path}: not a readable image ({decode_failure(exc)})") from exc
  if pixels.dtype not in (np.uint8, np.uint16, np.int8, np.int16, np.float32, np.float64):
    raise SuperTinyError(f"{path}: {pixels.dtype} rasters are not supported (8/16-bit integers or 32/64-bit float)")
  tags = {} if crs is None and transform.is_identity else _geotiff_tags(path, transform, crs)
  if nodata is not None:
    text = f"{nodata:g}"
    tags[GDAL_NODATA] = (TIFF_ASCII, len(text) + 1, text)
  photometric = "rgb" if pixels.shape[2] - alpha == 3 and pixels.dtype == np.uint8 else "minisblack"
  extrasamples = (2,) if alpha else ()
  return Raster(pixels, alpha=alpha, tiff=TiffLayout(photometric, "contig", extrasamples, "zlib", tags))


def _geotiff_tags(path: Path, transform: Any, crs: Any) -> dict[int, tuple[int, int, object]]:
  """GeoTIFF tags for an affine transform (pixel corner, PixelIsArea) and a CRS with an EPSG code; a CRS without
  one is left out with a warning."""
  a, b, c, d, e, f = (float(v) for v in tuple(transform)[:6])
  tags: dict[int, tuple[int, int, object]] = {}
  if b == 0 and d == 0:  # north up: a pixel size and the corner's coordinates
    tags[PIXEL_SCALE] = (TIFF_DOUBLE, 3, (a, -e, 0.0))
    tags[TIEPOINT] = (TIFF_DOUBLE, 6, (0.0, 0.0, 0.0, c, f, 0.0))
  else:
    tags[TRANSFORMATION] = (TIFF_DOUBLE, 16, (a, b, 0.0, c, d, e, 0.0, f, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0))
  keys = [(RASTER_TYPE_KEY, 1)]  # PixelIsArea
  epsg = crs.to_epsg() if crs is not None else None
  if epsg is not None:
    geographic = crs.is_geographic
    keys += [(MODEL_TYPE_KEY, 2 if geographic else 1), (GEOGRAPHIC_CRS_KEY if geographic else PROJECTED_CRS_KEY, epsg)]
  elif crs is not None:
    warnings.warn(f"{path}: its CRS has no EPSG code; the output keeps the transform but not the CRS", stacklevel=4)
  directory = [1, 1, 0, len(keys)]
  for key, value in sorted(keys):
    directory += [key, 0, 1, value]
  tags[GEO_KEYS] = (TIFF_SHORT, len(directory), tuple(directory))
  return tags


def write_raster(path: str | Path, raster: Raster) -> None:
  """Write atomically, keeping the TIFF layout and tags when the raster came from a TIFF and goes to one."""
  path = Path(path)
  is_tiff = path.suffix.lower() in (".tif", ".tiff")
  if not is_tiff or raster.tiff is None:
    if raster.pixels.dtype.kind == "f":
      raise SuperTinyError(f"{path}: floating-point pixels can only be written as .tif")
    write_image(path, raster.pixels)
    return
  import tifffile

  layout, pixels = raster.tiff, raster.pixels
  bands = pixels.shape[2]
  data = pixels[..., 0] if bands == 1 else (np.moveaxis(pixels, -1, 0) if layout.planar == "separate" else pixels)
  extratags = [(code, dtype, count, value, True) for code, (dtype, count, value) in sorted(layout.tags.items())]
  with atomic_output(path, path.suffix) as tmp:
    tifffile.imwrite(tmp, data, photometric=layout.photometric, planarconfig=layout.planar if bands > 1 else None,
                     extrasamples=layout.extrasamples or None, compression=layout.compression,
                     extratags=extratags, metadata=None)


def _raster_type(tags: dict[int, tuple[int, int, object]]) -> int:
  keys = tags.get(GEO_KEYS)
  if keys is None:
    return 1
  values = list(keys[2])
  for i in range(4, len(values) - 3, 4):  # header of 4, then (key, location, count, value) entries
    if values[i] == RASTER_TYPE_KEY and values[i + 1] == 0:
      return int(values[i + 3])
  return 1


def scaled_tags(layout: TiffLayout, scale: int) -> TiffLayout:
  """The layout for the same ground covered by `scale` times more pixels per axis.

  PixelIsArea: pixel (0, 0)'s corner stays where it is and pixels shrink. PixelIsPoint: a tie point names a pixel
  centre; LR pixel i's centre is HR pixel i*scale + (scale-1)/2."""
  tags = dict(layout.tags)
  shift = (scale - 1) / 2 if _raster_type(tags) == PIXEL_IS_POINT else 0.0
  if PIXEL_SCALE in tags:
    dtype, count, (sx, sy, *rest) = tags[PIXEL_SCALE]
    tags[PIXEL_SCALE] = (dtype, count, (sx / scale, sy / scale, *rest))
  if TIEPOINT in tags:
    dtype, count, values = tags[TIEPOINT]
    points = np.array(values, dtype=np.float64).reshape(-1, 6)
    points[:, :2] = points[:, :2] * scale + shift
    tags[TIEPOINT] = (dtype, count, tuple(points.ravel()))
  if TRANSFORMATION in tags:
    dtype, count, values = tags[TRANSFORMATION]
    m = np.array(values, dtype=np.float64).reshape(4, 4)
    # model = M @ (i, j, k, 1) with i = (i' - shift) / scale
    new = m.copy()
    new[:, :2] = m[:, :2] / scale
    new[:, 3] = m[:, 3] - shift / scale * (m[:, 0] + m[:, 1])
    tags[TRANSFORMATION] = (dtype, count, tuple(new.ravel()))
  return replace(layout, tags=tags)
