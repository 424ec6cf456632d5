"""supertiny.runtime.transformer and .matmul: attention, linear and the matmul kernels equal PyTorch's, forward and
backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinygrad import Context, Tensor

from supertiny.runtime.matmul import matmul, product
from supertiny.runtime.transformer import attention, linear


# (batch, heads, tokens, head dim, bias shape): no bias; a per-head bias shared by the batch (SwinIR's relative
# positions); a full bias (SwinIR's shifted-window mask added)
@pytest.mark.parametrize("shape", [(2, 3, 7, 4, None), (3, 2, 9, 8, (1, 2, 9, 9)), (4, 2, 16, 4, (4, 2, 16, 16))],
                         ids=lambda s: "x".join(map(str, s[:4])) + ("" if s[4] is None else "-bias"))
@pytest.mark.parametrize("mode", [0, 1], ids=["inference", "training"])  # attention stages differently in each
def test_forward_and_gradients_equal_pytorch(shape, mode):
  batch, heads, tokens, dim, bias_shape = shape
  rng = np.random.default_rng(tokens)
  q, k, v, target = (rng.standard_normal((batch, heads, tokens, dim)).astype(np.float32) for _ in range(4))
  bias = None if bias_shape is None else rng.standard_normal(bias_shape).astype(np.float32)

  tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
  tbias = None if bias is None else torch.tensor(bias, requires_grad=True)
  expected = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tbias)
  ((expected - torch.from_numpy(target)) ** 2).sum().backward()

  gq, gk, gv = Tensor(q), Tensor(k), Tensor(v)
  gbias = None if bias is None else Tensor(bias)
  with Context(TRAINING=mode):
    out = attention(gq, gk, gv, gbias)
    ((out - Tensor(target)) ** 2).sum().backward()

  np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-5)
  for ours, theirs in ((gq, tq), (gk, tk), (gv, tv)) + (() if bias is None else ((gbias, tbias),)):
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_linear_equals_pytorch_forward_and_backward():
  rng = np.random.default_rng(3)
  # the input is a GELU's output, as in the transformers' MLPs: what linear realizes before its matmul
  x, weight, bias = (rng.standard_normal(s).astype(np.float32) for s in ((2, 9, 12), (5, 12), (5,)))
  target = rng.standard_normal((2, 9, 5)).astype(np.float32)

  tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, weight, bias))
  expected = torch.nn.functional.linear(torch.nn.functional.gelu(tx), tw, tb)
  ((expected - torch.from_numpy(target)) ** 2).sum().backward()

  gx, gw, gb = Tensor(x), Tensor(weight), Tensor(bias)
  out = linear(gx.gelu(approximate="none"), gw, gb)
  ((out - Tensor(target)) ** 2).sum().backward()

  np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-5)
  for ours, theirs in ((gx, tx), (gw, tw), (gb, tb)):
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-4)


# (batch axes, rows, reduction, columns): rows that 3 and 5 do not divide and columns that 16 does not (both padded),
# attention's batch of images and heads, a long reduction as in the weight gradients
@pytest.mark.parametrize("shape", [((), 7, 33, 17), ((2, 3), 10, 16, 40), ((), 48, 5, 512), ((), 4, 300, 24)],
                         ids=lambda s: "x".join(map(str, (*s[0], *s[1:]))))
def test_matmul_equals_pytorch_forward_and_backward(shape):
  batch, rows, reduction, columns = shape
  rng = np.random.default_rng(rows)
  a, b = (rng.standard_normal((*batch, *s)).astype(np.float32) for s in ((rows, reduction), (reduction, columns)))
  target = rng.standard_normal((*batch, rows, columns)).astype(np.float32)

  ta, tb = (torch.tensor(x, requires_grad=True) for x in (a, b))
  expected = ta @ tb
  ((expected - torch.from_numpy(target)) ** 2).sum().backward()

  ga, gb = Tensor(a), Tensor(b)
  out = matmul(ga, gb)
  ((out - Tensor(target)) ** 2).sum().backward()

  np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-4)
  for ours, theirs in ((ga, ta), (gb, tb)):
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("rows", [40, 6], ids=["rows-longer", "rows-shorter"])  # the first computes the transpose
def test_transposed_product_equals_pytorch(rows):
  rng = np.random.default_rng(rows)
  a, b = rng.standard_normal((20, rows)).astype(np.float32), rng.standard_normal((20, 8)).astype(np.float32)
  np.testing.assert_allclose(product(Tensor(a), Tensor(b), transposed=True).numpy(),
                             (torch.from_numpy(a).T @ torch.from_numpy(b)).numpy(), rtol=1e-5, atol=1e-5)
