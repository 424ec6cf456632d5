"""Replaying a captured TinyJit's CPU kernels as direct calls.

tinygrad 0.14 replays a captured jit call by call through its pattern matcher: resolving each call's buffers,
looking up its runtime and converting its arguments again, about 50 us of Python per kernel on this project's CPU
(`benchmarks/replay.py`). ESPCN's forward pass is a dozen kernels of 0.02-2 ms, so on a small image that is a
large part of the time, and two threads replaying side by side (supertiny.cores) queue for the GIL between
kernels. `FastJit` captures with TinyJit as usual, then binds the captured kernels to their buffers once: a replay
is then one ctypes call per kernel, which releases the GIL for the whole kernel, and a memmove per host-to-host
copy (docs/performance.md, "Replaying captured kernels").

The binding holds only where every call of the capture is a CPU kernel without variables (other than tinygrad's
thread index), a copy between host buffers or a copy of a constant made from Python values, and while the jit is
called with the same input tensors (the input slots of supertiny.cores). Anything else (another backend, symbolic
shapes, DEBUG or PROFILE output, new inputs) takes TinyJit's own replay, as does every jit made while `DIRECT` is
false (`SUPERTINY_REPLAY=tinygrad`).

A bound jit can also be pointed at host memory (`FastJit.redirect`): its kernels then read their inputs from numpy
arrays and write the result into one, so that the layers of supertiny.cores.StagedForward pass their values to
each other, and between cores, without a copy.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tinygrad import Tensor, TinyJit
from tinygrad.engine.realize import get_runtime, resolve_params
from tinygrad.helpers import DEBUG, PROFILE, ansistrip, to_tuple
from tinygrad.uop.ops import Ops

from .devices import on_cpu

DIRECT = os.environ.get("SUPERTINY_REPLAY", "direct").lower() != "tinygrad"


class FastJit:
  """TinyJit(fxn) whose replays, once captured, call the kernels directly (see the module docstring). `cnt` counts
  calls as TinyJit's does: 0 compiles, 1 captures, 2 and later replay."""

  def __init__(self, fxn: Callable[..., Any]):
    self.jit = TinyJit(fxn)
    self.bound: tuple[tuple[Any, ...], list[Callable[[], Any]]] | None = None  # (input uops, one step per call)
    self.buffers: list[Any] = []  # the buffers the bound steps' addresses point into, kept alive
    self.tried = not DIRECT  # whether binding was tried: once, after the capture
    self.args: tuple[Tensor, ...] = ()  # the inputs bound to

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
      bound = _bind(self.jit, args)
      if bound is not None:
        self.bound, self.buffers, self.args = (tuple(a.uop for a in args), bound[0]), bound[1], tuple(args)
    return out

  def redirect(self, inputs: Sequence[np.ndarray | None], output: np.ndarray | None = None) -> bool:
    """Once bound: read input i from the host array `inputs[i]` instead of its tensor (None: from the tensor), and
    write the result, a single tensor, into `output` instead of the tensor's buffer (None: the buffer). Calls with
    the bound inputs then neither read those tensors nor update the returned one. Each array must be C-contiguous,
    of the tensor's dtype and size, and stay where it is: the jit keeps a reference. False (nothing changed) where
    the jit is not bound or an array does not fit; CPU only, as binding is."""
    if self.bound is None:
      return False
    ret = self.jit.captured.ret
    pairs = list(zip(self.args, inputs, strict=True))
    if output is not None:
      if not isinstance(ret, Tensor):
        return False
      pairs.append((ret, output))
    moved: dict[int, int] = {}
    for tensor, array in pairs:
      if array is None:
        continue
      buffer = tensor.uop.base.realized
      if buffer is None or buffer.base is not buffer or not array.flags.c_contiguous or \
         array.dtype != np.dtype(tensor.dtype.fmt or "V") or array.nbytes != buffer.nbytes:
        return False
      moved[id(buffer)] = array.ctypes.data
    bound = _bind(self.jit, self.args, moved)
    if bound is None:
      return False
    self.bound, self.buffers = (self.bound[0], bound[0]), [*bound[1], *(a for _, a in pairs if a is not None)]
    return True


def _bind(jit: TinyJit, args: Sequence[Tensor], moved: dict[int, int] | None = None) \
    -> tuple[list[Callable[[], Any]], list[Any]] | None:
  """One direct call per captured call and the buffers they use, or None where a call is not a plain CPU kernel or
  host copy. `moved`: id(base buffer) -> the host address used in its place."""
  def address(buffer: Any) -> int:
    base = moved.get(id(buffer.base)) if moved else None
    return _address(buffer) if base is None else base + buffer.offset

  captured = jit.captured
  if captured is None or DEBUG >= 1 or PROFILE or not all(isinstance(a, Tensor) for a in args):
    return None
  inputs = tuple(a.uop.base for a in args)
  if any(u.op is not Ops.BUFFER for u in inputs) or set(inputs) & captured._written_uops:
    return None  # an input the jit would copy before writing to it, or not a plain buffer
  steps: list[Callable[[], Any]] = []
  keep: list[Any] = []
  for call in captured.linear.src:
    if call.op is not Ops.CALL:
      return None
    ast = call.src[0]
    try:
      buffers = [b.buffer for b in resolve_params(call, inputs)]
    except Exception:
      return None
    if ast.op is Ops.COPY and len(buffers) == 2 and on_cpu(buffers[0].device) and buffers[1].device == "PYTHON":
      # a constant made from Python values during the capture (a model's mean colour): copied from a snapshot
      dest, constant = buffers[0].ensure_allocated(), ctypes.create_string_buffer(bytes(buffers[1].as_memoryview()))
      if len(constant.raw) < dest.nbytes:
        return None
      keep += [dest, constant]
      steps.append(_labelled(_copier(address(dest), ctypes.addressof(constant), dest.nbytes), "copy constant"))
      continue
    if any(not hasattr(b, "get_buf") or not on_cpu(b.device) for b in buffers):
      return None
    if ast.op is Ops.COPY:
      dest, src = (b.ensure_allocated() for b in buffers[:2])
      if dest.nbytes != src.nbytes:
        return None
      keep += [dest, src]
      steps.append(_labelled(_copier(address(dest), address(src), dest.nbytes), "copy"))
      continue
    if ast.op is not Ops.PROGRAM:
      return None
    runtime = get_runtime(to_tuple(call.src[1].device)[0], ast)  # the device tinygrad's exec_kernel runs it on
    if getattr(runtime, "lvp", False) or not hasattr(runtime, "fxn"):
      return None
    # a kernel split over tinygrad's CPU threads runs once per thread index (`core_id`), as CPUProgram does
    threads = getattr(runtime, "runtimevars", {})
    (parts, *rest), values = ast.arg.launch_dims({})[0], ast.arg.vals({})
    if set(threads) - {"core_id"} or tuple(rest) != (1, 1) or (parts != 1 and not threads) or \
       len(values) != len(threads):
      return None
    used = [buffers[i].ensure_allocated() for i in ast.arg.globals]
    keep += used
    addresses = [address(b) for b in used] + [0] * len(values)
    for thread in range(parts):
      for slot in threads.values():
        addresses[slot] = thread
      steps.append(_labelled(_caller(runtime.fxn, tuple(ctypes.c_uint64(a) for a in addresses)),
                             ansistrip(ast.arg.name) if parts == 1 else f"{ansistrip(ast.arg.name)} [{thread}]"))
  return steps, keep


def _address(buffer: Any) -> int:
  """Where a host buffer's bytes start (a view's offset included)."""
  return buffer.get_buf(buffer.device).va_addr


def _labelled(step: Callable[[], Any], label: str) -> Callable[[], Any]:
  """`step`, carrying the kernel's name as `step.label` (for profiles: benchmarks/stage_times.py)."""
  step.label = label  # type: ignore[attr-defined]
  return step


def _caller(fxn: Callable[..., None], addresses: tuple[ctypes.c_uint64, ...]) -> Callable[[], None]:
  return lambda: fxn(*addresses)


def _copier(dest: int, src: int, nbytes: int) -> Callable[[], Any]:
  return lambda: ctypes.memmove(dest, src, nbytes)
