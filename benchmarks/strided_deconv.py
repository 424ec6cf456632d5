"""FSRCNN's training step with its 9x9 stride-3 deconvolution as tinygrad's nn.ConvTranspose2d (a convolution of
the zero-stuffed input) and as models.layers.StridedConvTranspose2d (one input-space convolution, pixel shuffle),
alternated in one process so both see the same machine. A tool for docs/performance.md, not a claim.

  .venv/bin/python benchmarks/strided_deconv.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from tinygrad import Tensor, nn
from tinygrad.nn.optim import Adam

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supertiny.models import create_model  # noqa: E402
from supertiny.runtime.training import train_step  # noqa: E402
from supertiny.train import LOSSES, training  # noqa: E402

BATCH, PATCH, SCALE, WARM, REPEATS, STEPS = 32, 20, 3, 5, 6, 20


def fsrcnn_step(generic: bool):
  """A training step of FSRCNN x3; `generic`: its deconvolution replaced by tinygrad's, with the same weights."""
  Tensor.manual_seed(0)
  model = create_model("fsrcnn", scale=SCALE, channels=1)
  if generic:
    ours = model.deconv
    model.deconv = nn.ConvTranspose2d(56, 1, 9, stride=SCALE, padding=4, output_padding=SCALE - 1)
    model.deconv.weight, model.deconv.bias = ours.weight, ours.bias
  return train_step(model, Adam(model.parameters(), lr=1e-4), LOSSES["l1"], BATCH)


def main() -> None:
  rng = np.random.default_rng(0)
  lr = rng.random((BATCH, 1, PATCH, PATCH), dtype=np.float32)
  hr = rng.random((BATCH, 1, PATCH * SCALE, PATCH * SCALE), dtype=np.float32)
  labels = {False: "StridedConvTranspose2d", True: "nn.ConvTranspose2d"}
  steps = {generic: fsrcnn_step(generic) for generic in labels}
  times: dict[bool, list[float]] = {generic: [] for generic in labels}
  with training():
    for step in steps.values():
      for _ in range(WARM):
        step(lr, hr, 1e-4)
    for _ in range(REPEATS):
      for generic, step in steps.items():
        start = time.perf_counter()
        for _ in range(STEPS):
          step(lr, hr, 1e-4)
        times[generic].append((time.perf_counter() - start) / STEPS)
  for generic, label in labels.items():
    print(f"{label:<24} {np.median(times[generic]) * 1000:7.1f} ms a step")
  print(f"nn.ConvTranspose2d / StridedConvTranspose2d: {np.median(times[True]) / np.median(times[False]):.2f}")


if __name__ == "__main__":
  main()
