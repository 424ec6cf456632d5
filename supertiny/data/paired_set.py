"""A fixed set of LR/HR training and test pairs on disk, as the paper's 100-pair photo set was: found in a folder
of pairs as it is, made once from a folder of HR photos (centre crops, MATLAB-bicubic LR), or from a WorldStrat
root's benchmark chips."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SuperTinyError
from ..ops import imresize
from .images import from_float, list_images, read_image, write_image
from .pairs import colour_only, degrade, match_lr_files

LR_NAMES = ("LR", "lr", "low_res", "low")  # the paper set's Kaggle copy names them low_res / high_res
HR_NAMES = ("HR", "hr", "high_res", "high")
TEST_NAMES = ("test", "val", "valid", "validation")


@dataclass(frozen=True)
class PairedSet:
  """Folders of paired images matched by name: HR is exactly `scale` times LR."""
  train_lr: Path
  train_hr: Path
  test_lr: Path
  test_hr: Path
  scale: int
  lr_size: tuple[int, int]  # (height, width) of the first training LR image
  source: str  # how the set was made, in words

  def names(self, split: str) -> list[str]:
    return [p.stem for p in list_images(self.train_hr if split == "train" else self.test_hr)]


def _pick(folder: Path, names: tuple[str, ...]) -> Path | None:
  return next((folder / n for n in names if (folder / n).is_dir()), None)


def _lr_hr(folder: Path) -> tuple[Path, Path] | None:
  lr, hr = _pick(folder, LR_NAMES), _pick(folder, HR_NAMES)
  return (lr, hr) if lr is not None and hr is not None else None


def find_pairs(folder: Path) -> tuple[tuple[Path, Path], tuple[Path, Path] | None] | None:
  """((train LR, train HR), (test LR, test HR) or None for a pool to split) when `folder` is laid out as pairs:
  `train/{LR,HR}` with `test/{LR,HR}` (or val, low_res/high_res), or one pool `{LR,HR}`; None otherwise."""
  train = _lr_hr(folder / "train") if (folder / "train").is_dir() else None
  test_dir = _pick(folder, TEST_NAMES)
  if train is not None and test_dir is not None and (test := _lr_hr(test_dir)) is not None:
    return train, test
  pool = _lr_hr(folder)
  return (pool, None) if pool is not None else None


def _check_pairs(lr_folder: Path, hr_folder: Path, scale: int) -> tuple[int, int]:
  """The first LR image's size, after checking every pair has the same LR size and HR = scale x LR."""
  hr_files = list_images(hr_folder)
  if not hr_files:
    raise SuperTinyError(f"{hr_folder}: no images")
  size = None
  for hr_path, lr_path in match_lr_files(hr_files, lr_folder).items():
    lr, hr = read_image(lr_path), read_image(hr_path)
    if hr.shape[:2] != (lr.shape[0] * scale, lr.shape[1] * scale):
      raise SuperTinyError(f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is not {scale} times its LR image "
                           f"({lr.shape[1]}x{lr.shape[0]})")
    if size is None:
      size = lr.shape[:2]
    elif lr.shape[:2] != size:
      raise SuperTinyError(f"{lr_path}: {lr.shape[1]}x{lr.shape[0]}, but the set's first LR image is "
                           f"{size[1]}x{size[0]}: the study batches whole images, which must share one size")
  return size  # type: ignore[return-value]


def _link(source: Path, target: Path) -> None:
  target.parent.mkdir(parents=True, exist_ok=True)
  if target.exists() or target.is_symlink():
    target.unlink()
  try:
    os.symlink(source.resolve(), target)
  except OSError:  # file systems without links
    shutil.copyfile(source, target)


def split_pool(lr: Path, hr: Path, out: Path, test_fraction: float) -> tuple[tuple[Path, Path], tuple[Path, Path]]:
  """A pool of pairs split by name order (the last `test_fraction` for testing), as links under `out`."""
  files = match_lr_files(list_images(hr), lr)
  cut = len(files) - max(1, round(len(files) * test_fraction))
  if cut < 1:
    raise SuperTinyError(f"{hr}: {len(files)} pair(s) cannot be split into training and test pairs")
  for index, (path, lr_path) in enumerate(files.items()):
    split = "train" if index < cut else "test"
    _link(path, out / split / "HR" / path.name)
    _link(lr_path, out / split / "LR" / lr_path.name)
  return (out / "train" / "LR", out / "train" / "HR"), (out / "test" / "LR", out / "test" / "HR")


def make_pairs(photos: Path, out: Path, count: int, hr_side: int, scale: int, train: int) -> None:
  """`count` pairs from the first photos by name that are at least `hr_side` on both sides: the centre
  hr_side x hr_side crop as HR and its MATLAB-bicubic downscale as LR, written as PNG under `out`
  (train/{LR,HR} for the first `train`, test/{LR,HR} for the rest). Written into a temporary folder first."""
  chosen = []
  for path in list_images(photos):
    image = colour_only(read_image(path), path)
    h, w = image.shape[:2]
    if min(h, w) >= hr_side and image.dtype == np.uint8:
      y, x = (h - hr_side) // 2, (w - hr_side) // 2
      chosen.append((path.stem, image[y: y + hr_side, x: x + hr_side]))
    if len(chosen) == count:
      break
  if len(chosen) < 2:
    raise SuperTinyError(f"{photos}: needs at least 2 8-bit photos of at least {hr_side}x{hr_side} px to make "
                         f"training and test pairs, found {len(chosen)}")
  train = min(train, len(chosen) - 1)
  partial = out.with_name(f".{out.name}.partial")
  shutil.rmtree(partial, ignore_errors=True)
  for index, (name, hr) in enumerate(chosen):
    split = "train" if index < train else "test"
    for side in ("HR", "LR"):
      (partial / split / side).mkdir(parents=True, exist_ok=True)
    write_image(partial / split / "HR" / f"{name}.png", hr)
    write_image(partial / split / "LR" / f"{name}.png", degrade(hr, scale))
  partial.replace(out)


def make_worldstrat_pairs(root: Path, out: Path, scale: int) -> int:
  """Pairs from a WorldStrat root's benchmark chips (data.worldstrat.benchmark_chips: the first revisit in true
  colour, 50x50 LR chips, their 156x156 SPOT chips): LR as it is and HR resized to exactly `scale` times it
  (MATLAB bicubic), both reflectance clipped to [0, 1] and stored as 8-bit PNG; the AOIs of the CSV's test and val
  splits are the test pairs, the rest train. Written into a temporary folder first; returns the pair count."""
  from .worldstrat import WorldStrat, benchmark_chips

  partial = out.with_name(f".{out.name}.partial")
  shutil.rmtree(partial, ignore_errors=True)
  count = 0
  for split, side in (("train", "train"), ("val", "test"), ("test", "test")):
    for sample in WorldStrat(root, split, revisits=1, select="first", bands="rgb"):
      for chip in benchmark_chips(sample):
        lr = np.moveaxis(chip.lr[0], 0, -1).astype(np.float64)
        hr = imresize(np.moveaxis(chip.hr, 0, -1).astype(np.float64), size=(lr.shape[0] * scale, lr.shape[1] * scale))
        name = chip.name.replace("/", "_").replace(" ", "_")
        for kind, image in (("LR", lr), ("HR", hr)):
          (partial / side / kind).mkdir(parents=True, exist_ok=True)
          write_image(partial / side / kind / f"{name}.png", from_float(image, np.uint8))
        count += 1
  if not (partial / "train").is_dir() or not (partial / "test").is_dir():
    shutil.rmtree(partial, ignore_errors=True)
    raise SuperTinyError(f"{root}: the study needs WorldStrat AOIs in train and in val or test")
  partial.replace(out)
  return count


def paired_set(data: Path, out: Path, scale: int = 4, count: int = 100, hr_side: int = 320, train: int = 80,
               test_fraction: float = 0.2) -> PairedSet:
  """The study's pairs: `data` as it is when laid out as pairs (a pool is split by name, the last `test_fraction`
  for testing, as links under `out`), else made once into `out` from a WorldStrat root's benchmark chips (see
  make_worldstrat_pairs) or from `data`'s photos (see make_pairs)."""
  data = Path(data)
  if not data.is_dir():
    raise SuperTinyError(f"{data}: no such folder (pass --data: a folder of photos, or of LR/HR pairs)")
  found = find_pairs(data)
  if (data / "hr_dataset").is_dir() and (data / "lr_dataset").is_dir():  # a WorldStrat root: its benchmark chips
    if not (out / "test" / "HR").is_dir():
      make_worldstrat_pairs(data, out, scale)
    train_lr, train_hr = out / "train" / "LR", out / "train" / "HR"
    test = (out / "test" / "LR", out / "test" / "HR")
    source = (f"{len(list_images(train_hr))} + {len(list_images(test[1]))} WorldStrat benchmark chips from {data} "
              f"(first revisit, true colour; LR 50x50, SPOT resized to x{scale}; test = the val and test AOIs)")
  elif found is not None:
    (train_lr, train_hr), test = found
    source = f"the pairs in {data}"
    if test is None:
      (train_lr, train_hr), test = split_pool(train_lr, train_hr, out, test_fraction)
      source += f" (the last {test_fraction:.0%} by name held out for testing)"
  else:
    if not (out / "test" / "HR").is_dir():
      make_pairs(data, out, count, hr_side, scale, train)
    train_lr, train_hr = out / "train" / "LR", out / "train" / "HR"
    test = (out / "test" / "LR", out / "test" / "HR")
    lr_side = hr_side // scale
    source = (f"{len(list_images(train_hr))} + {len(list_images(test[1]))} pairs made from {data}: centre "
              f"{hr_side}x{hr_side} crops, LR {lr_side}x{lr_side} by MATLAB bicubic x{scale}")
  size = _check_pairs(train_lr, train_hr, scale)
  test_size = _check_pairs(*test, scale)
  if test_size != size:
    raise SuperTinyError(f"{test[1]}: test pairs are {test_size[1]}x{test_size[0]} LR, training pairs "
                         f"{size[1]}x{size[0]}: one size is needed")
  return PairedSet(train_lr, train_hr, test[0], test[1], scale, size, source)
