"""Wall time of repeated calls, shared by the benchmarks (and by speed.py's child processes)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np


def median_ms(call: Callable[[], object], iters: int, sync: Callable[[], object] = lambda: None,
              warmup: int = 3) -> float:
  """Milliseconds per `call()`, the median of `iters` runs after `warmup` calls (where tinygrad compiles and
  TinyJit captures); `sync` waits for the device before each clock read."""
  for _ in range(warmup):
    call()
  sync()
  times = []
  for _ in range(iters):
    began = time.perf_counter()
    call()
    sync()
    times.append(time.perf_counter() - began)
  return statistics.median(times) * 1000


def alternated_ms(calls: Sequence[Callable[[], object]], rounds: int) -> np.ndarray:
  """Milliseconds of each call per round, (rounds, len(calls)): one call of each per round, in turn, the order
  reversed every other round, so that this shared machine's slow minutes fall on all of them alike."""
  times = np.zeros((rounds, len(calls)))
  for r in range(rounds):
    order = range(len(calls)) if r % 2 == 0 else reversed(range(len(calls)))
    for k in order:
      began = time.perf_counter()
      calls[k]()
      times[r, k] = (time.perf_counter() - began) * 1000
  return times
