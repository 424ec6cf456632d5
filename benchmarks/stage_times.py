"""Where one EDSR-baseline x4 call through supertiny.cores.StagedForward spends its time: each stage's milliseconds
on each core (both cores working side by side), and the first core's half of the stages run alone.

  .venv/bin/python benchmarks/stage_times.py            # 64x64 input
  .venv/bin/python benchmarks/stage_times.py --size 48
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's supertiny
from supertiny.cores import StagedForward, core_devices  # noqa: E402
from supertiny.models import create_model  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--size", type=int, default=64)
  parser.add_argument("--calls", type=int, default=8)
  args = parser.parse_args()
  staged = StagedForward(create_model("edsr-baseline", scale=4), core_devices())
  x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
  for _ in range(3):  # compile, capture, first replay
    staged(x)
  calls = []
  for _ in range(args.calls):
    began = time.perf_counter()
    staged(x)
    calls.append(time.perf_counter() - began)
  print(f"{len(staged.devices)} cores: a call takes {min(calls) * 1e3:.1f} ms (min), "
        f"{sorted(calls)[len(calls) // 2] * 1e3:.1f} ms (median)")

  spent: defaultdict[tuple[int, int], float] = defaultdict(float)
  run = staged._run

  def timed(plan: list, d: int, k: int) -> None:
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


if __name__ == "__main__":
  main()
