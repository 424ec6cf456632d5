"""Colour handling around the model call: Y models, grayscale, alpha."""

import numpy as np
import pytest

from supertiny.infer import super_resolve, upscale_array
from supertiny.models import create_model
from supertiny.ops import imresize

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
