"""Every use of tinygrad's private internals, in one place, checked against the version they were written for.

SuperTiny's speed on the CPU leans on parts of tinygrad 0.14 that are not its public API: the uops and buffers
behind a tensor (zero-copy host views, refilling a jit's input in place), a captured jit's calls and the compiled
programs behind them (direct replay), the allocator's cache, and the kernel-building types of `custom_kernel`
(supertiny.runtime.conv and .matmul). When the installed tinygrad is not the version these were written for, or any
name is missing, or `SUPERTINY_INTERNALS=off` is set, `USABLE` is False, one warning says so, and every path falls
back to public tinygrad: TinyJit's own replay, `Tensor.conv2d` and matmul, `Tensor.numpy()` and `assign`. Results
stay the same; only speed changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes
from tinygrad.dtype import DType

from .devices import on_cpu

WRITTEN_FOR = "0.14.0"


def _installed_version() -> str:
  from importlib.metadata import PackageNotFoundError, version

  try:
    return version("tinygrad")
  except PackageNotFoundError:
    return "unknown"


def _probe() -> str | None:
  """Why the internals cannot be used, or None when they can."""
  if os.environ.get("SUPERTINY_INTERNALS", "on").lower() in ("off", "0", "false", "no"):
    return "SUPERTINY_INTERNALS=off"
  installed = _installed_version()
  if installed != WRITTEN_FOR:
    return f"tinygrad {installed} is installed; SuperTiny's fast paths were written for {WRITTEN_FOR}"
  try:
    from tinygrad.device import Buffer, LRUAllocator  # noqa: F401
    from tinygrad.engine.jit import CapturedJit  # noqa: F401
    from tinygrad.engine.realize import get_runtime, resolve_params  # noqa: F401
    from tinygrad.helpers import ansistrip, to_tuple  # noqa: F401
    from tinygrad.uop.ops import AxisType, KernelInfo, Ops, UOp  # noqa: F401
  except ImportError as exc:
    return f"tinygrad lacks {exc.name or exc}"
  for owner, name in ((Tensor, "custom_kernel"), (Buffer, "as_memoryview"), (Buffer, "ensure_allocated"),
                      (LRUAllocator, "free_cache"), (CapturedJit, "_written_uops"), (TinyJit(print), "captured")):
    if not hasattr(owner, name):
      return f"tinygrad's {getattr(owner, '__name__', type(owner).__name__)} has no {name}"
  return None


REASON = _probe()
USABLE = REASON is None
if USABLE:
  from tinygrad.engine.realize import get_runtime, resolve_params
  from tinygrad.helpers import DEBUG, PROFILE, ansistrip, to_tuple
  from tinygrad.uop.ops import AxisType, KernelInfo, Ops, UOp  # runtime.conv and .matmul build their kernels with them
else:
  AxisType = KernelInfo = Ops = UOp = None  # type: ignore[assignment,misc]
  warnings.warn(f"{REASON}: running on public tinygrad (TinyJit replay, Tensor.conv2d), slower", stacklevel=2)


def from_numpy_dtype(dtype: np.dtype) -> DType:
  """The tinygrad dtype of numpy's `dtype`."""
  return {np.dtype(np.uint8): dtypes.uint8, np.dtype(np.uint16): dtypes.uint16, np.dtype(np.float16): dtypes.half,
          np.dtype(np.float32): dtypes.float32, np.dtype(np.float64): dtypes.float64,
          np.dtype(np.int32): dtypes.int32, np.dtype(np.int64): dtypes.int64}[np.dtype(dtype)]


def _plain_buffer(t: Tensor) -> Any:
  """The realized buffer that holds exactly `t` (a whole buffer, possibly reshaped), or None."""
  base = t.uop.base
  plain = t.uop is base or (t.uop.op is Ops.RESHAPE and t.uop.src[0] is base)
  buf = base.realized if base.op is Ops.BUFFER else None
  if not plain or buf is None or buf.size != t.numel() or t.dtype != buf.dtype or t.dtype.fmt is None:
    return None
  return buf


def host_array(t: Tensor, copy: bool = True) -> np.ndarray:
  """A realized tensor's values in numpy: a view of (`copy` False) or a copy of its host buffer when the tensor is
  one whole buffer in host memory (safe in a worker thread: nothing is scheduled), else through tinygrad."""
  buf = _plain_buffer(t) if USABLE and on_cpu(t.device) else None
  if buf is None:
    return t.numpy()
  view = np.frombuffer(buf.as_memoryview(allow_zero_copy=True), dtype=np.dtype(t.dtype.fmt)).reshape(t.shape)
  return view.copy() if copy else view


def write_into(t: Tensor, values: np.ndarray) -> Tensor:
  """Copy `values` into the realized buffer behind `t` (a plain whole-buffer tensor, as made by `input_slot`): a
  jit input refilled without creating a new tensor, which costs milliseconds per call on the CPU. Host memory
  (the CPU) is written in place, scheduling nothing, so worker threads may do it; other devices get an assign."""
  buf = _plain_buffer(t) if USABLE and on_cpu(t.device) else None
  if buf is not None:
    np.frombuffer(buf.as_memoryview(allow_zero_copy=True), dtype=np.dtype(t.dtype.fmt)).reshape(t.shape)[...] = values
  else:
    t.assign(Tensor(np.ascontiguousarray(values), device=t.device).cast(t.dtype)).realize()
  return t


def input_slot(shape: tuple[int, ...], dtype: DType, device: str) -> Tensor:
  """A realized tensor of `shape` on `device` whose buffer `write_into` refills."""
  return Tensor.zeros(*shape, dtype=dtype, device=device).contiguous().realize()


def compile_in_process() -> None:
  """Lower and compile kernels in this process instead of tinygrad's pool of compiler processes: for processes
  that are themselves one of several workers (a pool of pools multiplies processes, and a worker ended by a
  signal would leave its pool's semaphores behind)."""
  from tinygrad.helpers import PARALLEL

  PARALLEL.value = 0


def training_mode() -> bool:
  """Whether `Context(TRAINING=1)` is in force (tinygrad.helpers.TRAINING, which tinygrad's BatchNorm reads too);
  False on a tinygrad without that name, where the callers' inference form is as correct, only slower to train."""
  try:
    from tinygrad.helpers import TRAINING
  except ImportError:
    return False
  return bool(TRAINING)


def lowering_for(out: Tensor) -> contextlib.AbstractContextManager:
  """The context to lower `out`'s kernels in: on the CPU, when `out` has no reduction of its own (its convolutions
  are SuperTiny's kernels, which carry their own schedule), without tinygrad's hand-coded optimizations. For
  elementwise kernels they only unroll, which costs lowering time on a first call and no speed here
  (docs/performance.md, "First call")."""
  if not USABLE or not isinstance(out.device, str) or not on_cpu(out.device):
    return contextlib.nullcontext()
  graph = out.uop.toposort()
  own_schedule = {u for sink in graph if sink.op is Ops.SINK and isinstance(sink.arg, KernelInfo)
                  and sink.arg.opts_to_apply is not None for u in sink.toposort()}
  if any(u.op is Ops.REDUCE and u not in own_schedule for u in graph):
    return contextlib.nullcontext()
  return Context(NOOPT=1)


def free_cached_memory(device: str) -> None:
  """Free the buffers tinygrad's allocator keeps for reuse on `device` (it keeps every freed buffer, by size, so
  a process that sees many sizes would otherwise only grow)."""
  allocator = getattr(Device[device], "allocator", None)
  if USABLE and hasattr(allocator, "free_cache"):
    allocator.free_cache()


def forget_compiled() -> None:
  """Empty tinygrad's process-wide caches of scheduled graphs and compiled kernels. They hold every shape ever
  seen, so a process that sees many image sizes would only grow; live jits keep what they use, and the compiler's
  on-disk cache still saves the compile of a shape seen again."""
  if not USABLE:
    return
  from tinygrad.codegen import to_program_cache
  from tinygrad.engine.realize import local_size_cache, runtime_cache
  from tinygrad.schedule import schedule_cache

  for cache in (to_program_cache, local_size_cache, runtime_cache, schedule_cache):
    cache.clear()
  # functools caches of tinygrad's graph rewrites (movement ops, div/mod folding) keep every shape's uops alive
  for name, module in list(sys.modules.items()):
    if name.startswith(("tinygrad.schedule", "tinygrad.uop.divandmod")):
      for value in list(vars(module).values()):
        if callable(getattr(value, "cache_clear", None)) and hasattr(value, "cache_info"):
          value.cache_clear()
  gc.collect()
  if _LIBC is not None:
    _LIBC.malloc_trim(0)  # glibc keeps freed heap pages (kernels' graphs are many small objects) unless asked


def _libc() -> Any:
  try:
    libc = ctypes.CDLL("libc.so.6")
    return libc if hasattr(libc, "malloc_trim") else None
  except OSError:
    return None


_LIBC = _libc()


def bind_captured(jit: TinyJit, args: Sequence[Tensor]) -> tuple[list[Callable[[], Any]], list[Any]] | None:
  """One direct call per captured call of `jit` and the buffers they use (supertiny.runtime.replay), or None where
  a call is not a plain CPU kernel or host copy, or anything is not as this module expects."""
  if not USABLE:
    return None
  try:
    return _bind(jit, args)
  except Exception as exc:  # a tinygrad that behaves differently: its own replay still works
    warnings.warn(f"direct replay is off for a jit ({type(exc).__name__}: {exc}): using TinyJit's", stacklevel=3)
    return None


def _bind(jit: TinyJit, args: Sequence[Tensor]) \
    -> tuple[list[Callable[[], Any]], list[Any]] | None:
  """One direct call per captured call and the buffers they use, or None where a call is not a plain CPU kernel or
  host copy."""
  address = _address
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
    devices = [getattr(b, "device", None) for b in buffers]  # a buffer over several devices has none: not bound
    from_values = len(buffers) == 2 and on_cpu(devices[0]) and devices[1] in ("PYTHON", "NPY")
    if ast.op is Ops.COPY and from_values:
      # a constant made from Python values or a numpy array during the capture (a model's mean colour, the
      # bicubic taps of supertiny.ops.upsample): copied from a snapshot
      dest, constant = buffers[0].ensure_allocated(), ctypes.create_string_buffer(bytes(buffers[1].as_memoryview()))
      if len(constant.raw) < dest.nbytes:
        return None
      keep += [dest, constant]
      steps.append(_labelled(_copier(address(dest), ctypes.addressof(constant), dest.nbytes), "copy constant"))
      continue
    if any(not hasattr(b, "get_buf") or not on_cpu(d) for b, d in zip(buffers, devices, strict=True)):
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
    keep += [*used, runtime]  # the program's code lives as long as its runtime object: forget_compiled drops tinygrad's
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
