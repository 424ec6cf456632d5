"""Training data: HR folders degraded on the fly (once per image and scale), paired LR/HR folders, and a
deterministic patch sampler whose batch for step k depends only on (seed, k), so a resumed run sees exactly the
batches an uninterrupted one would, and a background thread can prepare them ahead of the training step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SuperTinyError
from ..ops import rgb_to_y
from .images import list_images, to_float
from .pairs import load_pair, match_lr_files


@dataclass
class Pair:
  """One training image: LR and HR as float32 HxWxC in [0, 1], HR exactly `scale` times LR."""
  name: str
  lr: np.ndarray
  hr: np.ndarray


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """Gray or RGB integer image -> float32 in the model's input space: 1 = Y (MATLAB rgb2ycbcr), 3 = RGB."""
  image = to_float(image)
  if channels == 1 and image.shape[2] == 3:
    image = rgb_to_y(image)[..., None]
  elif channels == 3 and image.shape[2] == 1:
    image = np.repeat(image, 3, axis=2)
  return image.astype(np.float32)


def _load(hr_path: Path, scale: int, channels: int, lr_path: Path | None = None, cache: Path | None = None,
          rescale: float = 1.0) -> Pair:
  # load_pair drops alpha, refuses other band counts, modcrops and degrades exactly as evaluation does
  lr, hr = load_pair(hr_path, scale, lr_path, check_size=False, cache=cache, rescale=rescale)
  name = hr_path.stem if rescale == 1.0 else f"{hr_path.stem}@{rescale:g}"
  return Pair(name, _to_channels(lr, channels), _to_channels(hr, channels))


def load_hr_folders(folders: Sequence[str | Path], scale: int, channels: int, cache: Path | None = None,
                    exclude: Collection[Path] = (), rescale: Sequence[float] = ()) -> list[Pair]:
  """Every image of the folders (but those in `exclude`, resolved paths), modcropped and degraded with MATLAB
  bicubic: computed once per run, or once per image and scale with a `cache` folder (data.cache). `rescale`: each
  image also made this many times its size first (MATLAB bicubic, rounded), one more pair per factor (1 = as is)."""
  factors = list(dict.fromkeys([1.0, *rescale]))
  return [_load(path, scale, channels, cache=cache, rescale=factor) for folder in folders
          for path in list_images(folder) if path.resolve() not in exclude for factor in factors]


def load_paired_folders(lr_folder: str | Path, hr_folder: str | Path, scale: int, channels: int) -> list[Pair]:
  """Given LR/HR pairs matched by file name; sizes must agree with the scale (HR may exceed it by a modcrop)."""
  hr_files = list_images(hr_folder)
  return [_load(hr, scale, channels, lr) for hr, lr in match_lr_files(hr_files, lr_folder).items()]


class PatchSampler:
  """Random aligned LR/HR patches with flips and 90-degree rotations; batch k is a function of (seed, k). `margin`:
  LR pixels of mirror added around every image first, so patches reach past its edges."""

  def __init__(self, pairs: list[Pair], scale: int, patch: int, batch: int, seed: int = 0, augment: bool = True,
               margin: int = 0):
    if margin:  # images mirrored past their edges (numpy 'symmetric'), LR by `margin` pixels and HR to match
      pairs = [Pair(p.name, np.pad(p.lr, ((margin, margin), (margin, margin), (0, 0)), mode="symmetric"),
                    np.pad(p.hr, ((margin * scale,) * 2, (margin * scale,) * 2, (0, 0)), mode="symmetric"))
               for p in pairs]
    usable = [p for p in pairs if min(p.lr.shape[:2]) >= patch]
    if not usable:
      raise SuperTinyError(f"no training image is at least {patch} LR pixels on each side (patch size {patch})")
    self.pairs, self.scale, self.patch, self.batch, self.seed, self.augment = usable, scale, patch, batch, seed, augment

  def batch_at(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) float32 NCHW batches for training step `step`."""
    rng = np.random.default_rng([self.seed, step])
    p, s = self.patch, self.scale
    lrs, hrs = [], []
    for index in rng.integers(0, len(self.pairs), self.batch):
      pair = self.pairs[index]
      y = int(rng.integers(0, pair.lr.shape[0] - p + 1))
      x = int(rng.integers(0, pair.lr.shape[1] - p + 1))
      lr = pair.lr[y: y + p, x: x + p]
      hr = pair.hr[y * s: (y + p) * s, x * s: (x + p) * s]
      if self.augment:
        flip, turns = bool(rng.integers(2)), int(rng.integers(4))
        if flip:
          lr, hr = lr[:, ::-1], hr[:, ::-1]
        lr, hr = np.rot90(lr, turns), np.rot90(hr, turns)
      lrs.append(lr.transpose(2, 0, 1))
      hrs.append(hr.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(lrs)), np.ascontiguousarray(np.stack(hrs))

  def prefetch(self, start: int, stop: int, depth: int = 8) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (step, LR, HR) for start <= step < stop, prepared by a background thread `depth` steps ahead."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    halt = threading.Event()

    def produce() -> None:
      try:
        for step in range(start, stop):
          if halt.is_set():
            return
          ready.put((step, *self.batch_at(step)))
      except BaseException as exc:  # handed to the training loop, which would otherwise wait for it forever
        ready.put(exc)
        return
      ready.put(None)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
      while (item := ready.get()) is not None:
        if isinstance(item, BaseException):
          raise item
        yield item
    finally:
      halt.set()
