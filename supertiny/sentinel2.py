"""Sentinel-2 band super-resolution: the 20 m bands (B05, B06, B07, B8A, B11, B12) to 10 m, guided by the 10 m
bands (B02, B03, B04, B08), learned self-supervised by Wald's protocol as DSen2 does: every band is degraded by the
resolution ratio (10 m to 20 m, 20 m to 40 m), and the network learns to restore the 20 m bands at their own
resolution from the degraded ones; applied one scale up, it sharpens them to 10 m. A second network does the same
for B01 and B09 (60 m, ratio 6) from the 10 and 20 m bands, as DSen2's S6 does; B10 (cirrus, no surface detail)
is upsampled with bicubic.

The scene's columns are split: the network trains on the left part and is scored on the held-back right part, at
reduced resolution (where the 20 m bands themselves are the truth), against bicubic upsampling.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad.nn.state import get_state_dict, safe_save

from .data.images import atomic_output
from .data.sentinel2 import BANDS, BANDS_10M, BANDS_20M, NODATA, RESOLUTION, Scene, read_scene, write_bands
from .errors import SuperTinyError
from .models.bandsharpen import BandSharpener
from .models.weights import load_weights, read_safetensors
from .ops import imresize
from .plotting import pyplot, save_figure
from .runtime.runner import runner_for
from .train import fit

SPLIT_MULTIPLE = 12  # the split column (10 m) lies on the 20, 40 and 60 m grids
META_KEY = "supertiny-bandsharpen"
WEIGHTS = Path(__file__).parent / "weights" / "sentinel2"  # apart from the zoo's checkpoints in weights/


@dataclass(frozen=True)
class Sharpening:
  """One network's job: the `targets` (bands of one resolution) sharpened to 10 m, guided by the finer `guides`."""
  name: str
  guides: tuple[str, ...]
  targets: tuple[str, ...]

  @property
  def ratio(self) -> int:
    return RESOLUTION[self.targets[0]] // 10

  @property
  def shipped(self) -> Path:
    return WEIGHTS / f"bandsharpen_{self.name}.safetensors"

  def describe(self) -> str:
    return f"{', '.join(self.guides)} -> {', '.join(self.targets)}"


JOBS = {"20m": Sharpening("20m", BANDS_10M, BANDS_20M),
        "60m": Sharpening("60m", BANDS_10M + BANDS_20M, ("B01", "B09"))}


def split_column(scene: Scene, fraction: float = 2 / 3) -> int:
  """The first held-back column of the 10 m grid: `fraction` of the width, on every band's grid."""
  columns = scene.shape[1]
  split = int(columns * fraction) // SPLIT_MULTIPLE * SPLIT_MULTIPLE
  if not 0 < split < columns or columns - split < 4 * SPLIT_MULTIPLE:
    raise SuperTinyError(f"a {columns}-column scene cannot be split at {fraction:g} into a training and a held-back "
                         "part")
  return split


def _part(band: str, rows: int, columns: slice) -> tuple[slice, slice]:
  """The band's pixels under the first `rows` rows and the `columns` of the 10 m grid."""
  own = RESOLUTION[band] // 10
  return slice(0, rows // own), slice(columns.start // own, columns.stop // own)


def _columns(scene: Scene, columns: slice) -> slice:
  return slice(columns.start or 0, scene.shape[1] if columns.stop is None else columns.stop)


def wald_pair(scene: Scene, job: Sharpening, columns: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Wald's protocol on the targets' own grid over the 10 m `columns` (cut to whole degraded pixels): (input:
  every band degraded by the ratio, then brought to that grid with bicubic, guides first; target: the target bands
  as stored, in reflectance; valid: pixels where every band has data)."""
  columns = _columns(scene, columns)
  whole = job.ratio * job.ratio  # 10 m pixels per degraded target pixel, along each axis
  rows = scene.shape[0] // whole * whole
  columns = slice(columns.start, columns.start + (columns.stop - columns.start) // whole * whole)
  planes, valid = [], None
  for band in job.guides + job.targets:
    part = _part(band, rows, columns)
    own = RESOLUTION[band] // 10
    degraded = imresize(scene.reflectance(band)[part], 1 / job.ratio)
    planes.append((imresize(degraded, own) if own > 1 else degraded).astype(np.float32))
    data = scene.bands[band][part] != NODATA
    if own < job.ratio:  # a pixel of the targets' grid has data where all the finer pixels it covers have
      f = job.ratio // own
      data = data.reshape(data.shape[0] // f, f, data.shape[1] // f, f).all(axis=(1, 3))
    valid = data if valid is None else valid & data
  target = np.stack([scene.reflectance(b)[_part(b, rows, columns)] for b in job.targets], axis=-1)
  return np.stack(planes, axis=-1), target, valid


def sharpening_input(scene: Scene, job: Sharpening, columns: slice = slice(None)) -> np.ndarray:
  """The 10 m grid's input: every band of the job upsampled to 10 m with bicubic, guides first."""
  columns = _columns(scene, columns)
  planes = []
  for band in job.guides + job.targets:
    own = RESOLUTION[band] // 10
    values = scene.reflectance(band)[_part(band, scene.shape[0], columns)]
    planes.append((imresize(values, own) if own > 1 else values).astype(np.float32))
  return np.stack(planes, axis=-1)


def predict(model: BandSharpener, stack: np.ndarray) -> np.ndarray:
  """The model over an HxWxB reflectance stack (tiled, every core) -> its target bands, HxWxT reflectance."""
  return runner_for(model)(np.ascontiguousarray(stack, np.float32), alpha=False, value_range=(0.0, 1.0))


def train_sharpener(scene: Scene, job: Sharpening, split: int, steps: int = 3000, seed: int = 0, width: int = 32,
                    blocks: int = 4, batch: int = 16, patch: int = 32,
                    progress: Callable[[int, float], None] | None = None,
                    cores: int | None = None) -> tuple[BandSharpener, float]:
  """A band sharpener trained by Wald's protocol on the scene's columns before `split`; (model, last loss).
  `cores`: on the CPU, how many share each batch (as train.fit's)."""
  inputs, target, valid = wald_pair(scene, job, slice(0, split))
  model = BandSharpener(len(job.guides), len(job.targets), width, blocks)
  targets = np.concatenate([target, valid[..., None].astype(np.float32)], axis=-1)
  loss = fit(model, np.moveaxis(inputs, -1, 0)[None], np.moveaxis(targets, -1, 0)[None], scale=1, steps=steps,
             batch=batch, patch=min(patch, *target.shape[:2]), seed=seed, progress=progress,
             cores=cores).loss
  return model, loss


def evaluate(scene: Scene, job: Sharpening, model: BandSharpener | None, split: int) -> list[dict[str, Any]]:
  """RMSE (in the scene's digital numbers) of each target band restored from its degraded self on the held-back
  columns, by bicubic and by `model`, over pixels with data in every band."""
  inputs, target, valid = wald_pair(scene, job, slice(split, None))
  methods = {"bicubic": inputs[..., len(job.guides):]}
  if model is not None:
    methods["bandsharpen"] = predict(model, inputs)
  rows = []
  for index, band in enumerate(job.targets):
    row: dict[str, Any] = {"band": band}
    for name, restored in methods.items():
      error = (restored[..., index] - target[..., index])[valid]
      row[name] = float(np.sqrt(np.mean(np.square(error.astype(np.float64))))) * scene.radiometry.full_scale
    rows.append(row)
  return rows


def sharpen(scene: Scene, models: dict[str, BandSharpener]) -> dict[str, np.ndarray]:
  """Every band of the scene on the 10 m grid, in its stored units (uint16): the 10 m bands as they are, the bands
  of each job in `models` ("20m", "60m") sharpened by its network, the rest upsampled with bicubic; no-data pixels
  of the 10 m bands stay 0."""
  valid = scene.valid()
  sharpened = {}
  for name, model in models.items():
    job = JOBS[name]
    if all(b in scene.bands for b in job.guides + job.targets):
      result = predict(model, sharpening_input(scene, job))
      sharpened.update({b: result[..., i] for i, b in enumerate(job.targets)})
  out = {}
  for band in BANDS:
    if band not in scene.bands:
      continue
    if RESOLUTION[band] == 10:
      out[band] = scene.bands[band]
      continue
    reflectance = sharpened[band] if band in sharpened else imresize(scene.reflectance(band), RESOLUTION[band] // 10)
    out[band] = np.where(valid, scene.digital_numbers(reflectance), np.uint16(NODATA))
  return out


def save_sharpener(path: str | Path, model: BandSharpener, job: Sharpening, meta: dict[str, Any]) -> None:
  """The model's weights and what rebuilds it, in one safetensors file, written atomically."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  header = {"job": job.name, "guide": list(job.guides), "target": list(job.targets),
            "width": model.head.weight.shape[0], "blocks": len(model.body),
            "res_scale": model.body[0].res_scale if model.body else 0.1, **meta}
  with atomic_output(path) as tmp:
    safe_save(get_state_dict(model), tmp, metadata={META_KEY: json.dumps(header)})


def load_sharpener(path: str | Path | None = None, job: Sharpening = JOBS["20m"]) -> tuple[BandSharpener, dict]:
  """A saved band sharpener for `job` (default: the shipped one) and its metadata."""
  path = Path(path) if path is not None else job.shipped
  arrays, header = read_safetensors(path)
  try:
    meta = json.loads(header[META_KEY])
  except (KeyError, json.JSONDecodeError):
    raise SuperTinyError(f"{path}: not a SuperTiny band-sharpening model (no '{META_KEY}' metadata)") from None
  if not isinstance(meta, dict) or meta.get("guide") != list(job.guides) or meta.get("target") != list(job.targets):
    raise SuperTinyError(f"{path}: not made for {job.describe()}")
  width, blocks, res_scale = meta.get("width"), meta.get("blocks"), meta.get("res_scale")
  if not (type(width) is int and type(blocks) is int and 0 < width <= 1024 and 0 <= blocks <= 64
          and isinstance(res_scale, float) and math.isfinite(res_scale)):
    raise SuperTinyError(f"{path}: its metadata does not describe a band sharpener (width, blocks, res_scale)")
  model = BandSharpener(len(job.guides), len(job.targets), width, blocks, res_scale)
  load_weights(model, arrays)
  return model, meta


def sharpen_folder(folder: str | Path, out: str | Path, weights: dict[str, str | Path | None] | None = None,
                   radiometry: str = "auto") -> dict[str, Any]:
  """Read a scene's band files, sharpen every band to 10 m and write one GeoTIFF; returns what was done.
  `weights`: per job ("20m", "60m") a weights file, None for the shipped one; a job whose shipped weights do not
  exist is left to bicubic."""
  scene = read_scene(folder, radiometry)
  weights = weights or {}
  models, sources = {}, {}
  for name, job in JOBS.items():
    chosen = weights.get(name)
    if chosen is None and not job.shipped.is_file():
      continue
    models[name], _ = load_sharpener(chosen, job)
    sources[name] = str(chosen) if chosen is not None else job.shipped.name
  bands = sharpen(scene, models)
  methods = [f"{', '.join(JOBS[n].targets)}: bandsharpen ({sources[n]})" for n in models]
  rest = [b for b in bands if RESOLUTION[b] > 10 and not any(b in JOBS[n].targets for n in models)]
  methods += [f"{', '.join(rest)}: bicubic"] if rest else []
  tags = {"SUPERTINY_METHOD": "; ".join(methods + ["10 m bands unchanged"]),
          "SUPERTINY_RADIOMETRY": scene.radiometry.description}
  write_bands(out, bands, scene, tags)
  return {"bands": list(bands), "shape": scene.shape, "radiometry": scene.radiometry.description,
          "georeferenced": scene.transform is not None, "methods": methods}


def figure(scene: Scene, model: BandSharpener, split: int, path: str | Path, band: str = "B11",
           size: int = 96) -> Path:
  """A PNG of one 20 m band on a crop of the held-back part: top, at reduced resolution (Wald's protocol) the 10 m
  guide B04 degraded to 20 m, bicubic and the network from 40 m, and the 20 m truth; bottom, the real product at
  10 m: B04, the band upsampled with bicubic and sharpened by the network (the 20 m job's network)."""
  job = JOBS["20m"]
  plt = pyplot()
  index = BANDS_20M.index(band)
  inputs, target, _ = wald_pair(scene, job, slice(split, None))
  predicted = predict(model, inputs)
  rows, cols = target.shape[:2]
  y, x = max(0, (rows - size) // 2), max(0, (cols - size) // 2)
  crop = (slice(y, y + size), slice(x, x + size))
  fine_crop = (slice(2 * y, 2 * (y + size)), slice(split + 2 * x, split + 2 * (x + size)))
  full = sharpening_input(scene, job)[fine_crop]
  sharpened = predict(model, full)

  def rmse(image: np.ndarray) -> str:
    return f"RMSE {np.sqrt(np.mean(np.square(image - target[crop][..., index]))) * scene.radiometry.full_scale:.1f}"

  panels = [
    [("B04 degraded to 20 m (guide)", inputs[crop][..., 2]),
     (f"{band} bicubic from 40 m\n{rmse(inputs[crop][..., len(BANDS_10M) + index])}",
      inputs[crop][..., len(BANDS_10M) + index]),
     (f"{band} bandsharpen from 40 m\n{rmse(predicted[crop][..., index])}", predicted[crop][..., index]),
     (f"{band} at 20 m (truth)", target[crop][..., index])],
    [("B04 at 10 m", full[..., 2]), (f"{band} bicubic to 10 m", full[..., len(BANDS_10M) + index]),
     (f"{band} bandsharpen to 10 m", sharpened[..., index]), (f"{band} at 20 m (as stored)", None)],
  ]
  figure_, axes = plt.subplots(2, 4, figsize=(13, 7))
  for row, entries in zip(axes, panels, strict=True):
    for axis, (title, image) in zip(row, entries, strict=True):
      if image is None:
        image = np.repeat(np.repeat(target[crop][..., index], 2, 0), 2, 1)
      low, high = np.percentile(image, (1, 99))
      axis.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
      axis.set_title(title, fontsize=9)
      axis.set_axis_off()
  figure_.suptitle(f"{band} on the held-back part (columns from {split} at 10 m); top: Wald's protocol, "
                   "bottom: the 10 m product", fontsize=10)
  figure_.tight_layout()
  return save_figure(figure_, path, dpi=90)
