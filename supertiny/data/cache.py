"""An on-disk cache of degraded LR images, so the MATLAB-bicubic downscale of a training image is computed once per
image and scale, not once per run. Entries are keyed by the HR pixels themselves (not the file name or time), so an
edited image never reads a stale LR; each is a .npy file written atomically."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .images import atomic_output

VERSION = "matlab-bicubic-1"  # change when the degradation changes: old entries are then never read


def cache_folder() -> Path:
  """$SUPERTINY_CACHE, else $XDG_CACHE_HOME/supertiny/degraded, else ~/.cache/supertiny/degraded."""
  if os.environ.get("SUPERTINY_CACHE"):
    return Path(os.environ["SUPERTINY_CACHE"])
  base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
  return base / "supertiny" / "degraded"


def cached_degrade(hr: np.ndarray, scale: int, degrade: Callable[[np.ndarray, int], np.ndarray],
                   folder: Path) -> np.ndarray:
  """degrade(hr, scale), read from `folder` when an earlier call stored it."""
  digest = hashlib.sha256(f"{VERSION}|x{scale}|{hr.dtype.str}|{hr.shape}|".encode())
  digest.update(np.ascontiguousarray(hr).data)
  entry = folder / f"{digest.hexdigest()[:32]}.npy"
  expected = (hr.shape[0] // scale, hr.shape[1] // scale, hr.shape[2])
  try:
    lr = np.load(entry, allow_pickle=False)
    if lr.shape == expected and lr.dtype == hr.dtype:
      return lr
  except (OSError, ValueError):
    pass  # absent or damaged: compute it again
  lr = degrade(hr, scale)
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(entry) as tmp, open(tmp, "wb") as f:
      np.save(f, lr, allow_pickle=False)
  except OSError:
    pass  # a read-only or full disk only costs the cache, never the run
  return lr
