"""Replaying a captured TinyJit's CPU kernels as direct calls.

tinygrad 0.14 replays a captured jit call by call through its pattern matcher: resolving each call's buffers,
looking up its runtime and converting its arguments again, about 50 us of Python per kernel on this project's CPU
(`benchmarks/replay.py`). ESPCN's forward pass is a dozen kernels of 0.02-2 ms, so on a small image that is a
large part of the time, and two threads replaying side by side (supertiny.runtime.cores) queue for the GIL between
kernels. `FastJit` captures with TinyJit as usual, then binds the captured kernels to their buffers once
(`internals.bind_captured`): a replay is then one ctypes call per kernel, which releases the GIL for the whole
kernel, and a memmove per host-to-host copy (docs/performance.md, "Replaying captured kernels").

The binding holds only where every call of the capture is a CPU kernel without variables (other than tinygrad's
thread index), a copy between host buffers or a copy of a constant made from Python values, and while the jit is
called with the same input tensors (the input slots of supertiny.runtime.cores). Anything else (another backend,
symbolic shapes, DEBUG or PROFILE output, new inputs, tinygrad internals that are not as expected) takes TinyJit's
own replay, as does every jit made while `DIRECT` is false (`SUPERTINY_REPLAY=tinygrad`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tinygrad import Tensor, TinyJit

from .internals import bind_captured

DIRECT = os.environ.get("SUPERTINY_REPLAY", "direct").lower() != "tinygrad"


class FastJit:
  """TinyJit(fxn) whose replays, once captured, call the kernels directly (see the module docstring). `cnt` counts
  calls as TinyJit's does: 0 runs plainly, 1 captures, 2 and later replay. `capture_first` starts at 1, capturing
  on the first call: for functions whose one-off work (weights, constants) is done already, it saves a whole
  scheduling pass on every new shape."""

  def __init__(self, fxn: Callable[..., Any], capture_first: bool = False):
    self.jit = TinyJit(fxn)
    if capture_first:
      self.jit.cnt = 1
    self.bound: tuple[tuple[Any, ...], list[Callable[[], Any]]] | None = None  # (input uops, one step per call)
    self.buffers: list[Any] = []  # the buffers the bound steps' addresses point into, kept alive
    self.tried = not DIRECT  # whether binding was tried: once, after the capture

  @property
  def cnt(self) -> int:
    return self.jit.cnt

  def __call__(self, *args: Tensor) -> Any:
    if self.bound is not None and self.bound[0] == tuple(a.uop for a in args):
      for step in self.bound[1]:
        step()
      return self.jit.captured.ret
    out = self.jit(*args)
    if self.jit.cnt >= 2 and not self.tried:  # captured: bind once, to these inputs
      self.tried = True
      bound = bind_captured(self.jit, args)
      if bound is not None:
        self.bound, self.buffers = (tuple(a.uop for a in args), bound[0]), bound[1]
    return out
