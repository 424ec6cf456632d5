"""What a raster's stored values mean: the affine map from stored units to reflectance (or to [0, 1] for
photographs), so that a model sees 12-bit, reflectance and digital-number data at the brightness it was trained on
instead of as a sliver of its dtype's range (a 12-bit image in uint16 uses 6% of it and looks black to a model).

`reflectance = (stored - offset) / full_scale`. The model sees that value; its output is mapped back, so the file
written keeps the input's units and dtype. Values above full scale (clouds, snow) stay above it and are not cut.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

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


_S2_METADATA_FILES = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")
S2_BAND = r"B(?:0[1-9]|1[0-2]|8A)"  # a Sentinel-2 band's name in its file names: B01-B12 and B8A
# T33UUU_20170216T102101_B04.jp2 (L1C), T33UUU_..._B04_10m.jp2 (L2A): a product's band, with an MTD XML above it
_S2_PRODUCT_BAND_FILE = re.compile(rf"^T\d{{2}}[A-Z]{{3}}_\d{{8}}T\d{{6}}_{S2_BAND}(?:_\d+m)?$", re.IGNORECASE)
# LC08_L2SP_035032_20200101_20200823_02_T1_SR_B4.TIF (Collection 2 Level 2), LC08_L1TP_..._T1_B4.TIF (Level 1)
_LANDSAT_BAND_FILE = re.compile(r"^(L[CEOTM]\d{2}_[A-Z0-9]{4}_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2})_(SR_)?B(\d{1,2})$",
                                re.IGNORECASE)
_LANDSAT_GROUPS = {True: ("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS",),  # surface reflectance files (_SR_Bn)
                   False: ("LEVEL1_RADIOMETRIC_RESCALING", "RADIOMETRIC_RESCALING")}  # Level 1 (Collection 2, 1)


def sentinel2_product_radiometry(folder: Path) -> Radiometry | None:
  """The radiometry a Sentinel-2 product's MTD_MSIL1C.xml / MTD_MSIL2A.xml states (in `folder` or up to four
  folders above): QUANTIFICATION_VALUE and RADIO_ADD_OFFSET / BOA_ADD_OFFSET, else the processing baseline (04.00
  and later add 1000). None when there is no such file."""
  for place in [folder, *list(folder.parents)[:4]]:
    for name in _S2_METADATA_FILES:
      path = place / name
      if path.is_file():
        return _sentinel2_xml(path)
  return None


def _sentinel2_xml(path: Path) -> Radiometry:
  text = path.read_text(errors="replace")

  def values(tag: str) -> list[float]:
    return [float(v) for v in re.findall(rf"<{tag}\b[^>]*>\s*([-+0-9.eE]+)\s*</{tag}>", text)]

  scale = values("QUANTIFICATION_VALUE") or values("BOA_QUANTIFICATION_VALUE")
  offsets = values("RADIO_ADD_OFFSET") or values("BOA_ADD_OFFSET")
  baseline = re.search(r"<PROCESSING_BASELINE>\s*([0-9.]+)\s*</PROCESSING_BASELINE>", text)
  full_scale = scale[0] if scale else 10000.0
  if offsets:
    if len(set(offsets)) > 1:
      raise SuperTinyError(f"{path}: bands have different offsets ({sorted(set(offsets))}); not supported")
    offset = -offsets[0]
  else:
    offset = 1000.0 if baseline and float(baseline.group(1)) >= 4.0 else 0.0
  if not full_scale > 0:
    raise SuperTinyError(f"{path}: quantification value {full_scale} is not positive")
  where = f"baseline {baseline.group(1)}" if baseline else "no baseline given"
  return Radiometry("metadata", offset, full_scale, f"{path.name}: {where}, offset {offset:g}, scale {full_scale:g}")


def landsat_mtl_radiometry(band_file: Path) -> Radiometry | None:
  """The reflectance rescaling a Landsat Collection 1/2 band file's MTL (`<product id>_MTL.txt` or `_MTL.json`
  beside it) states for its band: REFLECTANCE_MULT_BAND_n and REFLECTANCE_ADD_BAND_n of the Level 2 surface
  reflectance group for `_SR_Bn` files, of the Level 1 rescaling group for `_Bn` files (top-of-atmosphere
  reflectance, without the sun-elevation correction). None for other names and for bands without reflectance
  (thermal); a warning when a Landsat band file has no MTL beside it."""
  match = _LANDSAT_BAND_FILE.match(band_file.stem)
  if match is None:
    return None
  product, surface, band = match.group(1), bool(match.group(2)), int(match.group(3))
  candidates = [band_file.parent / f"{product}_MTL{suffix}" for suffix in (".txt", ".TXT", ".json", ".JSON")]
  mtl = next((p for p in candidates if p.is_file()), None)
  if mtl is None:
    warnings.warn(f"{band_file}: no {product}_MTL.txt beside it; its values are mapped by the dtype's range "
                  "(--radiometry landsat-c2-sr for Collection 2 surface reflectance)", stacklevel=3)
    return None
  groups = _read_mtl(mtl)
  for group in _LANDSAT_GROUPS[surface]:
    items = groups.get(group, {})
    mult, add = items.get(f"REFLECTANCE_MULT_BAND_{band}"), items.get(f"REFLECTANCE_ADD_BAND_{band}")
    if mult is None or add is None:
      continue
    try:
      scale, offset = float(mult), float(add)
    except ValueError:
      raise SuperTinyError(f"{mtl}: REFLECTANCE_MULT/ADD_BAND_{band} are not numbers ({mult!r}, {add!r})") from None
    found = from_scale_offset(scale, offset)
    if found is not None:
      return Radiometry("metadata", found.offset, found.full_scale,
                        f"{mtl.name}: {group} band {band}, reflectance = {scale:g} DN + {offset:g}")
  return None


def _read_mtl(path: Path) -> dict[str, dict[str, str]]:
  """An MTL file's groups: {group name: {key: value}}, from its ODL text (GROUP = ... / KEY = value / END_GROUP)
  or its JSON form."""
  try:
    text = path.read_text(errors="replace")
    if path.suffix.lower() == ".json":
      groups: dict[str, dict[str, str]] = {}

      def walk(name: str, node: object) -> None:
        if isinstance(node, dict):
          groups.setdefault(name, {}).update({k: str(v) for k, v in node.items() if not isinstance(v, dict)})
          for key, value in node.items():
            if isinstance(value, dict):
              walk(key, value)

      walk("", json.loads(text))
      return groups
  except (OSError, ValueError) as exc:
    raise SuperTinyError(f"{path}: not a readable MTL file ({exc})") from None
  groups, stack = {}, [""]
  for line in text.splitlines():
    key, sep, value = line.partition("=")
    if not sep:
      continue
    key, value = key.strip(), value.strip().strip('"')
    if key == "GROUP":
      stack.append(value)
    elif key == "END_GROUP":
      if len(stack) > 1:
        stack.pop()
    else:
      groups.setdefault(stack[-1], {})[key] = value
  return groups


def sidecar_radiometry(source: Path) -> Radiometry | None:
  """The radiometry a band file's product metadata states: a Landsat MTL beside it, or a Sentinel-2 product's
  MTD XML above it; None for other files."""
  if _LANDSAT_BAND_FILE.match(source.stem):
    return landsat_mtl_radiometry(source)
  if _S2_PRODUCT_BAND_FILE.match(source.stem):
    return sentinel2_product_radiometry(source.parent)
  return None


def resolve(name: str, raster: Raster, source: Path | None = None) -> Radiometry | None:
  """The radiometry `name` asks for (None: map by the dtype's range, or a float image's own range); "auto" reads
  the file's scale and offset when it has them, else the product metadata beside `source` (the file read)."""
  if name == "dtype":
    return None
  if name == "auto":
    found = from_metadata(raster)
    return found if found is not None or source is None else sidecar_radiometry(source)
  if name not in RADIOMETRIES:
    raise SuperTinyError(f"unknown radiometry {name!r}; choose from {', '.join(CHOICES)}")
  return RADIOMETRIES[name]
