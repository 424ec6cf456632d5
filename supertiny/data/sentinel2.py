"""Sentinel-2 band files: finding the 13 bands of a scene in a folder (a .SAFE product's IMG_DATA or any folder of
band files), reading them with their georeferencing, knowing what their digital numbers mean, and writing a
multi-band GeoTIFF. JPEG 2000 and georeferencing need GDAL, through rasterio (`pip install 'supertiny[geo]'`).

The bands come at three resolutions: B02, B03, B04 and B08 at 10 m; B05, B06, B07, B8A, B11 and B12 at 20 m; B01,
B09 and B10 at 60 m. Digital numbers are reflectance x 10000 (QUANTIFICATION_VALUE), plus 1000 from processing
baseline 04.00 on (RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000); 0 is no data.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SuperTinyError, first_line
from .images import atomic_output
from .radiometry import RADIOMETRIES, S2_BAND, Radiometry, sentinel2_product_radiometry
from .raster import rasterio_module

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10, "B8A": 20,
              "B09": 60, "B10": 60, "B11": 20, "B12": 20}
BANDS_10M = tuple(b for b in BANDS if RESOLUTION[b] == 10)
BANDS_20M = tuple(b for b in BANDS if RESOLUTION[b] == 20)
BANDS_60M = tuple(b for b in BANDS if RESOLUTION[b] == 60)
NODATA = 0
# T33UUU_20170216T102101_B04.jp2 (L1C), T33UUU_..._B04_10m.jp2 (L2A), B04.tif
_BAND_FILE = re.compile(rf"(?:^|_)({S2_BAND})(?:_(\d+)m)?\.(?:jp2|tiff?)$", re.IGNORECASE)


@dataclass
class Scene:
  """One scene's bands at their own resolutions, as stored (uint16 digital numbers), with the 10 m grid's CRS and
  transform (None when the files carry no georeferencing) and the radiometry of the digital numbers."""
  bands: dict[str, np.ndarray]
  paths: dict[str, Path]
  crs: Any
  transform: Any
  radiometry: Radiometry

  @property
  def shape(self) -> tuple[int, int]:
    """(rows, columns) of the 10 m grid."""
    return self.bands[BANDS_10M[0]].shape

  def reflectance(self, band: str) -> np.ndarray:
    """A band as float32 reflectance (no-data pixels hold the offset's reflectance, -0.1 or 0)."""
    r = self.radiometry
    return ((self.bands[band].astype(np.float32) - np.float32(r.offset)) / np.float32(r.full_scale))

  def digital_numbers(self, reflectance: np.ndarray) -> np.ndarray:
    """Reflectance back to this scene's stored units: rounded, clipped to uint16, 0 kept for no data."""
    r = self.radiometry
    stored = np.round(reflectance.astype(np.float64) * r.full_scale + r.offset)
    return np.clip(stored, 1, np.iinfo(np.uint16).max).astype(np.uint16)

  def valid(self) -> np.ndarray:
    """10 m pixels with data in every 10 m band."""
    return np.logical_and.reduce([self.bands[b] != NODATA for b in BANDS_10M])


def find_band_files(folder: str | Path) -> dict[str, Path]:
  """Band name -> file, from a folder searched recursively (a .SAFE product or a folder of band files). Where one
  band comes at several resolutions (an L2A product's R10m, R20m and R60m folders), its finest file is taken."""
  folder = Path(folder)
  if not folder.is_dir():
    raise SuperTinyError(f"{folder}: not a folder of Sentinel-2 band files")
  found: dict[str, tuple[int, Path]] = {}
  for path in sorted(folder.rglob("*")):
    match = _BAND_FILE.search(path.name)
    if match is None or not path.is_file() or "QI_DATA" in path.parts:
      continue
    band = match.group(1).upper()
    metres = int(match.group(2)) if match.group(2) else RESOLUTION[band]
    if band in found and found[band][0] == metres:
      raise SuperTinyError(f"{folder}: two files for {band} ({found[band][1].name}, {path.name}); keep one")
    if band not in found or metres < found[band][0]:
      found[band] = (metres, path)
  missing = [b for b in BANDS_10M if b not in found]
  if missing:
    raise SuperTinyError(f"{folder}: no file for the 10 m band(s) {', '.join(missing)} (expected names such as "
                         f"T33UUU_20170216T102101_B04.jp2 or B04.tif)")
  return {band: found[band][1] for band in BANDS if band in found}


def scene_radiometry(folder: Path, name: str) -> Radiometry:
  """`name` ("auto": the product's metadata, else Sentinel-2 before baseline 04.00 with a warning)."""
  if name == "auto":
    found = sentinel2_product_radiometry(folder)
    if found is not None:
      return found
    warnings.warn(f"{folder}: no MTD_MSIL1C.xml or MTD_MSIL2A.xml; assuming digital numbers = reflectance x 10000 "
                  "(processing baseline before 04.00; --radiometry s2-n0400 for later products)", stacklevel=2)
    return RADIOMETRIES["s2"]
  if name not in RADIOMETRIES:
    raise SuperTinyError(f"unknown radiometry {name!r}; choose from auto, {', '.join(RADIOMETRIES)}")
  return RADIOMETRIES[name]


def read_scene(folder: str | Path, radiometry: str = "auto") -> Scene:
  """The scene's bands, checked to cover the same ground: one CRS, one origin, and sizes that are the 10 m grid's
  divided by each band's resolution ratio."""
  rasterio = rasterio_module()
  folder = Path(folder)
  files = find_band_files(folder)
  bands, grids = {}, {}
  for band, path in files.items():
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as source:
          if source.count != 1:
            raise SuperTinyError(f"{path}: {source.count} bands; a Sentinel-2 band file holds one")
          bands[band] = source.read(1)
          grids[band] = (source.crs, source.transform if not source.transform.is_identity else None)
    except rasterio.errors.RasterioError as exc:
      raise SuperTinyError(f"{path}: cannot be read ({first_line(exc)})") from None
    if bands[band].dtype != np.uint16:
      raise SuperTinyError(f"{path}: {bands[band].dtype} pixels; Sentinel-2 digital numbers are uint16")
  rows, cols = bands[BANDS_10M[0]].shape
  crs, transform = grids[BANDS_10M[0]]
  for band, pixels in bands.items():
    ratio = RESOLUTION[band] // 10
    expected = (rows // ratio, cols // ratio)
    if rows % ratio or cols % ratio or pixels.shape != expected:
      raise SuperTinyError(f"{files[band]}: {pixels.shape[1]}x{pixels.shape[0]} pixels; at {RESOLUTION[band]} m "
                           f"the 10 m bands' {cols}x{rows} grid needs {cols / ratio:g}x{rows / ratio:g}")
    band_crs, band_transform = grids[band]
    if transform is not None and band_transform is not None:
      if band_crs != crs or not band_transform.almost_equals(transform @ type(transform).scale(ratio)):
        raise SuperTinyError(f"{files[band]}: its georeferencing ({band_crs}, origin {band_transform.c:g}, "
                             f"{band_transform.f:g}, {band_transform.a:g} m) does not match the 10 m bands'")
  if transform is None:
    warnings.warn(f"{folder}: the band files carry no georeferencing; the output will have none", stacklevel=2)
  return Scene(bands, files, crs if transform is not None else None, transform, scene_radiometry(folder, radiometry))


def write_bands(path: str | Path, bands: dict[str, np.ndarray], scene: Scene, tags: dict[str, str]) -> None:
  """Bands of one grid (10 m) as one uint16 GeoTIFF (deflate, tiled), in `bands` order, each named; written to a
  temporary file and renamed, so `path` only ever holds a complete product."""
  rasterio = rasterio_module()
  path = Path(path)
  names = list(bands)
  height, width = bands[names[0]].shape
  profile = {"driver": "GTiff", "width": width, "height": height, "count": len(names), "dtype": "uint16",
             "nodata": NODATA, "compress": "deflate", "predictor": 2, "tiled": True, "blockxsize": 256,
             "blockysize": 256, "BIGTIFF": "IF_SAFER"}
  if scene.transform is not None:
    profile.update(crs=scene.crs, transform=scene.transform)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_output(path, suffix=".tif") as tmp, warnings.catch_warnings():
    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    with rasterio.open(tmp, "w", **profile) as out:
      for index, name in enumerate(names, start=1):
        out.write(bands[name], index)
        out.set_band_description(index, name)
      out.update_tags(**tags)
