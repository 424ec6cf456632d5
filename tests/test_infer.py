"""Colour handling around the model call (Y models, grayscale, alpha) and tiled inference."""

from pathlib import Path

import numpy as np
import pytest

from supertiny.data.images import read_image
from supertiny.errors import SuperTinyError
from supertiny.infer import super_resolve, upscale_array, upscale_tiled
from supertiny.models import create_model
from supertiny.ops import imresize
from supertiny.runtime.cores import DeviceRunner

RNG = np.random.default_rng(11)


def test_y_channel_route_equals_rgb_for_a_linear_model():
  # bicubic is linear, so bicubic on Y plus bicubic on CbCr must equal bicubic on RGB
  image = RNG.random((10, 14, 3))
  via_y = super_resolve(create_model("bicubic", scale=2, channels=1), image)
  direct = super_resolve(create_model("bicubic", scale=2, channels=None), image)
  np.testing.assert_allclose(via_y, direct, atol=1e-5)
  np.testing.assert_allclose(direct, np.clip(imresize(image, 2.0), 0, 1), atol=1e-5)


def test_grayscale_through_rgb_model_stays_single_channel():
  gray = RNG.random((9, 9))
  out = super_resolve(create_model("bicubic", scale=3, channels=3), gray)
  assert out.shape == (27, 27, 1)
  np.testing.assert_allclose(out[..., 0], np.clip(imresize(gray, 3.0), 0, 1), atol=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_alpha_is_upscaled_with_bicubic_and_kept(channels):
  rgba = RNG.integers(0, 256, (8, 6, 4), dtype=np.uint8)
  out = upscale_array(create_model("nearest", scale=2, channels=channels), rgba)
  assert out.shape == (16, 12, 4) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[..., 3], imresize(rgba[..., 3], 2.0))


def test_sixteen_bit_stays_sixteen_bit():
  image = RNG.integers(0, 65536, (6, 6, 3), dtype=np.uint16)
  out = upscale_array(create_model("nearest", scale=2), image)
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, image.repeat(2, 0).repeat(2, 1))


# --- tiled inference ---------------------------------------------------------------------------------------------

BUTTERFLY = read_image(Path(__file__).parents[1] / "supertiny" / "samples" / "butterfly.png")


@pytest.mark.parametrize("name,scale,channels,options,bands,tiles", [
  ("espcn", 3, 1, {}, 3, (16, 23)),                    # Y model: chroma and luma take different routes
  ("edsr-baseline", 2, 3, {"blocks": 1}, 3, (21,)),
  ("fsrcnn", 2, 1, {}, 4, (25,)),                      # alpha upscaled with bicubic beside the model
  ("fsrcnn", 3, 1, {"centered": True, "border": "symmetric"}, 3, (17,)),  # each tile mirrored, its mirror cut
  ("bicubic", 4, None, {}, 1, (7, 12)),
])
def test_tiled_equals_untiled_byte_for_byte(name, scale, channels, options, bands, tiles):
  image = BUTTERFLY[40:77, 100:131]                    # 37 x 31: odd sizes, no tile divides them
  if bands == 4:
    image = np.concatenate([image, RNG.integers(0, 256, (*image.shape[:2], 1), dtype=np.uint8)], axis=2)
  elif bands == 1:
    image = image[..., 1:2]
  model = create_model(name, scale=scale, channels=channels, **options)
  whole = upscale_array(model, image)
  for tile in tiles:
    tiled = upscale_tiled(model, image, tile=tile)
    assert tiled.dtype == image.dtype and tiled.shape == whole.shape
    np.testing.assert_array_equal(tiled, whole, err_msg=f"tile {tile}")


def test_tiled_float_and_sixteen_bit_match_untiled():
  model = create_model("espcn", scale=2, channels=3)
  image = BUTTERFLY[:30, :35].astype(np.float64) / 255
  np.testing.assert_allclose(upscale_tiled(model, image, tile=14), super_resolve(model, image), atol=1e-5, rtol=0)
  # tinygrad compiles a 17 px tile and the 30x35 image into differently vectorised kernels whose float32 sums can
  # differ in the last bit (1.2e-7); at 16 bits (steps of 1.5e-5) that can move a rounding by one level
  deep = (BUTTERFLY[:30, :35].astype(np.uint16) * 257) ^ RNG.integers(0, 256, (30, 35, 3), dtype=np.uint16)
  tiled, whole = upscale_tiled(model, deep, tile=17), upscale_array(model, deep)
  assert tiled.dtype == np.uint16
  assert np.abs(tiled.astype(int) - whole).max() <= 1 and np.mean(tiled != whole) < 0.005


def test_the_device_only_ever_sees_tiles(monkeypatch):
  seen = []
  original = DeviceRunner.run

  def recording(self, key, fn, tile, *others, **options):
    out = original(self, key, fn, tile, *others, **options)  # a worker thread's cold call raises first
    seen.append(tile.shape)
    return out

  monkeypatch.setattr(DeviceRunner, "run", recording)
  image = RNG.integers(0, 256, (150, 97, 3), dtype=np.uint8)
  model = create_model("bicubic", scale=2, channels=None)
  out = upscale_tiled(model, image, tile=40, overlap=6)
  # 5 x 3 tiles of one shape: equal tiles of at most 40 px that overlap by at least 6
  assert set(seen) == {(35, 37, 3)} and len(seen) == 5 * 3
  np.testing.assert_array_equal(out, upscale_array(model, image))


def test_a_short_overlap_is_feathered_with_a_warning():
  model = create_model("bicubic", scale=2, channels=None)
  image = RNG.integers(0, 256, (48, 48, 1), dtype=np.uint8)
  with pytest.warns(UserWarning, match="seams are feathered"):
    out = upscale_tiled(model, image, tile=16, overlap=0)  # three tiles a side that just touch
  whole = upscale_array(model, image)
  differs = (out != whole)[..., 0]
  near_seam = np.zeros(96, bool)
  for seam in (32, 64):                                # tiles meet at input pixels 16 and 32
    near_seam[seam - 4: seam + 4] = True               # bicubic reaches 2 input (4 output) pixels across
  assert differs.any() and not differs[~near_seam][:, ~near_seam].any()
  with pytest.raises(SuperTinyError, match="larger than the overlap"):
    upscale_tiled(model, image, tile=8, overlap=8)


def test_memory_is_one_jit_per_core_whatever_the_sizes():
  from supertiny.runtime.runner import runner_for

  model = create_model("bicubic", scale=2, channels=None)
  for size in ((20, 30), (31, 17), (26, 26)):
    image = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
    ours = upscale_array(model, image).astype(int)
    # float32 sums (in tinygrad's own order where its internals are off) may round a rare value the other way
    assert np.abs(ours - imresize(image, 2.0)).max() <= 1 and np.mean(ours != imresize(image, 2.0)) < 1e-3
  assert all(len(lane.jits) <= 1 for lane in runner_for(model).pool.runners)
