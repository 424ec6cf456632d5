"""One convolution layer, four ways, in one process: tinygrad's generic `Tensor.conv2d`, supertiny.runtime.conv's
explicit kernels, PyTorch with all cores and PyTorch with one thread. Forward alone and forward + backward (input and
weight gradients), median ms after warm-up, GFLOP/s counted as 2 x multiply-adds of the forward (x3 with the
backward).

  .venv/bin/python benchmarks/conv_kernels.py                    # ESPCN's middle layer and an EDSR body conv
  .venv/bin/python benchmarks/conv_kernels.py --accumulators 64  # supertiny.runtime.conv with larger register blocks
  .venv/bin/python benchmarks/conv_kernels.py --no-wide-block    # 8 channels x 8 pixels on wide rows too
  .venv/bin/python benchmarks/conv_kernels.py --two-devices      # do CPU:0 and CPU:1 run at the same time
                                                                 # (queued from one thread; from two threads)?
  .venv/bin/python benchmarks/conv_kernels.py --layers edsr-upsampler-infer --iters 3

PyTorch is optional (the columns are left out without it).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tinygrad import Device, Tensor, TinyJit

# this checkout's supertiny, not the installed one: another checkout's script measures that checkout's code
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_ms  # noqa: E402  (benchmarks/timing.py, beside this script)

from supertiny.runtime import conv  # noqa: E402

# name, (batch, in channels, out channels, height, width, kernel)
LAYERS = {
  "espcn-map-train": (16, 64, 32, 24, 24, 3),
  "edsr-body-infer": (1, 64, 64, 64, 64, 3),
  "edsr-upsampler-infer": (1, 64, 256, 128, 128, 3),  # EDSR x4's second upsampling convolution, 64x64 input
}
DEFAULT_LAYERS = ("espcn-map-train", "edsr-body-infer")


def tinygrad_case(shape, fn, backward: bool, device: str = "CPU"):
  batch, cin, cout, h, w, k = shape
  rng = np.random.default_rng(0)
  x = Tensor(rng.standard_normal((batch, cin, h, w), dtype=np.float32), device=device).realize()
  weight = Tensor(rng.standard_normal((cout, cin, k, k), dtype=np.float32), device=device).realize()
  if backward:
    @TinyJit
    def step(x: Tensor, weight: Tensor):
      x, weight = x.detach(), weight.detach()
      out = fn(x, weight, k // 2)
      x_grad, w_grad = out.sum().gradient(x, weight)
      return Tensor.realize(out, x_grad, w_grad)
  else:
    @TinyJit
    def step(x: Tensor, weight: Tensor):
      return fn(x, weight, k // 2).realize()
  return lambda: step(x, weight)


def torch_case(shape, backward: bool):
  import torch

  batch, cin, cout, h, w, k = shape
  x = torch.randn(batch, cin, h, w, requires_grad=backward)
  weight = torch.randn(cout, cin, k, k, requires_grad=backward)

  def call():
    if backward:
      out = torch.nn.functional.conv2d(x, weight, padding=k // 2)
      out.sum().backward()
    else:
      with torch.inference_mode():
        torch.nn.functional.conv2d(x, weight, padding=k // 2)
  return call


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--iters", type=int, default=10)
  parser.add_argument("--layers", default=",".join(DEFAULT_LAYERS), help=f"comma-separated, of {', '.join(LAYERS)}")
  parser.add_argument("--accumulators", type=int,
                      help=f"supertiny.runtime.conv register block (default {conv.ACCUMULATORS})")
  parser.add_argument("--no-wide-block", dest="wide", action="store_false",
                      help=f"never supertiny.runtime.conv's {conv.WIDE_BLOCK} (channels, pixels) register block")
  parser.add_argument("--two-devices", action="store_true",
                      help="time supertiny.runtime.conv on CPU:0 alone and on CPU:0 and CPU:1 at once")
  args = parser.parse_args()
  if args.accumulators:
    conv.ACCUMULATORS = args.accumulators
  if not args.wide:
    conv.WIDE_BLOCK = None
  sync = Device["CPU"].synchronize
  generic = lambda x, w, p: x.conv2d(w, padding=p)  # noqa: E731
  ours = lambda x, w, p: conv.conv2d(x, w, padding=p)  # noqa: E731
  try:
    import torch
  except ImportError:
    torch = None

  if args.two_devices:
    shape = LAYERS["espcn-map-train"]
    one = tinygrad_case(shape, ours, False, "CPU:0")
    other = tinygrad_case(shape, ours, False, "CPU:1")
    def both():
      one()
      other()
    def sync_both():
      Device["CPU:0"].synchronize()
      Device["CPU:1"].synchronize()
    pool = ThreadPoolExecutor(2)
    def threads():  # each device driven by its own Python thread (ctypes releases the GIL while a kernel runs)
      for future in [pool.submit(one), pool.submit(other)]:
        future.result()
    alone, together = median_ms(one, args.iters, sync_both), median_ms(both, args.iters, sync_both)
    threaded = median_ms(threads, args.iters, sync_both)
    print(f"one layer on CPU:0: {alone:.2f} ms; the same layer on CPU:0 and on CPU:1 queued together: "
          f"{together:.2f} ms ({together / alone:.2f}x; 1.0 would be parallel, 2.0 serial); from two Python "
          f"threads: {threaded:.2f} ms ({threaded / alone:.2f}x)")
    return

  print(f"{'layer':<16} {'pass':<9} {'generic ms':>10} {'kernels ms':>10} {'torch ms':>9} {'torch 1t ms':>11} "
        f"{'speed-up':>8} {'vs torch':>8} {'vs 1t':>6} {'GFLOP/s':>8}")
  unknown = [n for n in args.layers.split(",") if n not in LAYERS]
  if unknown:
    sys.exit(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYERS)}")
  for name in args.layers.split(","):
    shape = LAYERS[name]
    batch, cin, cout, h, w, k = shape
    flops = 2 * batch * cout * cin * k * k * h * w
    for backward in (False, True):
      g = median_ms(tinygrad_case(shape, generic, backward), args.iters, sync)
      s = median_ms(tinygrad_case(shape, ours, backward), args.iters, sync)
      t = t1 = float("nan")
      if torch is not None:
        threads = torch.get_num_threads()
        t = median_ms(torch_case(shape, backward), args.iters)
        torch.set_num_threads(1)
        t1 = median_ms(torch_case(shape, backward), args.iters)
        torch.set_num_threads(threads)
      work = flops * (3 if backward else 1)
      print(f"{name:<16} {'fwd+bwd' if backward else 'forward':<9} {g:10.2f} {s:10.2f} {t:9.2f} {t1:11.2f} "
            f"{g / s:8.2f} {s / t:8.2f} {s / t1:6.2f} {work / s / 1e6:8.1f}", flush=True)


if __name__ == "__main__":
  main()
