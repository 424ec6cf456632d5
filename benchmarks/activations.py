"""The activation between two convolutions, alone: a bias add and tinygrad's Tensor.tanh against the same with
SuperTiny's rational tanh (supertiny.ops.tanh), each also followed by the next layer's zero padding (fused into
one kernel, as tinygrad schedules it, or realised first, as supertiny.models.layers does), and PyTorch's tanh on
2 threads and 1 thread.

  .venv/bin/python benchmarks/activations.py                 # ESPCN's first feature map: 64 x 64x64
  .venv/bin/python benchmarks/activations.py --shape 16,32,24,24

Prints median ms per call (TinyJit'd) and the largest difference from float64 tanh.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tinygrad import Device, Tensor, TinyJit

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_ms  # noqa: E402

from supertiny.ops import tanh  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--shape", default="1,64,64,64", help="N,C,H,W of the feature map [1,64,64,64]")
  parser.add_argument("--iters", type=int, default=20)
  args = parser.parse_args()
  shape = tuple(int(v) for v in args.shape.split(","))
  rng = np.random.default_rng(0)
  values = rng.normal(0, 2, shape).astype(np.float32)
  bias = rng.normal(0, 0.5, shape[1]).astype(np.float32)
  exact = np.tanh(values.astype(np.float64) + bias.astype(np.float64)[:, None, None])
  x, b = Tensor(values).realize(), Tensor(bias).reshape(1, -1, 1, 1).realize()
  pad = (1, 1, 1, 1)
  cases = {
    "tinygrad Tensor.tanh": lambda: (x + b).tanh(),
    "supertiny tanh": lambda: tanh(x + b),
    "Tensor.tanh + pad, fused": lambda: (x + b).tanh().pad(pad),
    "supertiny tanh + pad, fused": lambda: tanh(x + b).pad(pad),
    "supertiny tanh, then pad": lambda: tanh(x + b).contiguous().pad(pad),
  }
  sync = Device[Device.DEFAULT].synchronize
  rows = []
  for name, make in cases.items():
    jit = TinyJit(lambda make=make: make().realize())
    ms = median_ms(jit, args.iters, sync)
    out = make().numpy()
    error = np.abs((out[..., 1:-1, 1:-1] if out.shape != values.shape else out) - exact).max()
    rows.append((name, ms, error))
  try:
    import torch

    t, tb = torch.from_numpy(values), torch.from_numpy(bias).reshape(1, -1, 1, 1)
    for threads in (2, 1):
      torch.set_num_threads(threads)
      ms = median_ms(lambda: torch.tanh(t + tb), args.iters)
      rows.append((f"PyTorch tanh, {threads} thread{'s' if threads > 1 else ''}", ms,
                   np.abs(torch.tanh(t + tb).numpy() - exact).max()))
  except ImportError:
    pass
  base = rows[0][1]
  print(f"feature map {'x'.join(map(str, shape))}, device {Device.DEFAULT}")
  print(f"{'':<32} {'ms':>8} {'vs Tensor.tanh':>15} {'max |error|':>12}")
  for name, ms, error in rows:
    print(f"{name:<32} {ms:8.3f} {base / ms:14.1f}x {error:12.1e}")


if __name__ == "__main__":
  main()
