"""Ops against independent references: PyTorch for pixel shuffle and resampling, scikit-image and MATLAB's
documented values for colour conversion."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.color import rgb2ycbcr as sk_rgb2ycbcr
from skimage.color import ycbcr2rgb as sk_ycbcr2rgb
from tinygrad import Tensor, dtypes

from supertiny.ops import (
  imresize,
  modcrop,
  pixel_shuffle,
  pixel_unshuffle,
  resize,
  resize_matrix,
  rgb_to_y,
  rgb_to_ycbcr,
  tanh,
  ycbcr_to_rgb,
)

RNG = np.random.default_rng(1234)


# --- pixel shuffle ---------------------------------------------------------------------------------------------

SHUFFLE_CASES = [((2, 12, 5, 7), 2), ((1, 27, 4, 3), 3), ((3, 32, 6, 5), 4), ((1, 4, 1, 1), 2)]


@pytest.mark.parametrize("shape,factor", SHUFFLE_CASES)
def test_pixel_shuffle_matches_torch_values_and_gradients(shape, factor):
  x = RNG.standard_normal(shape).astype(np.float32)
  upstream = RNG.standard_normal((shape[0], shape[1] // factor**2, shape[2] * factor, shape[3] * factor)).astype(
    np.float32)

  tx = Tensor(x)
  out = pixel_shuffle(tx, factor)
  (out * Tensor(upstream)).sum().backward()

  rx = torch.tensor(x, requires_grad=True)
  ref = torch.nn.PixelShuffle(factor)(rx)
  (ref * torch.tensor(upstream)).sum().backward()

  np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
  np.testing.assert_array_equal(tx.grad.numpy(), rx.grad.numpy())


@pytest.mark.parametrize("shape,factor", [((2, 3, 10, 14), 2), ((1, 2, 9, 6), 3)])
def test_pixel_unshuffle_matches_torch_and_inverts_shuffle(shape, factor):
  x = RNG.standard_normal(shape).astype(np.float32)
  tx = Tensor(x)
  out = pixel_unshuffle(tx, factor)
  out.square().sum().backward()
  rx = torch.tensor(x, requires_grad=True)
  ref = torch.nn.PixelUnshuffle(factor)(rx)
  ref.square().sum().backward()
  np.testing.assert_array_equal(out.numpy(), ref.detach().numpy())
  np.testing.assert_allclose(tx.grad.numpy(), rx.grad.numpy(), rtol=1e-6)
  np.testing.assert_array_equal(pixel_shuffle(out, factor).numpy(), x)


def test_pixel_shuffle_rejects_bad_channel_count():
  with pytest.raises(ValueError, match="multiple"):
    pixel_shuffle(Tensor.zeros(1, 5, 2, 2), 2)


# --- colour ----------------------------------------------------------------------------------------------------

def test_rgb_to_ycbcr_matches_matlab_documented_values():
  # MATLAB rgb2ycbcr: black -> (16, 128, 128), white -> (235, 128, 128), red -> (81.481, 90.203, 240)
  colours = np.array([[[0, 0, 0], [1, 1, 1], [1, 0, 0]]], dtype=np.float64)
  expected = np.array([[[16, 128, 128], [235, 128, 128], [81.481, 90.203, 240]]]) / 255
  np.testing.assert_allclose(rgb_to_ycbcr(colours), expected, atol=1e-12)


def test_rgb_to_ycbcr_matches_scikit_image():
  rgb = RNG.random((17, 13, 3))
  ours = rgb_to_ycbcr(rgb) * 255
  np.testing.assert_allclose(ours, sk_rgb2ycbcr(rgb), atol=1e-9)
  np.testing.assert_allclose(rgb_to_y(rgb) * 255, sk_rgb2ycbcr(rgb)[..., 0], atol=1e-9)
  np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
  np.testing.assert_allclose(ycbcr_to_rgb(ours / 255), sk_ycbcr2rgb(ours), atol=1e-9)


def test_colour_tensor_and_array_agree():
  rgb = RNG.random((2, 3, 9, 11)).astype(np.float32)
  expected = np.stack([rgb_to_ycbcr(im.transpose(1, 2, 0)) for im in rgb]).transpose(0, 3, 1, 2)
  np.testing.assert_allclose(rgb_to_ycbcr(Tensor(rgb)).numpy(), expected, atol=1e-6)
  np.testing.assert_allclose(rgb_to_y(Tensor(rgb)).numpy(), expected[:, :1], atol=1e-6)
  np.testing.assert_allclose(ycbcr_to_rgb(Tensor(expected.astype(np.float32))).numpy(), rgb, atol=1e-5)


# --- resize ----------------------------------------------------------------------------------------------------
# PyTorch's antialiased bicubic/bilinear uses the same kernels (Keys a = -0.5, support widened by 1/scale) but
# renormalises at the borders where MATLAB mirrors. Feeding PyTorch a symmetric-padded image and cropping its
# output therefore gives an independent reference for every pixel, borders included.

def _torch_reference(image: np.ndarray, scale: float, method: str, pad: int) -> np.ndarray:
  padded = np.pad(image, pad, mode="symmetric")
  out_size = tuple(round(s * scale) for s in padded.shape)
  mode = {"bicubic": "bicubic", "bilinear": "bilinear"}[method]
  ref = F.interpolate(torch.tensor(padded)[None, None], size=out_size, mode=mode, antialias=True,
                      align_corners=False)[0, 0].numpy()
  crop = round(pad * scale)
  return ref[crop: crop + round(image.shape[0] * scale), crop: crop + round(image.shape[1] * scale)]


@pytest.mark.parametrize("method", ["bicubic", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3, 4, 1 / 2, 1 / 3, 1 / 4])
def test_imresize_matches_torch_on_symmetric_padding(method, scale):
  image = RNG.random((24, 36))  # divisible by 2, 3 and 4
  pad = 12  # LR and HR pixels: covers the widest support (4 / (1/4) = 16 taps)
  ours = imresize(image, scale, method=method)
  assert ours.shape == (round(24 * scale), round(36 * scale))
  np.testing.assert_allclose(ours, _torch_reference(image, scale, method, pad), atol=1e-12)


def test_imresize_non_integer_scale_output_size_and_values():
  image = RNG.random((30, 20))
  assert imresize(image, 1.5).shape == (45, 30)
  assert imresize(image, 0.7).shape == (21, 14)  # MATLAB: ceil(size * scale)
  assert imresize(image, 2.5).shape == (75, 50)
  # interior pixels for an explicit output size match PyTorch (same scale = out/in convention)
  ours = imresize(image, size=(45, 30))
  ref = F.interpolate(torch.tensor(image)[None, None], size=(45, 30), mode="bicubic", antialias=True)[0, 0].numpy()
  np.testing.assert_allclose(ours[4:-4, 4:-4], ref[4:-4, 4:-4], atol=1e-12)


def test_imresize_reproduces_quadratics_in_the_interior():
  # Keys' cubic with a = -0.5 is exact for polynomials up to degree 2 (the property MATLAB relies on)
  coords = np.arange(1, 41, dtype=np.float64)
  ramp = (0.3 * coords**2 - 2 * coords)[:, None] * np.ones((1, 8))
  up = imresize(ramp, 2.0)
  fine = (np.arange(1, 81) + 0.5) / 2  # output pixel centres in input coordinates
  np.testing.assert_allclose(up[6:-6, 3], (0.3 * fine**2 - 2 * fine)[6:-6], atol=1e-10)


def test_imresize_nearest_and_integer_rounding():
  image = RNG.integers(0, 256, (7, 5, 3), dtype=np.uint8)
  np.testing.assert_array_equal(imresize(image, 3, method="nearest"), image.repeat(3, 0).repeat(3, 1))
  up = imresize(image, 2.0)
  assert up.dtype == np.uint8
  np.testing.assert_array_equal(up, np.clip(np.round(imresize(image.astype(np.float64), 2.0)), 0, 255))
  image16 = RNG.integers(0, 65536, (8, 8), dtype=np.uint16)
  assert imresize(image16, 0.5).dtype == np.uint16


@pytest.mark.parametrize("scale", [2, 3, 0.5, 1.5])
def test_tensor_resize_matches_numpy_and_is_differentiable(scale):
  image = RNG.random((2, 3, 12, 10)).astype(np.float32)
  x = Tensor(image)
  out = resize(x, scale)
  expected = np.stack([imresize(im.transpose(1, 2, 0).astype(np.float64), scale) for im in image])
  np.testing.assert_allclose(out.numpy(), expected.transpose(0, 3, 1, 2), atol=1e-5)
  # resize is linear: the gradient of sum(out * g) is Mh^T g Mw
  upstream = RNG.random(out.shape).astype(np.float32)
  (out * Tensor(upstream)).sum().backward()
  mh = resize_matrix(12, out.shape[2], scale)
  mw = resize_matrix(10, out.shape[3], scale)
  np.testing.assert_allclose(x.grad.numpy(), mh.T @ upstream @ mw, atol=1e-4)


def test_resize_rejects_bad_arguments():
  with pytest.raises(ValueError):
    imresize(np.zeros((4, 4)), method="lanczos")
  with pytest.raises(ValueError):
    imresize(np.zeros((4, 4)))
  with pytest.raises(ValueError):
    imresize(np.zeros((4, 4)), -2)


def test_modcrop():
  image = np.zeros((13, 22, 3))
  assert modcrop(image, 4).shape == (12, 20, 3)
  assert modcrop(image, 1).shape == (13, 22, 3)


def test_rational_tanh_matches_torch_in_value_and_gradient():
  # dense over the fitted range, past the clamp, and down to tiny values where tanh(x) ~ x must hold relatively
  x = np.concatenate([np.linspace(-12, 12, 200_001), np.geomspace(1e-30, 1, 2_000), -np.geomspace(1e-30, 1, 2_000),
                      [0.0]]).astype(np.float32)
  t = torch.from_numpy(x.astype(np.float64)).requires_grad_()
  torch.tanh(t).sum().backward()
  ours = Tensor(x)
  (grad,) = tanh(ours).sum().gradient(ours)
  exact = np.tanh(x.astype(np.float64))
  np.testing.assert_allclose(tanh(ours).numpy(), exact, atol=3.5e-7, rtol=0)
  tiny = np.abs(x) < 1e-3
  np.testing.assert_allclose(tanh(Tensor(x[tiny])).numpy(), exact[tiny], rtol=1e-6, atol=0)
  np.testing.assert_allclose(grad.numpy(), t.grad.numpy(), atol=5e-7, rtol=0)


def test_rational_tanh_keeps_half_precision_inputs_half():
  x = np.linspace(-10, 10, 4001).astype(np.float16)
  out = tanh(Tensor(x))
  assert out.dtype == dtypes.half
  np.testing.assert_allclose(out.numpy().astype(np.float64), np.tanh(x.astype(np.float64)), atol=1e-3, rtol=0)


@pytest.mark.parametrize("method", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_integer_upsample_equals_matlab_imresize(method, scale):
  """ops.upsample (a convolution per output phase) gives MATLAB imresize's values, borders included."""
  from supertiny.ops import upsample

  rng = np.random.default_rng(scale)
  for h, w in ((5, 7), (17, 12), (2, 3)):
    image = rng.random((h, w, 2))
    ours = upsample(Tensor(image.transpose(2, 0, 1)[None].astype(np.float32)), scale, method).numpy()[0]
    np.testing.assert_allclose(ours.transpose(1, 2, 0), imresize(image, float(scale), method=method), atol=2e-6)


def test_shift_image_samples_the_image_between_its_pixels():
  from supertiny.ops import shift_image

  y, x = np.mgrid[0:40, 0:36].astype(np.float64)
  wave = lambda a, b: np.sin(a / 3) * np.cos(b / 4) + 0.5 * np.sin((a + b) / 5)  # noqa: E731
  image = np.stack([wave(y, x), wave(x, y)], axis=-1)
  moved = shift_image(image, 1.0, -2.0)  # whole pixels: the neighbours' values
  np.testing.assert_allclose(moved[5:-5, 5:-5], image[6:-4, 3:-7], atol=1e-3)
  moved = shift_image(image, 0.5, -1.5)  # between pixels: the function there (Lanczos-3: to 1% of its range)
  expected = np.stack([wave(y + 0.5, x - 1.5), wave(x - 1.5, y + 0.5)], axis=-1)
  np.testing.assert_allclose(moved[6:-6, 6:-6], expected[6:-6, 6:-6], atol=0.03)
