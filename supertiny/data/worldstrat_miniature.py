"""A WorldStrat root in miniature: the releases' exact layout, names, dtypes, band counts and masks, with small
rasters of a synthetic scene, for tests and for trying the tools without the 100 GB download.

Each AOI is one smooth scene: HR is it at 1.5 m (scaled down: `hr_size` px), LR revisits are it averaged to
`lr_size` with clouds (CLM 1, SCL 8-9, bright) and a no-data edge (dataMask 0, CLM 255, SCL 0) on some revisits.
What is covered (WORLDSTRAT_FORMAT.md, section 12): every naming pattern (a space, a legacy UNHCR name), a
non-square LR raster, an AOI with fewer revisits, revisit numbers past 9, an AOI listed in the CSV but missing on
disk, a duplicate CSV row and a tile listed in two splits, and the Kaggle `12bit/` and `8bit/` folders.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import SuperTinyError
from .worldstrat import PRODUCTS, SPLIT_CSV

# name -> (split, LR width x height, revisits on Zenodo)
AOIS = {
  "Landcover-1784876": ("train", (24, 23), 12),
  "UNHCR-NGAs037482": ("test", (24, 24), 12),  # also listed in train: a leak the reader must resolve
  "UNHCR-3645": ("train", (24, 24), 3),  # legacy name; fewer revisits than asked for
  "ASMSpotter-2-1-3": ("val", (24, 24), 12),
  "Amnesty POI-20-2-2": ("train", (24, 22), 12),  # a space in the name; not square
}
MISSING = "ASMSpotter-1-1-1"  # in the CSV, not on disk (worldstrat issue #9)
CLOUDY = (2, 5, 10)  # revisit numbers given a cloud
NO_DATA_EDGE = 4  # revisit number given a no-data band along one edge
KAGGLE_REVISITS = 8


def _scene(rng: np.random.Generator, height: int, width: int, bands: int) -> np.ndarray:
  """bands x height x width of smooth reflectance-like values (about 0.02-0.45)."""
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  out = np.empty((bands, height, width), np.float64)
  for b in range(bands):
    waves = sum(rng.uniform(0.02, 0.06) * np.cos(2 * np.pi * (rng.uniform(-3, 3) * y + rng.uniform(-3, 3) * x)
                                                 + rng.uniform(0, 2 * np.pi)) for _ in range(6))
    out[b] = 0.08 + 0.03 * b % 0.25 + waves + 0.1
  return np.clip(out, 0.01, 0.6)


def _area_mean(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """bands x H x W averaged onto a height x width grid (each output pixel the mean of the HR pixels it covers)."""
  rows = np.linspace(0, image.shape[1], height + 1).astype(int)
  cols = np.linspace(0, image.shape[2], width + 1).astype(int)
  return np.stack([[[image[b, rows[i]:rows[i + 1], cols[j]:cols[j + 1]].mean() for j in range(width)]
                    for i in range(height)] for b in range(image.shape[0])])


def _tiff(path: Path, bands_first: np.ndarray) -> None:
  import tifffile

  data = bands_first[0] if bands_first.shape[0] == 1 else np.moveaxis(bands_first, 0, -1)
  tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig" if data.ndim == 3 else None)


def write_miniature(out: str | Path, layout: str = "zenodo", hr_size: int = 160, seed: int = 0) -> Path:
  """Write a miniature WorldStrat root at `out` (which must not exist or be empty) in the `layout` of the Zenodo or
  Kaggle release; returns `out`. Written into a temporary folder beside `out` and renamed: never half there."""
  if layout not in ("zenodo", "kaggle"):
    raise SuperTinyError(f"unknown layout {layout!r}: use zenodo or kaggle")
  out = Path(out)
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise SuperTinyError(f"{out}: exists and is not empty")
  out.parent.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # renamed into place when complete
  os.chmod(staging, 0o755)  # mkdtemp makes it private; the root is an ordinary folder
  try:
    _write(staging, layout, hr_size, seed)
    if out.exists():
      out.rmdir()
    os.replace(staging, out)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return out


def _write(out: Path, layout: str, hr_size: int, seed: int) -> None:
  from PIL import Image

  rng = np.random.default_rng(seed)
  hr_root = out / "hr_dataset" / ("12bit" if layout == "kaggle" else "")
  products = ("L2A",) if layout == "kaggle" else ("L2A", "L1C")
  metadata_rows = []
  for name, (_, (lr_w, lr_h), count) in AOIS.items():
    scene = _scene(rng, hr_size, hr_size, 4)  # R, G, B, NIR
    folder = hr_root / name
    folder.mkdir(parents=True)
    digital = np.round(scene * 10000).astype(np.uint16)
    _tiff(folder / f"{name}_ps.tiff", digital)
    _tiff(folder / f"{name}_pan.tiff", np.round(digital[:3].mean(axis=0, keepdims=True)).astype(np.uint16))
    native = _area_mean(scene, hr_size // 4, hr_size // 4)  # the 6 m multispectral product
    _tiff(folder / f"{name}_rgbn.tiff", np.round(native * 10000).astype(np.uint16))
    Image.fromarray(np.clip(scene[:3] / 0.4 * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)).save(
      folder / f"{name}_rgb.png")
    if layout == "kaggle":
      eight = out / "hr_dataset" / "8bit" / name
      eight.mkdir(parents=True)
      _tiff(eight / f"{name}_ps_8bit.tiff", np.clip(scene[:3] * 255, 0, 255).astype(np.uint8))
    lr_scene = _area_mean(scene, lr_h, lr_w)  # R, G, B, NIR at 10 m
    revisits = min(count, KAGGLE_REVISITS) if layout == "kaggle" else count
    for product in products:
      lr_folder = out / "lr_dataset" / name / product
      lr_folder.mkdir(parents=True)
      band_names = PRODUCTS[product]
      for n in range(1, revisits + 1):
        bands = np.empty((len(band_names), lr_h, lr_w), np.float32)
        for i, band in enumerate(band_names):
          source = {"B04": 0, "B03": 1, "B02": 2, "B08": 3, "B8A": 3}.get(band, i % 4)
          bands[i] = lr_scene[source] * (1 + 0.02 * rng.standard_normal()) + rng.normal(0, 0.003, (lr_h, lr_w))
        clm = np.zeros((lr_h, lr_w), np.float32)
        scl = np.full((lr_h, lr_w), 4, np.float32)  # vegetation
        data_mask = np.ones((lr_h, lr_w), np.float32)
        if n in CLOUDY:
          cy, cx, r = rng.integers(4, lr_h - 4), rng.integers(4, lr_w - 4), 3 + n % 4
          yy, xx = np.mgrid[0:lr_h, 0:lr_w]
          cloud = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
          bands[:, cloud] = 0.9
          clm[cloud], scl[cloud] = 1, 9
        if n == NO_DATA_EDGE:
          bands[:, :, :3] = 0
          clm[:, :3], scl[:, :3], data_mask[:, :3] = 255, 0, 0
        stem = lr_folder / f"{name}-{n}"
        _tiff(Path(f"{stem}-{product}_data.tiff"), bands)
        _tiff(Path(f"{stem}-CLM.tiff"), clm[None])
        _tiff(Path(f"{stem}-CLP.tiff"), (clm[None] == 1) * np.float32(230))
        _tiff(Path(f"{stem}-dataMask.tiff"), data_mask[None])
        if product == "L2A":
          _tiff(Path(f"{stem}-SCL.tiff"), scl[None])
        date = f"2021-0{1 + n % 9}-1{n % 10}"
        Path(f"{stem}.metadata").write_text(json.dumps({
          "cloud_cover": float(np.round(rng.uniform(0, 40), 2)), "target_date": "2021-06-15 10:30:00",
          "delta": f"{abs(n * 3 - 10)} days, 0:00:00", "area": 2.5, "datetime": f"{date} 10:40:31"}))
        if product == "L2A":
          metadata_rows.append({"": name, "n": n, "lowres_date": date, "highres_date": "2021-06-15"})
  (out / "lr_dataset").mkdir(exist_ok=True)
  with open(out / SPLIT_CSV, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["", "tile", "IPCC Class", "SMOD", "source", "joint_class", "split"])
    rows = [(name, split) for name, (split, _, _) in AOIS.items()]
    rows += [("Landcover-1784876", "train"), ("UNHCR-NGAs037482", "train"), (MISSING, "train")]
    for i, (name, split) in enumerate(rows):
      source = name.split("-")[0].split(" ")[0]
      ipcc = "" if name == "Landcover-1784876" else "Settlement"
      writer.writerow([i, name, ipcc, 11, source, f"{source}/{ipcc}/11", split])
  with open(out / "metadata.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=["", "n", "lowres_date", "highres_date"])
    writer.writeheader()
    writer.writerows(metadata_rows)
  (out / "hr_dataset" / "README.txt").write_text("a stray file: not an AOI\n")
