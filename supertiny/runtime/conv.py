"""Stride-1 2-D convolution written as explicit tinygrad kernels for the CPU backend.

tinygrad's generic convolution on CPU runs at 3-5 GFLOP/s on this project's workloads: its heuristic upcasts
the reduction, and clang then builds scalar dot products. The same convolution written as a kernel whose
*output* axes are unrolled (a block of `ou` output channels times `xu` neighbouring pixels, accumulated over input
channels and taps) compiles to broadcast-and-FMA vector code at 25-40 GFLOP/s on one core. See
docs/performance.md for the measurements.

The kernels are built with tinygrad's own `custom_kernel` API: no C, no fork. Each output pixel sums its products
in the same order (input channel, then kernel row, then kernel column) whatever the image size, so results do
not depend on tile sizes. Gradients are kernels too: the input gradient is a convolution of the padded output
gradient with the flipped kernel, the weight gradient a channels-last kernel with per-image partial sums.

Elsewhere (CUDA and other backends, where tinygrad's heuristics use the GPU's own parallelism) `conv2d` is
`Tensor.conv2d`. `SUPERTINY_CONV=tinygrad` selects tinygrad's generic convolution on the CPU too.
"""

from __future__ import annotations

import os

from tinygrad import Tensor, dtypes

from . import internals
from .devices import on_cpu
from .internals import AxisType, KernelInfo, Ops, UOp

# Register blocks. The forward kernel's output rows have an odd stride, so tinygrad stores its results one float
# at a time and clang's vectoriser, which starts from the stores, builds 8-wide (AVX) vectors of pixels (with
# tinygrad's 4-wide folded stores it stayed at 4-wide): 8 pixels x 8 channels are eight 256-bit accumulators.
# The unused column is each row's first: every store address is then base + constant, which tinygrad emits in
# order (a store at the bare base came last, and clang kept that channel's pixels in a shuffled order).
# Rows wide enough for it take 4 channels x 16 pixels instead (two vectors of pixels per channel: 6 loads and
# broadcasts per 8 FMAs, against 9 per 8): 1.1-1.3x faster from 48 pixels wide up, slower at 24 (docs/performance.md).
# The weight gradient vectorises across input channels and keeps 32 accumulators (an odd stride made it slower).
CHANNEL_BLOCKS = (8, 6, 4, 3, 2, 1)
ACCUMULATORS = 64
GRAD_ACCUMULATORS = 32
ROW_BLOCKS = (8, 4)
WIDE_BLOCK: tuple[int, int] | None = (4, 16)  # (channels, pixels); None: never
WEIGHT_GROUP_BYTES = 160 * 1024  # forward: weights of the output channels that one pass over the rows serves
PARTIAL_BYTES = 256 * 1024  # weight gradient: input rows summed per partial result, sized to stay in L2


def kernel_path(device: str | tuple) -> bool:
  """Whether `conv2d` uses the explicit kernels on `device`: the CPU backend, unless SUPERTINY_CONV=tinygrad or
  tinygrad's Winograd rewrite (WINO=1) is asked for. Tensors sharded over several devices (data-parallel training)
  take tinygrad's convolution: a custom kernel sees the whole tensor's shape, not its shard's."""
  if os.environ.get("SUPERTINY_CONV", "kernel").lower() == "tinygrad" or os.environ.get("WINO", "0") not in ("", "0"):
    return False
  if not internals.USABLE:
    return False
  return on_cpu(device)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, padding: int = 0) -> Tensor:
  """Stride-1, ungrouped convolution of NCHW `x` with OIHW `weight`, zero padding `padding` on every side: the
  same result as `x.conv2d(weight, bias, padding=padding)`."""
  if not kernel_path(x.device):
    return x.conv2d(weight, bias, padding=padding)
  if x.dtype != dtypes.float32:
    # half models on the CPU: accumulate in float32, as tinygrad's own reductions and PyTorch do (float16 sums of
    # hundreds of products lose about three bits); the CPU has no faster float16 arithmetic to give up
    wide = conv2d(x.float(), weight.float(), None if bias is None else bias.float(), padding)
    return wide.cast(x.dtype)
  out = _valid_conv(x.pad((padding, padding, padding, padding)) if padding else x, weight)
  return out if bias is None else out + bias.reshape(1, -1, 1, 1)


def _channel_block(channels: int, limit: int = 8) -> int:
  return next(b for b in CHANNEL_BLOCKS if channels % b == 0 and b <= limit)


def _row_block(width: int, channel_block: int) -> int:
  """Pixels per register block: enough accumulators to hide FMA latency, not so many that padding the row to a
  whole number of blocks wastes more than a quarter of the work."""
  for block in ROW_BLOCKS:
    if block * channel_block <= ACCUMULATORS and (-width % block) <= width // 4:
      return block
  return ROW_BLOCKS[-1]


def _register_block(channels: int, width: int) -> tuple[int, int]:
  """(output channels, pixels) held in registers: the wide block where the channels divide and padding the row
  wastes at most an eighth of it, else the widest channel block and a row block to match."""
  if WIDE_BLOCK is not None:
    ou, xu = WIDE_BLOCK
    if channels % ou == 0 and -width % xu <= width // 8:
      return ou, xu
  ou = _channel_block(channels)
  return ou, _row_block(width, ou)


def _valid_conv(x: Tensor, weight: Tensor) -> Tensor:
  """Unpadded ('valid') convolution; the width is padded on the right to a whole number of register blocks and the
  result cropped back. The output buffer's rows get one more, unused column in front: an odd row stride, so that
  no store address is provably a multiple of 4 floats and tinygrad's memory coalescing leaves the stores scalar.
  clang then vectorises the pixels 8-wide (1.2-1.6x faster layers on this AVX2 CPU, docs/performance.md)."""
  batch, _, height, width = x.shape
  out_channels, _, kh, kw = weight.shape
  out_h, out_w = height - kh + 1, width - kw + 1
  if out_h < 1 or out_w < 1:
    raise ValueError(f"conv2d: input {height}x{width} is smaller than the {kh}x{kw} kernel")
  ou, xu = _register_block(out_channels, out_w)
  extra = -out_w % xu
  xp = (x.pad((0, extra, 0, 0)) if extra else x).contiguous()
  stride = out_w + extra + 1
  out = Tensor.empty(batch, out_channels, out_h, stride, device=x.device, dtype=x.dtype)
  # (out blocks, in, kh, kw, ou): all the weights one register block uses lie in one contiguous run, so every cache
  # line fetched is used whole (with the blocks' channels interleaved, `ou` floats of every 64-byte line were)
  blocked = weight.reshape(out_channels // ou, ou, *weight.shape[1:]).permute(0, 2, 3, 4, 1).contiguous()
  out = out.custom_kernel(xp, blocked, fxn=lambda o, i, w: _conv_kernel(o, i, w, ou, xu),
                          grad_fxn=_conv_backward)[0]
  return out[:, :, :, 1:out_w + 1]


def _channel_group(channels_in: int, channels_out: int, kernel: int, ou: int, itemsize: int) -> int:
  """Output-channel blocks whose weights are kept in L2 while the kernel walks the rows: the largest number of
  blocks (dividing the block count) whose weights fit in WEIGHT_GROUP_BYTES."""
  blocks = channels_out // ou
  block_bytes = ou * channels_in * kernel * kernel * itemsize
  return next(g for g in range(blocks, 0, -1) if blocks % g == 0 and (g * block_bytes <= WEIGHT_GROUP_BYTES or g == 1))


def _conv_kernel(out: UOp, x: UOp, w: UOp, ou: int, xu: int) -> UOp:
  """out[b, o, y, x] = sum over c, i, j of x[b, c, y+i, x+j] * w[o // ou, c, i, j, o % ou], with `ou` channels times
  `xu` pixels held in registers."""
  batch, channels_out, height, width = out.shape
  _, channels_in, kh, kw, _ = w.shape
  # loops nest in the ranges' axis order: image, group of output-channel blocks, row, block within the group,
  # column block. A group's weights stay in L2 while the rows pass; a row's inputs stay in L2 while the group's
  # blocks use them. (One whole sweep of the input per block, the simple order, made EDSR's 64->256 upsampler
  # convolution at 128x128 run at half the speed.)
  group = _channel_group(channels_in, channels_out, kh, ou, w.dtype.itemsize)
  sizes = (batch, channels_out // ou // group, height, group, (width - 1) // xu)  # column 0 is stride padding
  b, og, y, oj, xo = (UOp.range(n, axis) for axis, n in enumerate(sizes))
  oi, xi = UOp.range(ou, 5, AxisType.UPCAST), UOp.range(xu, 6, AxisType.UPCAST)
  c, i, j = (UOp.range(n, 7 + k, AxisType.REDUCE) for k, n in enumerate((channels_in, kh, kw)))
  block, col = og * group + oj, xo * xu + xi
  total = (x[b, c, y + i, col + j] * w[block, c, i, j, oi]).reduce(c, i, j, arg=Ops.ADD)
  name = f"conv_{channels_in}_{channels_out}_{kh}x{kw}"
  return out[b, block * ou + oi, y, col + 1].store(total).end(b, og, y, oj, xo, oi, xi).sink(
    arg=KernelInfo(name=name, opts_to_apply=()))


def _weight_grad_kernel(out: UOp, grad: UOp, x: UOp, cu: int, ou: int, rows: int) -> UOp:
  """Channels-last partial weight gradients: out[p, i, j, o, c] = sum over the `rows` output rows of part p (and
  their columns) of grad[b, y, x, o] * x[b, y+i, x+j, c]."""
  parts, kh, kw, channels_out, channels_in = out.shape
  batch, _, width = grad.shape[:3]
  per_image = parts // batch
  p, i, j, oo, co = (UOp.range(n, axis) for axis, n in enumerate((parts, kh, kw, channels_out // ou,
                                                                    channels_in // cu)))
  oi, ci = UOp.range(ou, 5, AxisType.UPCAST), UOp.range(cu, 6, AxisType.UPCAST)
  r, col = UOp.range(rows, 7, AxisType.REDUCE), UOp.range(width, 8, AxisType.REDUCE)
  b, y = p // per_image, (p % per_image) * rows + r
  o, c = oo * ou + oi, co * cu + ci
  total = (grad[b, y, col, o] * x[b, y + i, col + j, c]).reduce(r, col, arg=Ops.ADD)
  name = f"conv_wgrad_{channels_in}_{channels_out}_{kh}x{kw}"
  return out[p, i, j, o, c].store(total).end(p, i, j, oo, co, oi, ci).sink(arg=KernelInfo(name=name,
                                                                                         opts_to_apply=()))


def _parts_sum_kernel(out: UOp, partial: UOp, block: int) -> UOp:
  """out[m] = sum over p of partial[p, m], `block` neighbouring outputs per pass over the parts."""
  (size,) = out.shape
  mo, mi = UOp.range(size // block, 0), UOp.range(block, 1, AxisType.UPCAST)
  p = UOp.range(partial.shape[0], 2, AxisType.REDUCE)
  m = mo * block + mi
  total = partial[p, m].reduce(p, arg=Ops.ADD)
  return out[m].store(total).end(mo, mi).sink(arg=KernelInfo(name=f"conv_wgrad_sum_{size}", opts_to_apply=()))


def _sum_parts(partial: Tensor) -> Tensor:
  """partial.sum(0), 4x faster on the CPU: tinygrad's own reduction walks the parts for two outputs at a time, a
  strided read of every part per pair; here each pass over the parts serves 64 outputs."""
  parts, shape = partial.shape[0], partial.shape[1:]
  if parts == 1:
    return partial[0]
  size = partial.numel() // parts
  block = next(b for b in (64, 32, 16, 8, 4, 2, 1) if size % b == 0)
  out = Tensor.empty(size, device=partial.device, dtype=partial.dtype)
  flat = partial.reshape(parts, size)
  return out.custom_kernel(flat, fxn=lambda o, src: _parts_sum_kernel(o, src, block))[0].reshape(shape)


def _conv_backward(gradient: UOp, kernel: UOp) -> tuple[UOp | None, UOp, UOp]:
  _, x_uop, w_uop = kernel.src[1:]  # the call's sources: its body, then its arguments (output, input, weight)
  # the output's first, stride-padding column is never read, so its gradient is zero: drop it
  grad, x, blocked = Tensor(gradient)[:, :, :, 1:], Tensor(x_uop), Tensor(w_uop)
  blocks, channels_in, kh, kw, ou_forward = blocked.shape
  weight = blocked.permute(0, 4, 1, 2, 3).reshape(blocks * ou_forward, channels_in, kh, kw)  # (out, in, kh, kw)
  # input gradient: a full convolution of the output gradient with the flipped, transposed kernel
  flipped = weight.flip((2, 3)).permute(1, 0, 2, 3)
  grad_x = _valid_conv(grad.pad((kw - 1, kw - 1, kh - 1, kh - 1)), flipped)
  # weight gradient: channels-last so that one of the two channel axes is contiguous for the vector unit
  batch, channels_out, height, width = grad.shape
  cu = _channel_block(channels_in)
  ou = _channel_block(channels_out, GRAD_ACCUMULATORS // cu)
  row_bytes = grad.dtype.itemsize * width * (channels_in + channels_out)
  rows = max(1, min(height, PARTIAL_BYTES // row_bytes))
  while height % rows:
    rows -= 1
  parts = batch * (height // rows)
  grad_t, x_t = grad.permute(0, 2, 3, 1).contiguous(), x.permute(0, 2, 3, 1).contiguous()
  partial = Tensor.empty(parts, kh, kw, channels_out, channels_in, device=grad.device, dtype=grad.dtype)
  partial = partial.custom_kernel(grad_t, x_t, fxn=lambda out, g, i: _weight_grad_kernel(out, g, i, cu, ou, rows))[0]
  # (kh, kw, out, in) -> (out blocks, in, kh, kw, ou), the forward kernel's layout
  grad_blocked = _sum_parts(partial).reshape(kh, kw, blocks, ou_forward, channels_in).permute(2, 4, 0, 1, 3)
  return None, grad_x.uop, grad_blocked.uop

