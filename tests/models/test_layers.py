"""Layers that compute a standard layer another way: same weights and result as PyTorch's, forward and backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinygrad import Tensor

from supertiny.models.layers import StridedConvTranspose2d

# (in, out, kernel, stride, padding, output padding, height, width): FSRCNN's 9x9 deconvolution at x2, x3 (also
# centred), x4; the paper's 5x5 at x4 and x3; a kernel shorter than the stride; no padding
CASES = [
  (6, 1, 9, 2, 4, 1, 5, 7),
  (7, 2, 9, 3, 4, 2, 6, 5),
  (4, 1, 9, 3, 3, 0, 5, 6),
  (5, 1, 9, 4, 4, 3, 4, 4),
  (3, 8, 5, 4, 1, 1, 5, 6),
  (2, 4, 5, 3, 1, 0, 4, 7),
  (2, 3, 2, 3, 0, 0, 3, 3),
  (3, 2, 4, 2, 0, 0, 4, 5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_strided_transposed_convolution_equals_pytorch(case):
  cin, cout, k, s, p, op, h, w = case
  rng = np.random.default_rng(sum(case))
  x = rng.standard_normal((2, cin, h, w)).astype(np.float32)
  reference = torch.nn.ConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op)
  layer = StridedConvTranspose2d(cin, cout, k, stride=s, padding=p, output_padding=op)
  layer.weight = Tensor(reference.weight.detach().numpy())
  layer.bias = Tensor(reference.bias.detach().numpy())

  tx = torch.tensor(x, requires_grad=True)
  expected = reference(tx)
  target = rng.standard_normal(expected.shape).astype(np.float32)
  ((expected - torch.from_numpy(target)) ** 2).sum().backward()

  gx = Tensor(x)
  out = layer(gx)
  ((out - Tensor(target)) ** 2).sum().backward()
  assert out.shape == tuple(expected.shape)
  np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(layer.weight.grad.numpy(), reference.weight.grad.numpy(), rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(layer.bias.grad.numpy(), reference.bias.grad.numpy(), rtol=1e-4, atol=1e-3)
