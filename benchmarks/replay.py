"""supertiny.runtime.replay's direct kernel calls against TinyJit's own replay, in one process, calls alternated.

  .venv/bin/python benchmarks/replay.py                      # ESPCN x4 and EDSR-baseline x4, both cores
  .venv/bin/python benchmarks/replay.py --cases espcn-infer --rounds 200

Each case is built twice from the same model: once with `supertiny.runtime.replay.DIRECT` (the default) and once without
(TinyJit's replay, as SUPERTINY_REPLAY=tinygrad gives). The two then run in turn, one call each per round, so
that this shared machine's slow minutes fall on both alike; printed are the median ms of each, their ratio and
the median of the per-round ratios. `tiny` cases (ESPCN on 4x4 pixels) measure the per-call overhead alone.
Cases: espcn-infer (64x64, two bands of rows), espcn-tiny (4x4), espcn-train (16 x 24x24, batch split),
edsr-infer (64x64, layer by layer in shares of channels), edsr-tiny (4x4, one core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's supertiny

from timing import alternated_ms  # noqa: E402  (benchmarks/timing.py, beside this script)
from tinygrad.nn.optim import Adam  # noqa: E402

from supertiny.models import create_model  # noqa: E402
from supertiny.runtime import replay  # noqa: E402
from supertiny.runtime.cores import SplitTrainStep, core_devices  # noqa: E402
from supertiny.runtime.runner import Runner  # noqa: E402
from supertiny.train import LOSSES, training  # noqa: E402

CASES = {  # name: (model, channels, mode, batch, LR size)
  "espcn-infer": ("espcn", 1, "infer", 1, 64),
  "espcn-tiny": ("espcn", 1, "infer", 1, 4),
  "espcn-train": ("espcn", 1, "train", 16, 24),
  "edsr-infer": ("edsr-baseline", 3, "infer", 1, 64),
  "edsr-tiny": ("edsr-baseline", 3, "infer", 1, 4),
}


def build(name: str, direct: bool):
  """A call of the case, with its jits made while replay.DIRECT is `direct`."""
  model_name, channels, mode, batch, size = CASES[name]
  rng = np.random.default_rng(0)
  lr = rng.random((batch, channels, size, size), dtype=np.float32)
  model = create_model(model_name, scale=4, channels=channels)
  saved, replay.DIRECT = replay.DIRECT, direct
  try:
    if mode == "train":
      hr = rng.random((batch, channels, size * 4, size * 4), dtype=np.float32)
      step = SplitTrainStep(model, Adam(model.parameters(), lr=1e-4), LOSSES["l1"], core_devices())

      def call():
        with training():
          step(lr, hr).realize()
    else:
      runner = Runner(model)
      images = [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in lr]

      def call():
        for image in images:
          runner(image)
    for _ in range(3):  # compile, capture and bind under the chosen setting
      call()
  finally:
    replay.DIRECT = saved
  return call


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--cases", default="espcn-tiny,espcn-infer,espcn-train,edsr-tiny,edsr-infer",
                      help=f"comma-separated, of {', '.join(CASES)}")
  parser.add_argument("--rounds", type=int, default=0, help="alternated calls of each [60; 15 for EDSR at 64x64]")
  args = parser.parse_args()
  print(f"{'case':<12} {'direct ms':>10} {'tinygrad ms':>12} {'ratio':>6} {'per-round ratio':>16}")
  for name in args.cases.split(","):
    if name not in CASES:
      sys.exit(f"unknown case {name}; choose from {', '.join(CASES)}")
    direct, tinygrad = build(name, True), build(name, False)
    rounds = args.rounds or (15 if name == "edsr-infer" else 60)
    for _ in range(3):
      direct()
      tinygrad()
    times = alternated_ms((direct, tinygrad), rounds)
    a, b = np.median(times, axis=0)
    print(f"{name:<12} {a:10.2f} {b:12.2f} {a / b:6.2f} {np.median(times[:, 0] / times[:, 1]):16.2f}", flush=True)


if __name__ == "__main__":
  main()
