"""supertiny.runtime.conv: the explicit convolution kernels equal PyTorch's convolution, forward and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinygrad import Tensor

from supertiny.runtime import conv

pytestmark = pytest.mark.fast_path  # the explicit kernels; tinygrad's own convolution has tinygrad's tests

# (batch, in channels, out channels, height, width, kernel): odd widths (row padding), one input or output channel,
# channel counts that are no multiple of 8, rows wide enough for the 4-channel x 16-pixel register block (63: padded
# to 64), 1x1 and 5x5 kernels
SHAPES = [
  (2, 3, 5, 7, 9, 3),
  (1, 1, 64, 17, 23, 5),
  (2, 32, 9, 10, 13, 3),
  (1, 8, 8, 5, 5, 1),
  (2, 16, 1, 9, 70, 3),
  (3, 12, 24, 6, 40, 3),
  (2, 8, 12, 5, 63, 3),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradients_equal_pytorch(shape):
  batch, cin, cout, h, w, k = shape
  rng = np.random.default_rng(sum(shape))
  x, weight, bias = (rng.standard_normal(s).astype(np.float32) for s in ((batch, cin, h, w), (cout, cin, k, k),
                                                                           (cout,)))
  target = rng.standard_normal((batch, cout, h, w)).astype(np.float32)

  tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
  expected = torch.nn.functional.conv2d(tx, tw, tb, padding=k // 2)
  ((expected - torch.from_numpy(target)) ** 2).sum().backward()

  gx, gw, gb = Tensor(x), Tensor(weight), Tensor(bias)
  out = conv.conv2d(gx, gw, gb, padding=k // 2)
  ((out - Tensor(target)) ** 2).sum().backward()

  assert conv.kernel_path(gx.device)
  for ours, theirs in ((out, expected), (gx.grad, tx.grad), (gw.grad, tw.grad), (gb.grad, tb.grad)):
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_pixels_do_not_depend_on_image_size():
  """Every output pixel sums its products in one order whatever the image size, so a crop of the input gives
  bit-identical interior pixels: tiled inference cannot change a value."""
  rng = np.random.default_rng(1)
  image = rng.standard_normal((1, 16, 21, 45)).astype(np.float32)  # 45 and 31 wide: 16-pixel blocks; 17, 24: 8
  weight = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
  whole = conv.conv2d(Tensor(image), Tensor(weight), padding=1).numpy()
  for width in (17, 24, 31):
    part = conv.conv2d(Tensor(image[:, :, :, :width]), Tensor(weight), padding=1).numpy()
    np.testing.assert_array_equal(part[..., 1:width - 1], whole[..., 1:width - 1])


def test_generic_path_can_be_chosen(monkeypatch):
  monkeypatch.setenv("SUPERTINY_CONV", "tinygrad")
  assert not conv.kernel_path("CPU")
  monkeypatch.delenv("SUPERTINY_CONV")
  assert conv.kernel_path("CPU") and conv.kernel_path("CPU:1")
  assert not conv.kernel_path("CUDA") and not conv.kernel_path(("CPU:0", "CPU:1"))  # sharded: tinygrad's conv
  monkeypatch.setenv("WINO", "1")  # Winograd is tinygrad's rewrite of its own convolution
  assert not conv.kernel_path("CPU")


def test_too_small_input_is_an_error():
  with pytest.raises(ValueError, match="smaller than the 5x5 kernel"):
    conv.conv2d(Tensor.zeros(1, 1, 3, 3), Tensor.zeros(1, 1, 5, 5))
