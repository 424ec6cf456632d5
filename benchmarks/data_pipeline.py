"""Data pipeline vs training step: batches/s of the patch sampler alone against the training step rate.

  .venv/bin/python benchmarks/data_pipeline.py --train ../shared/datasets/T91 [--model espcn --scale 3 --batch 16]

The pipeline must outpace the step by a wide margin (target: 5x) so prefetching hides it completely.
"""

from __future__ import annotations

import argparse
import json
import time

from tinygrad import Tensor, dtypes
from tinygrad.nn.optim import Adam

from supertiny.data.datasets import PatchSampler, load_hr_folders
from supertiny.models import create_model
from supertiny.train import make_train_step, training


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--train", nargs="+", required=True)
  parser.add_argument("--model", default="espcn")
  parser.add_argument("--scale", type=int, default=3)
  parser.add_argument("--channels", type=int, default=1)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--patch", type=int, default=17)
  parser.add_argument("--steps", type=int, default=100)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()

  start = time.perf_counter()
  pairs = load_hr_folders(args.train, args.scale, args.channels)
  load_seconds = time.perf_counter() - start
  sampler = PatchSampler(pairs, args.scale, args.patch, args.batch, seed=0)

  start = time.perf_counter()
  for step in range(args.steps):
    sampler.batch_at(step)
  data_rate = args.steps / (time.perf_counter() - start)

  model = create_model(args.model, scale=args.scale, channels=args.channels)
  optimizer = Adam(model.parameters(), lr=1e-3)
  step_fn = make_train_step(model, optimizer)
  rate = Tensor([1e-3], dtype=dtypes.float32)
  with training():
    for step in range(3):  # JIT capture
      lr, hr = sampler.batch_at(step)
      step_fn(Tensor(lr), Tensor(hr), rate).item()
    start = time.perf_counter()
    for step in range(args.steps):
      lr, hr = sampler.batch_at(step)
      step_fn(Tensor(lr), Tensor(hr), rate).item()
    total_rate = args.steps / (time.perf_counter() - start)
  # the loop above includes sampling; the step alone is what remains
  step_rate = 1 / (1 / total_rate - 1 / data_rate)
  result = {"model": args.model, "batch": args.batch, "patch": args.patch, "load_and_degrade_s": load_seconds,
            "data_batches_per_s": data_rate, "train_steps_per_s": step_rate, "ratio": data_rate / step_rate}
  if args.json:
    print(json.dumps(result, indent=2))
  else:
    print(f"loading and degrading {len(pairs)} images once: {load_seconds:.1f} s")
    print(f"data pipeline alone: {data_rate:.1f} batches/s; training step ({args.model}, batch {args.batch}, "
          f"LR patch {args.patch}): {step_rate:.1f} steps/s; ratio {data_rate / step_rate:.1f}x")


if __name__ == "__main__":
  main()
