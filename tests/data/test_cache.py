"""The on-disk cache of degraded images: computed once per image and scale, keyed by the pixels, never stale."""

import numpy as np

from supertiny.data.cache import cached_degrade
from supertiny.data.datasets import load_hr_folders
from supertiny.data.images import read_image
from supertiny.evaluate import degrade
from supertiny.ops import modcrop


def test_degraded_once_per_image_and_scale(tmp_path, assets):
  calls = []

  def counting(hr, scale):
    calls.append(scale)
    return degrade(hr, scale)

  hr = modcrop(read_image(assets / "Set5" / "baby.png"), 12)
  first = cached_degrade(hr, 3, counting, tmp_path)
  again = cached_degrade(hr, 3, counting, tmp_path)
  other = cached_degrade(hr, 4, counting, tmp_path)
  assert calls == [3, 4]
  np.testing.assert_array_equal(first, degrade(hr, 3))
  np.testing.assert_array_equal(again, first)
  assert first.dtype == np.uint8 and other.shape == (hr.shape[0] // 4, hr.shape[1] // 4, 3)

  edited = hr.copy()
  edited[0, 0, 0] ^= 1
  cached_degrade(edited, 3, counting, tmp_path)
  assert calls == [3, 4, 3]  # new pixels, new entry

  for entry in tmp_path.glob("*.npy"):
    entry.write_bytes(b"damaged")
  np.testing.assert_array_equal(cached_degrade(hr, 3, counting, tmp_path), first)
  assert calls == [3, 4, 3, 3]


def test_training_folders_read_the_cache(tmp_path, assets):
  fresh = load_hr_folders([assets / "Set5"], 2, 1, cache=tmp_path)
  assert len(list(tmp_path.glob("*.npy"))) == 5
  cached = load_hr_folders([assets / "Set5"], 2, 1, cache=tmp_path)
  plain = load_hr_folders([assets / "Set5"], 2, 1)
  for a, b, c in zip(fresh, cached, plain, strict=True):
    np.testing.assert_array_equal(a.lr, c.lr)
    np.testing.assert_array_equal(b.lr, c.lr)
