"""Median wall time of a repeated call, shared by the benchmarks (and by speed.py's child processes)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


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
