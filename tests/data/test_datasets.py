"""Training data: degradation matches the evaluation protocol, patches stay aligned, and batches are a pure
function of (seed, step) so resumed runs see the same data."""

import numpy as np
import pytest

from supertiny.data.datasets import PatchSampler, load_hr_folders, load_paired_folders
from supertiny.data.images import read_image, to_float, write_image
from supertiny.errors import SuperTinyError
from supertiny.evaluate import degrade
from supertiny.ops import imresize, modcrop, rgb_to_y


def test_hr_folder_pairs_follow_the_protocol(assets):
  pairs = load_hr_folders([assets / "Set5"], scale=3, channels=1)
  bird = next(p for p in pairs if p.name == "bird")
  hr = modcrop(read_image(assets / "Set5" / "bird.png"), 3)
  np.testing.assert_allclose(bird.hr[..., 0], rgb_to_y(to_float(hr)), atol=1e-6)
  np.testing.assert_allclose(bird.lr[..., 0], rgb_to_y(to_float(degrade(hr, 3))), atol=1e-6)
  assert bird.lr.shape == (96, 96, 1) and bird.hr.shape == (288, 288, 1) and bird.lr.dtype == np.float32


def test_rescale_adds_smaller_copies_of_each_image(assets):
  """FSRCNN's augmentation: each HR image also at 0.8 and 0.6 of its size, each degraded by the protocol. The
  resized HR is checked against PIL's antialiased bicubic (an independent resampler: within a few levels)."""
  from PIL import Image

  pairs = load_hr_folders([assets / "Set5"], scale=3, channels=3, rescale=[0.8, 0.6])
  assert len(pairs) == 15 and sum(p.name.startswith("bird") for p in pairs) == 3
  original = read_image(assets / "Set5" / "bird.png")  # 288x288
  small = next(p for p in pairs if p.name == "bird@0.6")
  assert small.hr.shape == (171, 171, 3) and small.lr.shape == (57, 57, 3)  # round(288 * 0.6) = 173, modcrop 3
  pil = np.asarray(Image.fromarray(original).resize((173, 173), Image.BICUBIC))[:171, :171]
  assert np.abs(small.hr * 255 - pil).mean() < 2.0
  np.testing.assert_allclose(small.lr, to_float(degrade(np.round(small.hr * 255).astype(np.uint8), 3)), atol=1e-6)


def test_paired_folders_match_by_name_and_check_sizes(tmp_path, assets):
  (tmp_path / "hr").mkdir()
  (tmp_path / "lr").mkdir()
  hr = read_image(assets / "Set5" / "head.png")
  write_image(tmp_path / "hr" / "head.png", hr)
  write_image(tmp_path / "lr" / "head.png", imresize(hr, 1 / 4))
  (pair,) = load_paired_folders(tmp_path / "lr", tmp_path / "hr", scale=4, channels=3)
  assert pair.hr.shape == (280, 280, 3) and pair.lr.shape == (70, 70, 3)
  with pytest.raises(SuperTinyError, match="does not match"):
    load_paired_folders(tmp_path / "lr", tmp_path / "hr", scale=2, channels=3)
  write_image(tmp_path / "hr" / "extra.png", hr)
  with pytest.raises(SuperTinyError, match="extra.png: no LR image"):
    load_paired_folders(tmp_path / "lr", tmp_path / "hr", scale=4, channels=3)


def test_patches_are_aligned_augmented_and_deterministic(assets):
  pairs = load_hr_folders([assets / "Set5"], scale=2, channels=3)
  sampler = PatchSampler(pairs, scale=2, patch=12, batch=8, seed=3)
  lr, hr = sampler.batch_at(17)
  assert lr.shape == (8, 3, 12, 12) and hr.shape == (8, 3, 24, 24)
  # alignment: every LR patch is the 2x2 box average of its HR patch up to the bicubic blur
  box = hr.reshape(8, 3, 12, 2, 12, 2).mean(axis=(3, 5))
  assert np.abs(box - lr).mean() < 0.03
  again_lr, again_hr = PatchSampler(pairs, scale=2, patch=12, batch=8, seed=3).batch_at(17)
  np.testing.assert_array_equal(lr, again_lr)
  np.testing.assert_array_equal(hr, again_hr)
  assert not np.array_equal(lr, sampler.batch_at(18)[0])
  prefetched = list(sampler.prefetch(15, 19))
  assert [s for s, _, _ in prefetched] == [15, 16, 17, 18]
  np.testing.assert_array_equal(prefetched[2][1], lr)


def test_a_margin_draws_patches_from_the_image_mirrored_past_its_edges():
  """margin m: each patch is a crop of the image mirrored by numpy ('symmetric', m LR and m*scale HR pixels), with
  its HR crop aligned; patches reach into the mirror, and with shave = m the scored interior stays in the image."""
  from supertiny.data.datasets import Pair

  rng = np.random.default_rng(0)
  lr, hr = rng.random((14, 11, 1), dtype=np.float32), rng.random((28, 22, 1), dtype=np.float32)
  m, p = 3, 8
  mirror_lr = np.pad(lr, ((m, m), (m, m), (0, 0)), mode="symmetric")
  mirror_hr = np.pad(hr, ((2 * m, 2 * m), (2 * m, 2 * m), (0, 0)), mode="symmetric")
  sampler = PatchSampler([Pair("x", lr, hr)], scale=2, patch=p, batch=16, seed=1, augment=False, margin=m)
  corners = set()
  for step in range(8):
    lrs, hrs = sampler.batch_at(step)
    for lr_patch, hr_patch in zip(lrs[:, 0], hrs[:, 0], strict=True):
      (y, x), = [(y, x) for y in range(mirror_lr.shape[0] - p + 1) for x in range(mirror_lr.shape[1] - p + 1)
                 if np.array_equal(mirror_lr[y:y + p, x:x + p, 0], lr_patch)]
      np.testing.assert_array_equal(hr_patch, mirror_hr[2 * y:2 * (y + p), 2 * x:2 * (x + p), 0])
      corners.add((y, x))
  assert min(y for y, _ in corners) < m and max(x for _, x in corners) > lr.shape[1] - p + m  # into the mirror


def test_patch_larger_than_every_image_is_refused(assets):
  pairs = load_hr_folders([assets / "Set5"], scale=4, channels=1)
  with pytest.raises(SuperTinyError, match="patch size 200"):
    PatchSampler(pairs, scale=4, patch=200, batch=2)
