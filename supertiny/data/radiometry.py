"""What a raster's stored values mean: the affine map from stored units to reflectance (or to [0, 1] for
photographs), so that a model sees 12-bit, reflectance and digital-number data at the brightness it was trained on
instead of as a sliver of its dtype's range (a 12-bit image in uint16 uses 6% of it and looks black to a model).

`reflectance = (stored - offset) / full_scale`. The model sees that value; its output is mapped back, so the file
written keeps the input's units and dtype. Values above full scale (clouds, snow) stay above it and are not cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import SuperTinyError
from .raster import GDAL_METADATA, Raster


@dataclass(frozen=True)
class Radiometry:
  name: str
  offset: float  # the stored value of reflectance 0
  full_scale: float  # stored units per reflectance 1
  description: str

  @property
  def value_range(self) -> tuple[float, float]:
    """The stored values that map to 0 and 1."""
    return self.offset, self.offset + self.full_scale


_LANDSAT_C2_GAIN, _LANDSAT_C2_BIAS = 2.75e-5, -0.2  # USGS Collection 2 Level-2 surface reflectance
RADIOMETRIES = {r.name: r for r in (
  Radiometry("reflectance", 0.0, 1.0, "reflectance stored as floats (1.0 = 100%)"),
  Radiometry("12bit", 0.0, 4095.0, "12-bit sensor values stored in uint16 (4095 = full scale)"),
  Radiometry("spot12", 0.0, 10000.0, "SPOT 6/7 12-bit values as WorldStrat stores them (10000 = 1)"),
  Radiometry("s2", 0.0, 10000.0, "Sentinel-2 L1C/L2A digital numbers before processing baseline 04.00 (10000 = 1)"),
  Radiometry("s2-n0400", 1000.0, 10000.0, "Sentinel-2 L1C/L2A digital numbers from baseline 04.00 on (offset "
                                          "-1000: reflectance = (DN - 1000) / 10000)"),
  Radiometry("landsat-sr", 0.0, 10000.0, "Landsat Collection 1 / ESPA surface reflectance (x 10000)"),
  Radiometry("landsat-c2-sr", -_LANDSAT_C2_BIAS / _LANDSAT_C2_GAIN, 1 / _LANDSAT_C2_GAIN,
             "Landsat Collection 2 Level-2 surface reflectance (0.0000275 DN - 0.2)"),
)}
CHOICES = ("auto", "dtype", *RADIOMETRIES)


def from_metadata(raster: Raster) -> Radiometry | None:
  """The scale and offset GDAL writes into a GeoTIFF's metadata (band 1's `scale` and `offset` items:
  reflectance = stored x scale + offset), or None."""
  if raster.tiff is None or GDAL_METADATA not in raster.tiff.tags:
    return None
  text = str(raster.tiff.tags[GDAL_METADATA][2])
  items = {}
  for role in ("scale", "offset"):
    match = re.search(rf'<Item[^>]*sample="0"[^>]*role="{role}"[^>]*>\s*([^<]+?)\s*</Item>', text) or \
            re.search(rf'<Item[^>]*role="{role}"[^>]*sample="0"[^>]*>\s*([^<]+?)\s*</Item>', text)
    if match:
      try:
        items[role] = float(match.group(1))
      except ValueError:
        return None
  scale = items.get("scale")
  return None if scale is None else from_scale_offset(scale, items.get("offset", 0.0))


def from_scale_offset(scale: float, offset: float) -> Radiometry | None:
  """The radiometry of GDAL's scale and offset (reflectance = stored x scale + offset); None when they say nothing
  (1 and 0) or cannot be used."""
  if not np.isfinite(scale) or scale == 0 or not np.isfinite(offset) or (scale == 1 and offset == 0):
    return None
  return Radiometry("metadata", -offset / scale, 1 / scale, f"the file's scale {scale:g} and offset {offset:g}")


def resolve(name: str, raster: Raster) -> Radiometry | None:
  """The radiometry `name` asks for (None: map by the dtype's range, or a float image's own range); "auto" reads
  the file's scale and offset when it has them."""
  if name == "dtype":
    return None
  if name == "auto":
    return from_metadata(raster)
  if name not in RADIOMETRIES:
    raise SuperTinyError(f"unknown radiometry {name!r}; choose from {', '.join(CHOICES)}")
  return RADIOMETRIES[name]
