"""Sentinel-2 band super-resolution: the 20 m bands (B05, B06, B07, B8A, B11, B12) to 10 m, guided by the 10 m
bands (B02, B03, B04, B08), learned self-supervised by Wald's protocol as DSen2 does: every band is degraded by the
resolution ratio (10 m to 20 m, 20 m to 40 m), and the network learns to restore the 20 m bands at their own
resolution from the degraded ones; applied one scale up, it sharpens them to 10 m. The 60 m bands (B01, B09, B10)
are upsampled with bicubic.

The scene's columns are split: the network trains on the left part and is scored on the held-back right part, at
reduced resolution (where the 20 m bands themselves are the truth), against bicubic upsampling.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad.nn.state import get_state_dict, safe_save

from .data.images import atomic_output
from .data.sentinel2 import BANDS, BANDS_10M, BANDS_20M, BANDS_60M, NODATA, RESOLUTION, Scene, read_scene, write_bands
from .errors import SuperTinyError
from .models.bandsharpen import BandSharpener
from .models.weights import load_weights, read_safetensors
from .ops import imresize
from .runtime.runner import runner_for
from .train import fit

RATIO = 2  # 20 m bands to 10 m
SPLIT_MULTIPLE = 12  # the split column (10 m) lies on the 20, 40 and 60 m grids
META_KEY = "supertiny-bandsharpen"
SHIPPED = Path(__file__).parent / "weights" / "s2_bandsharpen_20m.safetensors"


def split_column(scene: Scene, fraction: float = 2 / 3) -> int:
  """The first held-back column of the 10 m grid: `fraction` of the width, on every band's grid."""
  columns = scene.shape[1]
  split = int(columns * fraction) // SPLIT_MULTIPLE * SPLIT_MULTIPLE
  if not 0 < split < columns or columns - split < 4 * SPLIT_MULTIPLE:
    raise SuperTinyError(f"a {columns}-column scene cannot be split at {fraction:g} into a training and a held-back "
                         "part")
  return split


def _stack(scene: Scene, bands: tuple[str, ...], columns: slice) -> np.ndarray:
  """HxWxB float32 reflectance of `bands` (one resolution), cut to the 10 m `columns`."""
  ratio = RESOLUTION[bands[0]] // 10
  part = slice(None if columns.start is None else columns.start // ratio,
               None if columns.stop is None else columns.stop // ratio)
  return np.stack([scene.reflectance(b)[:, part] for b in bands], axis=-1)


def _valid(scene: Scene, bands: tuple[str, ...], columns: slice, ratio: int) -> np.ndarray:
  """Pixels of the grid `ratio` x 10 m where every band of `bands` has data (a coarse pixel: all it covers)."""
  valid = None
  for band in bands:
    own = RESOLUTION[band] // 10
    part = slice(None if columns.start is None else columns.start // own,
                 None if columns.stop is None else columns.stop // own)
    data = scene.bands[band][:, part] != NODATA
    if own < ratio:
      f = ratio // own
      data = data.reshape(data.shape[0] // f, f, data.shape[1] // f, f).all(axis=(1, 3))
    elif own > ratio:
      data = data.repeat(own // ratio, 0).repeat(own // ratio, 1)
    valid = data if valid is None else valid & data
  return valid


def wald_pair(scene: Scene, columns: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Wald's protocol on the 20 m grid: (input HxWx10: the 10 m bands degraded to 20 m, then the 20 m bands
  degraded to 40 m and upsampled back; target HxWx6: the 20 m bands; valid HxW), over the 10 m `columns`."""
  fine, coarse = _stack(scene, BANDS_10M, columns), _stack(scene, BANDS_20M, columns)
  if coarse.shape[0] % RATIO or coarse.shape[1] % RATIO:
    raise SuperTinyError(f"the 20 m grid ({coarse.shape[1]}x{coarse.shape[0]}) is not a multiple of {RATIO}")
  degraded_fine = imresize(fine, 1 / RATIO).astype(np.float32)
  blurred = imresize(imresize(coarse, 1 / RATIO), RATIO).astype(np.float32)
  valid = _valid(scene, BANDS_10M + BANDS_20M, columns, RATIO)
  return np.concatenate([degraded_fine, blurred], axis=-1), coarse, valid


def sharpening_input(scene: Scene, columns: slice = slice(None)) -> np.ndarray:
  """The 10 m grid's HxWx10 input: the 10 m bands, then the 20 m bands upsampled with bicubic."""
  coarse = imresize(_stack(scene, BANDS_20M, columns), RATIO).astype(np.float32)
  return np.concatenate([_stack(scene, BANDS_10M, columns), coarse], axis=-1)


def predict(model: BandSharpener, stack: np.ndarray) -> np.ndarray:
  """The model over an HxWx10 reflectance stack (tiled, every core) -> HxWx6 reflectance."""
  return runner_for(model)(np.ascontiguousarray(stack, np.float32), alpha=False, value_range=(0.0, 1.0))


def train_sharpener(scene: Scene, split: int, steps: int = 3000, seed: int = 0, width: int = 32, blocks: int = 4,
                    batch: int = 16, patch: int = 32,
                    progress: Callable[[int, float], None] | None = None) -> tuple[BandSharpener, float]:
  """A band sharpener trained by Wald's protocol on the scene's columns before `split`; (model, last loss)."""
  inputs, target, valid = wald_pair(scene, slice(0, split))
  model = BandSharpener(len(BANDS_10M), len(BANDS_20M), width, blocks)
  targets = np.concatenate([target, valid[..., None].astype(np.float32)], axis=-1)
  loss = fit(model, np.moveaxis(inputs, -1, 0)[None], np.moveaxis(targets, -1, 0)[None], scale=1, steps=steps,
             batch=batch, patch=patch, seed=seed, progress=progress)
  return model, loss


def evaluate(scene: Scene, model: BandSharpener | None, split: int) -> list[dict[str, Any]]:
  """RMSE (in the scene's digital numbers) of each 20 m band restored from 40 m on the held-back columns, by
  bicubic and by `model`, over pixels with data in every band."""
  inputs, target, valid = wald_pair(scene, slice(split, None))
  methods = {"bicubic": inputs[..., len(BANDS_10M):]}
  if model is not None:
    methods["bandsharpen"] = predict(model, inputs)
  rows = []
  for index, band in enumerate(BANDS_20M):
    row: dict[str, Any] = {"band": band}
    for name, restored in methods.items():
      error = (restored[..., index] - target[..., index])[valid]
      row[name] = float(np.sqrt(np.mean(np.square(error.astype(np.float64))))) * scene.radiometry.full_scale
    rows.append(row)
  return rows


def sharpen(scene: Scene, model: BandSharpener) -> dict[str, np.ndarray]:
  """Every band of the scene on the 10 m grid, in its stored units (uint16): the 10 m bands as they are, the 20 m
  bands sharpened by `model`, the 60 m bands upsampled with bicubic; no-data pixels of the 10 m bands stay 0."""
  valid = scene.valid()
  sharpened = predict(model, sharpening_input(scene))
  out = {}
  for band in BANDS:
    if band not in scene.bands:
      continue
    if RESOLUTION[band] == 10:
      out[band] = scene.bands[band]
      continue
    if band in BANDS_20M:
      reflectance = sharpened[..., BANDS_20M.index(band)]
    else:
      reflectance = imresize(scene.reflectance(band), RESOLUTION[band] // 10)
    out[band] = np.where(valid, scene.digital_numbers(reflectance), np.uint16(NODATA))
  return out


def save_sharpener(path: str | Path, model: BandSharpener, meta: dict[str, Any]) -> None:
  """The model's weights and what rebuilds it, in one safetensors file, written atomically."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  header = {"guide": list(BANDS_10M), "target": list(BANDS_20M), "width": model.head.weight.shape[0],
            "blocks": len(model.body), "res_scale": model.body[0].res_scale if model.body else 0.1, **meta}
  with atomic_output(path) as tmp:
    safe_save(get_state_dict(model), tmp, metadata={META_KEY: json.dumps(header)})


def load_sharpener(path: str | Path | None = None) -> tuple[BandSharpener, dict[str, Any]]:
  """A saved band sharpener (default: the shipped one) and its metadata."""
  path = Path(path) if path is not None else SHIPPED
  arrays, header = read_safetensors(path)
  try:
    meta = json.loads(header[META_KEY])
  except (KeyError, json.JSONDecodeError):
    raise SuperTinyError(f"{path}: not a SuperTiny band-sharpening model (no '{META_KEY}' metadata)") from None
  if not isinstance(meta, dict) or meta.get("guide") != list(BANDS_10M) or meta.get("target") != list(BANDS_20M):
    raise SuperTinyError(f"{path}: made for other bands than {', '.join(BANDS_10M)} -> {', '.join(BANDS_20M)}")
  width, blocks, res_scale = meta.get("width"), meta.get("blocks"), meta.get("res_scale")
  if not (type(width) is int and type(blocks) is int and 0 < width <= 1024 and 0 <= blocks <= 64
          and isinstance(res_scale, float) and math.isfinite(res_scale)):
    raise SuperTinyError(f"{path}: its metadata does not describe a band sharpener (width, blocks, res_scale)")
  model = BandSharpener(len(BANDS_10M), len(BANDS_20M), width, blocks, res_scale)
  load_weights(model, arrays)
  return model, meta


def sharpen_folder(folder: str | Path, out: str | Path, weights: str | Path | None = None,
                   radiometry: str = "auto") -> dict[str, Any]:
  """Read a scene's band files, sharpen every band to 10 m and write one GeoTIFF; returns what was done."""
  scene = read_scene(folder, radiometry)
  model, meta = load_sharpener(weights)
  bands = sharpen(scene, model)
  tags = {"SUPERTINY_MODEL": str(Path(weights) if weights is not None else SHIPPED.name),
          "SUPERTINY_METHOD": f"{', '.join(BANDS_20M)}: bandsharpen; {', '.join(b for b in BANDS_60M if b in bands)}: "
                              "bicubic; 10 m bands unchanged",
          "SUPERTINY_RADIOMETRY": scene.radiometry.description}
  write_bands(out, bands, scene, tags)
  return {"bands": list(bands), "shape": scene.shape, "radiometry": scene.radiometry.description,
          "georeferenced": scene.transform is not None, "trained_on": meta.get("trained_on")}
