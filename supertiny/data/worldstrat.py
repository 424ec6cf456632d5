"""WorldStrat (Cornebise et al., NeurIPS 2022): Sentinel-2 revisits at 10 m paired with SPOT at 1.5 m.

Read exactly as ../shared/datasets/satellite/WORLDSTRAT_FORMAT.md (docs/satellite.md) describes the releases:
- both layouts: Zenodo (`hr_dataset/<AOI>/`, L2A and L1C revisits) and Kaggle (`hr_dataset/12bit/<AOI>/`, L2A
  only); entries of `hr_dataset/` that are not AOI folders (`8bit`, `12bit`, stray files) are skipped;
- AOI names may hold a space (`Amnesty POI-20-2-2`); revisits are sorted by their integer index `n`, not as text;
- HR is `<AOI>_ps.tiff` bands 1-3 (R, G, B) divided by 10000 (full scale of SPOT's 12-bit data);
- LR revisits are float32 reflectance, 12 bands (L2A) or 13 (L1C), of any size (not always square); every mask
  that exists (CLM, dataMask, SCL; stored as float32) is cast to integers and combined into one clear-pixel mask;
- the split CSV is de-duplicated, and the tiles it lists in train and also in val or test are kept in val/test
  only, so nothing leaks; AOIs without an HR file or without a revisit are skipped with one warning.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SuperTinyError
from ..ops import imresize, rgb_to_y
from .datasets import Pair
from .raster import read_raster

SPLIT_CSV = "stratified_train_val_test_split.csv"
SPLITS = ("train", "val", "test")
PRODUCTS = {"L2A": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"),
            "L1C": ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")}
TRUE_COLOUR = ("B04", "B03", "B02")
HR_FULL_SCALE = 10000.0  # SPOT 12-bit digital numbers: 10000 is 1.0
AOI_NAME = re.compile(r"^(Landcover-\d+|UNHCR-([A-Z]{3}s\d{6}|\d+)|ASMSpotter-\d+-[1-3]-[1-3]"
                      r"|Amnesty POI-\d+-[1-3]-[1-3])$")
# SCL classes that are not a clear view of the ground: no data, defective, cloud shadow, clouds, cirrus
SCL_NOT_CLEAR = (0, 1, 3, 8, 9, 10)


@dataclass(frozen=True)
class Revisit:
  """One Sentinel-2 acquisition of an AOI: its index `n`, data file and the mask files that exist."""
  n: int
  data: Path
  masks: dict[str, Path]
  metadata: Path | None

  def read(self, bands: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(bands x H x W float32 reflectance, H x W clear-pixel mask)."""
    pixels = read_raster(self.data).pixels
    if pixels.dtype != np.float32 and pixels.dtype != np.float64:
      raise SuperTinyError(f"{self.data}: {pixels.dtype} revisit; WorldStrat's are float32 reflectance")
    if pixels.shape[2] <= max(bands):
      raise SuperTinyError(f"{self.data}: {pixels.shape[2]} bands, band {max(bands) + 1} asked for")
    data = np.moveaxis(pixels[..., list(bands)], -1, 0).astype(np.float32)
    clear = np.isfinite(data).all(axis=0)
    for kind, path in self.masks.items():
      mask = read_raster(path).pixels[..., 0]
      if mask.shape != clear.shape:
        raise SuperTinyError(f"{path}: {mask.shape[1]}x{mask.shape[0]} mask for a {clear.shape[1]}x{clear.shape[0]} "
                             "revisit")
      codes = np.nan_to_num(mask, nan=255).astype(np.int64)  # stored as float32: cast before comparing classes
      if kind == "CLM":
        clear &= codes == 0  # 0 clear, 1 cloud, 255 no data
      elif kind == "dataMask":
        clear &= codes == 1
      elif kind == "SCL":
        clear &= ~np.isin(codes, SCL_NOT_CLEAR)
    return data, clear

  def info(self) -> dict:
    """The revisit's one-line JSON metadata (dates and durations are strings), or {}."""
    if self.metadata is None:
      return {}
    try:
      return json.loads(self.metadata.read_text())
    except (OSError, ValueError) as exc:
      raise SuperTinyError(f"{self.metadata}: not one JSON object ({exc})") from None


@dataclass
class Sample:
  """One AOI: `lr` k x bands x H x W float32 reflectance (the chosen revisits, repeated when fewer than k exist),
  `clear` k x H x W (clear pixels of each), `hr` 3 x H' x W' float32 (R, G, B; 1.0 = 10000), `revisits` the n of
  each row of `lr`, `real` how many rows are distinct revisits."""
  name: str
  lr: np.ndarray
  clear: np.ndarray
  hr: np.ndarray
  revisits: tuple[int, ...]
  real: int


def natural_key(text: str) -> list:
  """Sort key that orders the numbers inside names by value (`-2-` before `-10-`), as natsort does."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def read_split(path: Path) -> dict[str, str]:
  """AOI -> split from the split CSV: duplicate rows dropped; a tile listed in train and in val or test goes to val
  or test only (the CSV lists 11 such tiles; training on them would leak)."""
  try:
    with open(path, newline="", encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
  except (OSError, UnicodeDecodeError, csv.Error) as exc:
    raise SuperTinyError(f"{path}: not a readable split CSV ({exc})") from None
  if not rows or "tile" not in rows[0] or "split" not in rows[0]:
    raise SuperTinyError(f"{path}: a WorldStrat split CSV needs the columns 'tile' and 'split'")
  splits: dict[str, set[str]] = {}
  for row in rows:
    tile, split = (row.get("tile") or "").strip(), (row.get("split") or "").strip()
    if split not in SPLITS:
      raise SuperTinyError(f"{path}: tile {tile!r} has split {split!r}; expected one of {', '.join(SPLITS)}")
    splits.setdefault(tile, set()).add(split)
  chosen = {}
  for tile, named in splits.items():
    held_out = sorted(named - {"train"})
    chosen[tile] = held_out[0] if held_out else "train"
  return chosen


class WorldStrat:
  """The AOIs of one split of a WorldStrat root, as `Sample`s (`dataset[i]`, `for sample in dataset`).

  `revisits`: k revisits per sample; `select`: "clearest" (the k with the most clear pixels by the masks) or
  "first" (n = 1..k, as the released benchmark); `product`: "L2A" or "L1C" (Zenodo only); `bands`: "all", "rgb"
  (B04, B03, B02) or band names; `split`: "train", "val", "test" or "all" (every AOI of the CSV, or every AOI
  folder when the root has no CSV)."""

  def __init__(self, root: str | Path, split: str = "train", revisits: int = 8, select: str = "clearest",
               product: str = "L2A", bands: str | Sequence[str] = "all"):
    self.root = Path(root)
    if split not in (*SPLITS, "all"):
      raise SuperTinyError(f"unknown split {split!r}: use train, val, test or all")
    if select not in ("clearest", "first"):
      raise SuperTinyError(f"unknown revisit selection {select!r}: use clearest or first")
    if product not in PRODUCTS:
      raise SuperTinyError(f"unknown product {product!r}: use L2A or L1C")
    if revisits < 1:
      raise SuperTinyError(f"revisits must be at least 1, got {revisits}")
    self.split, self.k, self.select, self.product = split, revisits, select, product
    self.band_names = self._bands(bands)
    self.band_indices = [PRODUCTS[product].index(b) for b in self.band_names]
    hr_dataset, lr_dataset = self.root / "hr_dataset", self.root / "lr_dataset"
    if not hr_dataset.is_dir() or not lr_dataset.is_dir():
      raise SuperTinyError(f"{self.root}: not a WorldStrat root (it needs hr_dataset/ and lr_dataset/, as the Zenodo "
                           "and Kaggle releases unpack)")
    self.layout = "kaggle" if (hr_dataset / "12bit").is_dir() else "zenodo"
    self.hr_root = hr_dataset / "12bit" if self.layout == "kaggle" else hr_dataset
    if self.layout == "kaggle" and product == "L1C":
      raise SuperTinyError(f"{self.root}: the Kaggle release has no L1C revisits; use product L2A")
    self.names, self.skipped = self._aois()
    if not self.names:
      raise SuperTinyError(f"{self.root}: no AOI of split {split!r} has an HR image and a {product} revisit")
    if self.skipped:
      shown = ", ".join(self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
      warnings.warn(f"{self.root}: skipped {len(self.skipped)} AOI(s) without an HR image or a {product} revisit: "
                    f"{shown}", stacklevel=2)

  def _bands(self, bands: str | Sequence[str]) -> tuple[str, ...]:
    names = PRODUCTS[self.product] if bands == "all" else TRUE_COLOUR if bands == "rgb" else tuple(bands)
    unknown = [b for b in names if b not in PRODUCTS[self.product]]
    if unknown or not names:
      raise SuperTinyError(f"unknown {self.product} band(s) {', '.join(unknown) or '(none)'}: use all, rgb or names "
                           f"from {', '.join(PRODUCTS[self.product])}")
    return tuple(names)

  def _aois(self) -> tuple[list[str], list[str]]:
    csv_path = self.root / SPLIT_CSV
    if csv_path.is_file():
      split_of = read_split(csv_path)
      listed = [t for t, s in split_of.items() if self.split in ("all", s)]
    elif self.split == "all":
      listed = [p.name for p in self.hr_root.iterdir() if p.is_dir() and p.name not in ("8bit", "12bit")]
    else:
      raise SuperTinyError(f"{self.root}: no {SPLIT_CSV}, so there is no {self.split!r} split (use split 'all')")
    names, skipped = [], []
    for name in sorted(listed, key=natural_key):
      (names if self.hr_file(name).is_file() and self.revisit_files(name) else skipped).append(name)
    return names, skipped

  def hr_file(self, name: str) -> Path:
    return self.hr_root / name / f"{name}_ps.tiff"

  def revisit_files(self, name: str) -> list[Revisit]:
    """The AOI's revisits of this product, by their integer n."""
    folder = self.root / "lr_dataset" / name / self.product
    if not folder.is_dir():
      return []
    pattern = re.compile(rf"^{re.escape(name)}-(\d+)-{self.product}_data\.tiff?$")
    found = []
    for path in folder.iterdir():
      match = pattern.match(path.name)
      if match:
        n = int(match.group(1))
        masks = {kind: folder / f"{name}-{n}-{kind}.tiff" for kind in ("CLM", "dataMask", "SCL")}
        metadata = folder / f"{name}-{n}.metadata"
        found.append(Revisit(n, path, {k: p for k, p in masks.items() if p.is_file()},
                             metadata if metadata.is_file() else None))
    return sorted(found, key=lambda r: r.n)

  def __len__(self) -> int:
    return len(self.names)

  def __iter__(self) -> Iterator[Sample]:
    for i in range(len(self)):
      yield self[i]

  def __getitem__(self, index: int) -> Sample:
    name = self.names[index]
    revisits = self.revisit_files(name)
    chosen = revisits[: self.k] if self.select == "first" else revisits  # "clearest" reads all to rank them
    read = [(r, *r.read(self.band_indices)) for r in chosen]
    height = min(d.shape[1] for _, d, _ in read)
    width = min(d.shape[2] for _, d, _ in read)
    if any(d.shape[1:] != (height, width) for _, d, _ in read):  # revisits of one AOI normally agree; crop if not
      read = [(r, d[:, :height, :width], c[:height, :width]) for r, d, c in read]
    if self.select == "clearest":
      order = sorted(range(len(read)), key=lambda i: (-float(read[i][2].mean()), read[i][0].n))
      read = [read[i] for i in order[: self.k]]
    real = len(read)
    rows = [read[i % real] for i in range(self.k)]  # fewer than k: repeat the ones there are
    return Sample(name, np.stack([d for _, d, _ in rows]), np.stack([c for _, _, c in rows]), self.read_hr(name),
                  tuple(r.n for r, _, _ in rows), real)

  def read_hr(self, name: str) -> np.ndarray:
    """3 x H x W float32: bands 1-3 (R, G, B) of `<AOI>_ps.tiff` over 10000, not clipped."""
    path = self.hr_file(name)
    pixels = read_raster(path).pixels
    if pixels.shape[2] < 3:
      raise SuperTinyError(f"{path}: {pixels.shape[2]} band(s); WorldStrat's _ps.tiff has R, G, B and NIR")
    return (np.moveaxis(pixels[..., :3], -1, 0).astype(np.float32) / np.float32(HR_FULL_SCALE))


# The released benchmark's grid (WORLDSTRAT_FORMAT.md section 7): revisits resized to 160x160, SPOT to 500x500,
# 50x50 LR chips at stride 50 and the HR chips under them, a ratio of 500 / 160 = 3.125
BENCHMARK_LR, BENCHMARK_HR, CHIP = 160, 500, 50


@dataclass
class Chip:
  """One benchmark chip: `lr` k x bands x 50 x 50, `clear` k x 50 x 50, `hr` 3 x 156 x 156, named `AOI/yY-xX` by
  the chip's LR corner."""
  name: str
  lr: np.ndarray
  clear: np.ndarray
  hr: np.ndarray


def benchmark_chips(sample: Sample) -> list[Chip]:
  """The 9 chips of an AOI as the released benchmark cuts them: every revisit resized to 160x160 (bilinear,
  antialiased; masks nearest), SPOT to 500x500 (bilinear, antialiased) and clamped to [0, 1]; LR chips of 50 at
  corners 0, 50, 100, HR chips of round(50 x 3.125) = 156 at round(corner x 3.125) (Python rounds half to even:
  312.5 -> 312). The upstream per-band normalisation is left out: SuperTiny's models take reflectance."""
  lr = np.stack([np.moveaxis(imresize(np.moveaxis(r, 0, -1).astype(np.float64), size=(BENCHMARK_LR,) * 2,
                                      method="bilinear"), -1, 0) for r in sample.lr]).astype(np.float32)
  clear = np.stack([imresize(c.astype(np.uint8), size=(BENCHMARK_LR,) * 2, method="nearest") > 0
                    for c in sample.clear])
  hr = imresize(np.moveaxis(sample.hr, 0, -1).astype(np.float64), size=(BENCHMARK_HR,) * 2, method="bilinear")
  hr = np.moveaxis(np.clip(hr, 0.0, 1.0), -1, 0).astype(np.float32)
  ratio = BENCHMARK_HR / BENCHMARK_LR
  size = round(CHIP * ratio)
  chips = []
  for y in range(0, BENCHMARK_LR - CHIP + 1, CHIP):
    for x in range(0, BENCHMARK_LR - CHIP + 1, CHIP):
      hy, hx = round(y * ratio), round(x * ratio)
      chips.append(Chip(f"{sample.name}/y{y}-x{x}", lr[:, :, y: y + CHIP, x: x + CHIP],
                        clear[:, y: y + CHIP, x: x + CHIP], hr[:, hy: hy + size, hx: hx + size]))
  return chips


def revisit_stack(lr: np.ndarray, clear: np.ndarray, masks: bool) -> np.ndarray:
  """k x C x h x w revisits (and k x h x w clear masks) as one input, in their order: kC x h x w, or k(C + 1) with
  `masks` (each revisit's bands, then its clear mask: the fusion model's input)."""
  parts = [np.concatenate([bands, mask[None].astype(np.float32)]) if masks else bands
           for bands, mask in zip(lr, clear, strict=True)]
  return np.concatenate(parts)


def _y(image: np.ndarray) -> np.ndarray:
  return rgb_to_y(image)[..., None]


def training_pairs(root: str | Path, scale: int, channels: int, split: str = "train", revisits: int = 1,
                   masks: bool = False) -> list[Pair]:
  """One `Pair` per AOI of a split, for `supertiny train`: the clearest L2A revisit in true colour (B04, B03, B02
  reflectance) as LR, and the SPOT R, G, B (over 10000) resampled with MATLAB bicubic to exactly `scale` times the
  LR grid as HR, since WorldStrat's ratio (10 m to 1.5 m) is not an integer; both clipped to [0, 1]. `channels` 1
  takes MATLAB's Y of both. `revisits` k > 1: the k clearest revisits stacked as the LR channels (`revisit_stack`;
  with `masks`, each followed by its clear mask), for multi-revisit models."""
  pairs = []
  for sample in WorldStrat(root, split, revisits=revisits, select="clearest", bands="rgb"):
    views = np.clip(sample.lr.astype(np.float64), 0.0, 1.0)  # k x 3 x h x w
    if channels == 1:
      views = np.stack([np.moveaxis(_y(np.moveaxis(v, 0, -1)), -1, 0) for v in views])
    lr = np.moveaxis(revisit_stack(views, sample.clear, masks), 0, -1)
    size = (lr.shape[0] * scale, lr.shape[1] * scale)
    hr = np.clip(imresize(np.moveaxis(sample.hr, 0, -1).astype(np.float64), size=size), 0.0, 1.0)
    if channels == 1:
      hr = _y(hr)
    pairs.append(Pair(sample.name, lr.astype(np.float32), hr.astype(np.float32)))
  return pairs
