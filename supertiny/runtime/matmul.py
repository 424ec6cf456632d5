"""Matrix products written as explicit tinygrad kernels for the CPU backend (the transformers' linear layers and
attention in training).

tinygrad's own matmul on the CPU runs the transformers' linear layers at 5-10 GFLOP/s, their weight gradients
at 2-6: its heuristics upcast the reduction, as with convolutions (supertiny.runtime.conv). Here a register block
of `mu` rows times 16 columns of the result is accumulated over the whole reduction, the right-hand matrix packed
so that the 16 columns one block reads lie in one contiguous run (as BLAS libraries pack it): 25-70 GFLOP/s on one
core (docs/performance.md, "Attention and linear layers": matmul kernels). The result's rows get one unused
column in front, an odd row stride, for the same reason as the convolution's (clang builds 8-wide vectors from
single-float stores).

Row blocks of 3 or 5 rows: with 2, 4, 6 or 8 the same kernel ran 3-10x slower on this CPU (measured, not
understood). Each result sums its products in order over the reduction, whatever the shapes, like tinygrad's.
The kernels run where supertiny.runtime.conv's do (`kernel_path`: the CPU, unless SUPERTINY_CONV=tinygrad).
"""

from __future__ import annotations

import math

from tinygrad import Tensor, dtypes

from .conv import kernel_path
from .internals import AxisType, KernelInfo, Ops, UOp

COLUMNS = 16  # result columns per register block: two 8-wide vectors
ROW_BLOCKS = (5, 3)


def matmul(a: Tensor, b: Tensor) -> Tensor:
  """a @ b for (..., rows, reduction) and (..., reduction, columns) with the same leading axes: explicit kernels on
  the CPU (forward and both gradients), tinygrad's matmul elsewhere and for other dtypes than float32."""
  if not kernel_path(a.device) or a.dtype != dtypes.float32 or b.dtype != dtypes.float32:
    return a @ b
  return product(a, b)


def product(a: Tensor, b: Tensor, transposed: bool = False) -> Tensor:
  """a @ b, or a^T @ b when `transposed` (then `a` is (..., reduction, rows)), through the register-blocked kernel.
  Leading axes are a batch that `a` and `b` share (attention's images and heads)."""
  *batch, reduction, columns = b.shape
  if tuple(a.shape[:-2]) != tuple(batch):
    raise ValueError(f"product: batch axes {a.shape[:-2]} and {tuple(batch)} differ")
  if transposed and a.shape[-1] > columns:
    # weight gradients: the kernel is fastest with the longer side across the 16-column blocks (512 x 128 from
    # 3200 products ran at a third of the speed of 128 x 512), so compute the transpose and turn the small result
    return product(b, a, transposed=True).transpose(-2, -1)
  images = math.prod(batch)
  a, b = a.reshape(images, *a.shape[-2:]), b.reshape(images, reduction, columns)
  rows = a.shape[2] if transposed else a.shape[1]
  mu = next((u for u in ROW_BLOCKS if rows % u == 0), ROW_BLOCKS[-1])
  extra_rows, extra_columns = -rows % mu, -columns % COLUMNS
  if extra_rows:
    a = a.pad(((0, 0), (0, 0), (0, extra_rows)) if transposed else ((0, 0), (0, extra_rows), (0, 0)))
  wide = columns + extra_columns
  # (images, column blocks, reduction, 16): each block's columns contiguous for the whole reduction
  packed = b.pad(((0, 0), (0, 0), (0, extra_columns))).reshape(images, reduction, wide // COLUMNS, COLUMNS)
  out = Tensor.empty(images, rows + extra_rows, wide + 1, device=a.device, dtype=a.dtype)
  out = out.custom_kernel(a.contiguous(), packed.permute(0, 2, 1, 3).contiguous(),
                          fxn=lambda o, left, right: _product_kernel(o, left, right, mu, transposed),
                          grad_fxn=lambda gradient, kernel: _product_backward(gradient, kernel, transposed))[0]
  return out[:, :rows, 1:columns + 1].reshape(*batch, rows, columns)


def _product_kernel(out: UOp, a: UOp, packed: UOp, mu: int, transposed: bool) -> UOp:
  """out[i, m, n + 1] = sum over k of a[i, m, k] (a[i, k, m] when transposed) * packed[i, n // 16, k, n % 16]."""
  images, rows, stride = out.shape
  _, blocks, reduction, _ = packed.shape
  # the weight gradient (transposed) reads a long reduction: its right-hand block stays in L2 while the row blocks
  # pass (the other order rereads the whole right-hand matrix per row block; measured slower)
  i = UOp.range(images, 0)
  if transposed:
    nb, mb = UOp.range(blocks, 1), UOp.range(rows // mu, 2)
  else:
    mb, nb = UOp.range(rows // mu, 1), UOp.range(blocks, 2)
  mi, ni = UOp.range(mu, 3, AxisType.UPCAST), UOp.range(COLUMNS, 4, AxisType.UPCAST)
  k = UOp.range(reduction, 5, AxisType.REDUCE)
  m = mb * mu + mi
  left = a[i, k, m] if transposed else a[i, m, k]
  total = (left * packed[i, nb, k, ni]).reduce(k, arg=Ops.ADD)
  name = f"matmul_{images}_{rows}_{stride - 1}_{reduction}" + ("_t" if transposed else "")
  return out[i, m, nb * COLUMNS + ni + 1].store(total).end(i, mb, nb, mi, ni).sink(arg=KernelInfo(name=name,
                                                                                                opts_to_apply=()))


def _product_backward(gradient: UOp, kernel: UOp, transposed: bool) -> tuple[None, UOp, UOp]:
  _, a_uop, packed_uop = kernel.src[1:]  # the call's body, then its arguments (output, left, packed right)
  grad, a, packed = Tensor(gradient)[:, :, 1:], Tensor(a_uop), Tensor(packed_uop)
  images, blocks, reduction, _ = packed.shape
  b = packed.permute(0, 2, 1, 3).reshape(images, reduction, blocks * COLUMNS)
  if transposed:  # out = a^T @ b: d a = b @ grad^T, d b = a @ grad
    grad_a, grad_b = product(b, grad.transpose(1, 2)), product(a, grad)
  else:  # out = a @ b: d a = grad @ b^T, d b = a^T @ grad
    grad_a, grad_b = product(grad, b.transpose(1, 2)), product(a, grad, transposed=True)
  grad_packed = grad_b.reshape(images, reduction, blocks, COLUMNS).permute(0, 2, 1, 3)
  return None, grad_a.uop, grad_packed.uop
