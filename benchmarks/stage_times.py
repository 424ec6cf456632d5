"""Where one EDSR-baseline x4 call through supertiny.runtime.cores.StagedForward spends its time: each stage's milliseconds
on each core (both cores working side by side), and the first core's half of the stages run alone.

  .venv/bin/python benchmarks/stage_times.py            # 64x64 input
  .venv/bin/python benchmarks/stage_times.py --size 48
  .venv/bin/python benchmarks/stage_times.py --kernels 1,2,34,35,36   # also each kernel of these stages, core 0
  .venv/bin/python benchmarks/stage_times.py --against-8x8   # alternate with supertiny.runtime.conv's 8x8 blocks only

`--kernels` times the first core's captured calls of the given stages one by one (supertiny.runtime.replay's direct calls,
the other core idle): which kernels a stage runs and what each costs. `--against-8x8` builds the stages a second
time with supertiny.runtime.conv's wide register block turned off (`conv.WIDE_BLOCK = None`: 8 channels x 8 pixels
everywhere), checks that both give the same output bit for bit, and times calls of the two alternately.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's supertiny
from timing import alternated_ms  # noqa: E402  (benchmarks/timing.py, beside this script)

from supertiny.runtime import conv  # noqa: E402
from supertiny.runtime.cores import StagedForward, core_devices  # noqa: E402
from supertiny.models import create_model  # noqa: E402


def compare(staged: StagedForward, model: object, x: np.ndarray, out: np.ndarray, calls: int) -> None:
  wide, conv.WIDE_BLOCK = conv.WIDE_BLOCK, None
  try:
    narrow = StagedForward(model, staged.devices)
    for _ in range(3):  # the kernels are chosen while the stages compile
      narrow_out = narrow(x)
  finally:
    conv.WIDE_BLOCK = wide
  times = alternated_ms((lambda: staged(x), lambda: narrow(x)), calls)
  print(f"same output bit for bit: {np.array_equal(out, narrow_out)}; calls alternated, ms (min, median): " +
        ", ".join(f"{name} {t.min():.1f}, {np.median(t):.1f}" for name, t in zip(("default", "8x8 only"), times.T,
                                                                                strict=True)))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--calls", type=int, default=8)
  parser.add_argument("--against-8x8", dest="against", action="store_true",
                      help="compare with a copy built with 8x8 register blocks only, calls alternated")
  parser.add_argument("--kernels", default="", help="comma-separated stages whose kernels to time on core 0")
  args = parser.parse_args()
  model = create_model("edsr-baseline", scale=4)
  staged = StagedForward(model, core_devices())
  x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
  for _ in range(3):  # compile, capture, first replay
    out = staged(x)
  if args.against:
    compare(staged, model, x, out, args.calls)
  calls = []
  for _ in range(args.calls):
    began = time.perf_counter()
    staged(x)
    calls.append(time.perf_counter() - began)
  print(f"{len(staged.devices)} cores: a call takes {min(calls) * 1e3:.1f} ms (min), "
        f"{sorted(calls)[len(calls) // 2] * 1e3:.1f} ms (median)")

  spent: defaultdict[tuple[int, int], float] = defaultdict(float)
  run = staged._run

  def timed(plan: object, d: int, k: int) -> None:
    began = time.perf_counter()
    run(plan, d, k)
    spent[d, k] += time.perf_counter() - began
  staged._run = timed  # type: ignore[method-assign]
  for _ in range(args.calls):
    staged(x)
  cores = range(len(staged.devices))
  print("stage  " + "  ".join(f"core {d} ms" for d in cores))
  for k in range(len(staged.stages)):
    print(f"{k:5d}  " + "  ".join(f"{spent[d, k] / args.calls * 1e3:9.2f}" for d in cores))
  print("sum    " + "  ".join(f"{sum(spent[d, k] for k in range(len(staged.stages))) / args.calls * 1e3:9.2f}"
                              for d in cores))
  spent.clear()
  plan = staged.plans[x.shape]
  for _ in range(args.calls):
    for k in range(len(staged.stages)):
      timed(plan, 0, k)
  print(f"core 0's stages alone: {sum(spent.values()) / args.calls * 1e3:.1f} ms")
  for k in (int(k) for k in args.kernels.split(",") if k):
    share = plan.shares[0].get(k)
    if share is None or share.jit.bound is None:
      print(f"stage {k}: core 0 has no bound share")
      continue
    steps = share.jit.bound[1]
    ms = [0.0] * len(steps)
    for _ in range(args.calls):
      for i, step in enumerate(steps):
        began = time.perf_counter()
        step()
        ms[i] += (time.perf_counter() - began) * 1e3 / args.calls
    where = "reads and writes host values" if share.writes_host else "reads host values" if share.reads_host else \
      "copies"
    print(f"stage {k} ({where}): " + ", ".join(f"{getattr(step, 'label', '?')} {t:.2f} ms"
                                               for step, t in zip(steps, ms, strict=True)))


if __name__ == "__main__":
  main()
