"""Every CPU core for one model. tinygrad 0.14 runs a CPU kernel on the Python thread that launches it, so one
device keeps one core busy while PyTorch uses them all. CPU:0, CPU:1, ... are separate tinygrad devices over the
same memory: a copy of the model on each, driven from its own Python thread, runs alongside the others, because
ctypes releases the GIL while a kernel runs.

Thread safety: a TinyJit capture records every kernel that is realized anywhere in the process (tinygrad keeps one
global capture list), so captures run one device after the other on the calling thread. Worker threads only replay
captured JITs, which launch the recorded kernels on buffers that no other thread touches, and read results through
zero-copy views of those buffers. Every jit here is a supertiny.runtime.replay.FastJit: its replays call the kernels
directly, without tinygrad's Python work per kernel, during which the other threads would wait for the GIL.

Training (`SplitTrainStep`) is data parallel: each device computes the gradient of its share of the batch, then
every device averages all the gradients in the same order and applies its own copy of the optimizer, so the
copies stay equal bit for bit. Tiled upscaling (`CorePool`, used by supertiny.infer) gives tiles to the devices in
turn; tiles of one shape compile to the same kernels on every device, so the image is the one-device image bit for
bit. One call (`SplitForward`) cuts a batch by images, or one image into bands of rows that overlap by the model's
reach (supertiny.runtime.conv sums every output in the same order whatever the band's size; elementwise kernels compiled
for another shape may differ in the last bit).
"""

from __future__ import annotations

import math
import os
import threading
import types
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import numpy as np
from tinygrad import Device, Tensor, dtypes, nn
from tinygrad.nn.optim import Optimizer
from tinygrad.nn.state import get_parameters

from ..errors import SuperTinyError
from .devices import on_cpu
from .internals import (
  forget_compiled,
  free_cached_memory,
  from_numpy_dtype,
  host_array,
  input_slot,
  lowering_for,
  write_into,
)
from .replay import FastJit

T = TypeVar("T")
R = TypeVar("R")


def cpu_cores() -> int:
  """Cores this process may run on."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def core_devices(cores: int | None = None) -> tuple[str, ...]:
  """One CPU device per core ("CPU", "CPU:1", ...) when the default device is the CPU; just the default device
  elsewhere (a GPU has its own parallelism). `cores` None: SUPERTINY_CORES if set, else every core this process may
  use."""
  if not on_cpu(Device.DEFAULT):
    return (Device.DEFAULT,)
  if cores is None:
    setting = os.environ.get("SUPERTINY_CORES", "").strip()
    if setting and not (setting.isdigit() and int(setting) > 0):
      raise SuperTinyError(f"SUPERTINY_CORES={setting!r}: expected a whole number of cores, 1 or more")
    cores = int(setting) if setting else cpu_cores()
  return tuple(Device.canonicalize(f"CPU:{i}") for i in range(max(cores, 1)))


def replicate(model: object, device: str, memo: dict[int, object] | None = None) -> object:
  """A copy of `model` whose tensors live on `device`: the same object graph (layers, lists, dicts) with every
  Tensor copied over, parameters staying parameters. `memo` maps id(original) -> copy and is filled in."""
  memo = {} if memo is None else memo

  def clone(obj: object) -> object:
    if id(obj) in memo:
      return memo[id(obj)]
    if isinstance(obj, Tensor):
      out: object = obj.to(device).realize()
    elif isinstance(obj, (list, tuple)):
      out = type(obj)(clone(v) for v in obj)
    elif isinstance(obj, dict):
      out = {k: clone(v) for k, v in obj.items()}
    elif hasattr(obj, "__dict__") and not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType,
                                                           types.MethodType, types.ModuleType)):
      out = object.__new__(type(obj))
      memo[id(obj)] = out
      for key, value in vars(obj).items():
        object.__setattr__(out, key, clone(value))
      return out
    else:
      out = obj  # numbers, strings, functions: shared
    memo[id(obj)] = out
    return out

  return clone(model)


def has_batchnorm(model: object) -> bool:
  """Whether `model` holds a BatchNorm layer (its statistics are per batch: a split batch changes them)."""
  seen: set[int] = set()

  def walk(obj: object) -> bool:
    if id(obj) in seen or isinstance(obj, (Tensor, str, bytes, int, float, type)):
      return False
    seen.add(id(obj))
    if isinstance(obj, nn.BatchNorm):
      return True
    if isinstance(obj, (list, tuple)):
      return any(walk(v) for v in obj)
    if isinstance(obj, dict):
      return any(walk(v) for v in obj.values())
    return hasattr(obj, "__dict__") and any(walk(v) for v in vars(obj).values())

  return walk(model)


def flat_cat(pieces: list[Tensor], per_kernel: int = 32) -> Tensor:
  """Tensor.cat of 1-D tensors, in rounds of at most `per_kernel` pieces: one CPU kernel takes at most 63 buffers."""
  while len(pieces) > 1:
    pieces = [Tensor.cat(*pieces[k:k + per_kernel]) if len(pieces[k:k + per_kernel]) > 1 else pieces[k]
              for k in range(0, len(pieces), per_kernel)]
    if len(pieces) > 1:
      pieces = [p.contiguous() for p in pieces]
  return pieces[0]


def row_bands(height: int, parts: int, context: int) -> list[tuple[int, int, int, int]]:
  """Cut `height` rows (or images of a batch) into `parts` bands: (read_from, read_to, keep_from, keep_to) per band,
  where rows keep_from..keep_to are the band's own and read_from..read_to add up to `context` rows of each
  neighbour."""
  edges = [round(i * height / parts) for i in range(parts + 1)]
  return [(max(a - context, 0), min(b + context, height), a, b) for a, b in zip(edges, edges[1:], strict=False)]


class Cold(Exception):
  """A worker thread met a jit that is not captured yet: the call must run on the home thread."""


_worker = threading.local()  # .replay_only: set while calls may only replay captured jits


class DeviceRunner:
  """One device's copy of a model and its jits, one per key (an input shape and whatever else changes the traced
  function), the `max_jits` most recently used kept: `runner.run(key, fn, *arrays)` is `fn(model, *tensors)` on
  that device for numpy inputs, returned as numpy. The first device's runner calls the model itself, held weakly
  (runners live in caches keyed by the model)."""

  def __init__(self, model: Callable[[Tensor], Tensor], device: str, max_jits: int = 1):
    self.device, self.max_jits = device, max_jits
    home = model_device(model)
    if isinstance(home, str) and Device.canonicalize(device) == Device.canonicalize(home):
      ref = weakref.ref(model)
      self.model: Callable[[], Callable[[Tensor], Tensor]] = lambda: ref()  # type: ignore[return-value,assignment]
    else:
      replica = replicate(model, device)
      self.model = lambda: replica  # type: ignore[assignment,return-value]
    self.dtype = next((p.dtype for p in get_parameters(model)), dtypes.float32)
    self.jits: OrderedDict[Hashable, tuple[FastJit, list[Tensor], AbstractContextManager]] = OrderedDict()
    self.evicted = False  # a jit was dropped since the last `release`: its memory waits in tinygrad's caches

  def run(self, key: Hashable, fn: Callable[..., Tensor], *inputs: np.ndarray, copy: bool = True) -> np.ndarray:
    """fn(model, *inputs as tensors on this device), through the jit kept under `key` (made on first use; a
    key's arrays must keep their shapes and dtypes). `copy` False returns a view of the jit's output buffer,
    valid until the key's next call."""
    entry = self.jits.get(key)
    if entry is None:
      if getattr(_worker, "replay_only", False):
        raise Cold
      model = self.model

      def forward(*tensors: Tensor) -> Tensor:
        return fn(model(), *tensors).contiguous().realize()
      slots = [input_slot(a.shape, from_numpy_dtype(a.dtype), self.device) for a in inputs]
      entry = (FastJit(forward, capture_first=True), slots, lowering_for(fn(model(), *slots)))
      self.jits[key] = entry
      while len(self.jits) > self.max_jits:
        self.jits.popitem(last=False)
        self.evicted = True
      if self.evicted:  # the dropped jit's buffers, free before the new one allocates (else the peak holds both)
        free_cached_memory(self.device)
    else:
      self.jits.move_to_end(key)
    jit, slots, lowering = entry
    if (jit.cnt < 2 or jit.bound is None) and getattr(_worker, "replay_only", False):
      raise Cold  # capturing, or replaying through tinygrad, whose device state is not for two threads at once
    filled = [write_into(s, a) for s, a in zip(slots, inputs, strict=True)]
    with lowering if jit.cnt < 2 else nullcontext():  # lowering happens only while capturing
      return host_array(jit(*filled), copy=copy)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """The model's float32 output for a float32 NCHW batch (computed in the weights' dtype)."""
    dtype = self.dtype
    return self.run(("forward", x.shape), lambda m, t: m(t if dtype == dtypes.float32 else t.cast(dtype)).float(),
                    np.ascontiguousarray(x, dtype=np.float32))


def model_device(model: object) -> str | tuple[str, ...]:
  """Where a model's weights live: a device name, the devices they are sharded over, or the default device for a
  model without weights."""
  params = get_parameters(model)
  return params[0].device if params else Device.DEFAULT


class CorePool:
  """Many calls of one model spread over `devices`, one thread each: item i goes to device i mod n. Calls that
  would compile or capture a jit (a device's first two calls for a key) run one at a time on the calling
  thread; only replays of captured jits run side by side."""

  def __init__(self, model: Callable[[Tensor], Tensor], devices: Sequence[str], max_jits: int = 1):
    self.model_ref, self.devices, self.max_jits = weakref.ref(model), tuple(devices), max_jits
    self._build(model)

  def _build(self, model: Callable[[Tensor], Tensor]) -> None:
    params = get_parameters(model)
    if params:
      Tensor.realize(*params)
    self.weights = [id(p.uop.base.realized) for p in params]
    self.runners = [DeviceRunner(model, d, self.max_jits) for d in self.devices]
    self.replica_params = [get_parameters(r.model()) for r in self.runners[1:] if r.model() is not model]
    self.pool = ThreadPoolExecutor(len(self.runners) - 1, thread_name_prefix="supertiny-core") \
      if len(self.runners) > 1 else None

  def sync(self) -> None:
    """Bring the copies on other devices up to the model's weights: jits on the model's own device read its
    buffers, copies elsewhere take their values again (a memory copy; weights trained further in place show up);
    weights replaced by new buffers (loaded anew) mean new jits everywhere."""
    model = self.model_ref()
    params = get_parameters(model)
    if params:
      Tensor.realize(*params)
    if [id(p.uop.base.realized) for p in params] != self.weights:
      self._build(model)
      return
    for copies in self.replica_params:
      for p, q in zip(params, copies, strict=True):
        if q is not p:
          write_into(q, host_array(p, copy=False))

  def release(self) -> None:
    """Hand memory that tinygrad keeps for reuse back: buffers of dropped jits and of capture runs, and, once a jit
    was dropped (shapes come and go, as in an evaluation), its caches of compiled kernels."""
    if any(r.evicted for r in self.runners):
      forget_compiled()
    for device in {r.device for r in self.runners}:
      free_cached_memory(device)
    for runner in self.runners:
      runner.evicted = False

  def map(self, fn: Callable[[DeviceRunner, T], R], items: Sequence[T]) -> list[R]:
    """[fn(runner, item) for item in items], each item given to one device's runner."""
    n = len(self.runners)
    results: list[R] = [None] * len(items)  # type: ignore[list-item]

    def replay(i: int) -> R | Cold:
      _worker.replay_only = True
      try:
        return fn(self.runners[i % n], items[i])
      except Cold as cold:
        return cold
      finally:
        _worker.replay_only = False

    for start in range(0, len(items), n):
      group = range(start, min(start + n, len(items)))
      if self.pool is None or len(group) == 1:
        outcomes: list = [Cold()] * len(group)
      else:
        futures = [self.pool.submit(replay, i) for i in group[1:]]
        outcomes = [replay(group[0]), *(f.result() for f in futures)]
      for i, outcome in zip(group, outcomes, strict=True):
        # cold calls run here, after the group: nothing else runs while tinygrad schedules or captures
        results[i] = fn(self.runners[i % n], items[i]) if isinstance(outcome, Cold) else outcome
    return results


def optimizer_tensors(optimizer: Optimizer) -> list[Tensor]:
  """The tensors an optimizer updates besides the weights (Adam's moments and bias corrections, the rate)."""
  state = [optimizer.lr]
  for name in ("m", "v"):
    state += list(getattr(optimizer, name, []))
  return state + [t for t in (getattr(optimizer, "b1_t", None), getattr(optimizer, "b2_t", None)) if t is not None]


def share_weight(loss_fn: Callable[[Tensor, Tensor], Tensor], target: Tensor) -> Tensor:
  """How much a share of the batch counts in the whole batch's loss: `loss_fn.weight(target)` where the loss
  defines one (a masked mean counts the pixels it keeps), else 1 (plain means over equal shares). The split's loss
  and gradient are the weighted means of the shares', so they are the whole batch's."""
  weight = getattr(loss_fn, "weight", None)
  return (weight(target) if weight is not None else Tensor.ones(1, device=target.device)).reshape(1).float()


class SplitTrainStep:
  """A data-parallel training step over `devices` (the model's own first), one thread per device. Each device
  computes the loss and gradient of its share of the batch; then each reads the others' gradients, averages them
  in the same order and applies its own copy of `optimizer`, so the copies of the weights (and of the optimizer's
  state) stay equal bit for bit without being copied back. `step(lr, hr[, learning_rate])` takes numpy batches
  (NCHW, the batch a multiple of the device count) and a float, and returns the loss as a Tensor on the first
  device; the update equals make_train_step's on the whole batch up to float rounding, masked losses included
  (`share_weight`). `clip`: global gradient-norm clipping. BatchNorm layers are refused: their statistics would
  be per share."""

  def __init__(self, model: Callable[[Tensor], Tensor], optimizer: Optimizer,
               loss_fn: Callable[[Tensor, Tensor], Tensor], devices: Sequence[str], clip: float = 0.0):
    if has_batchnorm(model):
      raise ValueError("data-parallel steps over CPU cores do not support BatchNorm (its statistics are per batch)")
    self.devices, self.clip = tuple(devices), clip
    self.replicas: list[Callable[[Tensor], Tensor]] = [model]
    self.optimizers = [optimizer]
    self.replica_params: list[list[Tensor]] = [list(optimizer.params)]
    for device in self.devices[1:]:
      memo: dict[int, object] = {}
      self.replicas.append(replicate(model, device, memo))  # type: ignore[arg-type]
      copy = replicate(optimizer, device, memo)  # its params are the replica's: the memo maps them
      copy.device = device  # type: ignore[attr-defined]
      self.optimizers.append(copy)  # type: ignore[arg-type]
      self.replica_params.append(list(copy.params))  # type: ignore[attr-defined]
    sizes = [p.numel() for p in optimizer.params]
    self.offsets = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    # everything the steps read realized first: their first calls capture (see training.jitted_step)
    Tensor.realize(*[t for o in self.optimizers for t in (*o.params, *o.buffers, *optimizer_tensors(o))])
    self.grad_jits = [FastJit(self._grads_fn(i, loss_fn), capture_first=True) for i in range(len(self.devices))]
    self.update_jits = [FastJit(self._update_fn(i), capture_first=True) for i in range(len(self.devices))]
    self.pool = ThreadPoolExecutor(len(self.devices) - 1, thread_name_prefix="supertiny-core")
    self.slots: list[tuple[Tensor, Tensor]] | None = None
    rate = optimizer.lr.numpy().reshape(1)
    self.rates = [write_into(input_slot((1,), optimizer.lr.dtype, d), rate) for d in self.devices]

  def _grads_fn(self, index: int, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., list[Tensor]]:
    replica, params = self.replicas[index], self.replica_params[index]

    def grads(lr: Tensor, hr: Tensor) -> list[Tensor]:
      value = loss_fn(replica(lr), hr)
      # one flat gradient: the other devices copy it in one piece
      share = [value.reshape(1), share_weight(loss_fn, hr),
               flat_cat([g.contiguous().flatten() for g in value.gradient(*params)])]
      Tensor.realize(*share)
      return share
    return grads

  def _update_fn(self, index: int) -> Callable[..., Tensor]:
    device, optimizer, params = self.devices[index], self.optimizers[index], self.replica_params[index]

    def here(t: Tensor) -> Tensor:
      return t if t.device == device else t.to(device)

    def update(rate: Tensor, *shares: Tensor) -> Tensor:
      """shares: each device's loss, weight and flat gradient, device by device."""
      optimizer.lr.assign(rate.reshape(optimizer.lr.shape))
      values, weights, flats = ([here(t) for t in shares[k::3]] for k in range(3))
      # the same sums in the same order on every device: their updates are identical
      total = sum(weights[1:], weights[0]).maximum(1e-6)
      value = sum((v * w for v, w in zip(values[1:], weights[1:], strict=True)), values[0] * weights[0]) / total
      flat = sum((g * w for g, w in zip(flats[1:], weights[1:], strict=True)), flats[0] * weights[0]) / total
      grads = [flat[a:b].reshape(p.shape) for p, a, b in zip(params, self.offsets[:-1], self.offsets[1:], strict=True)]
      if self.clip > 0:
        norm = flat.float().square().sum().sqrt()
        factor = (self.clip / (norm + 1e-6)).minimum(1.0)
        grads = [g * factor for g in grads]
      for p, g in zip(params, grads, strict=True):
        p.grad = g
      Tensor.realize(value, *optimizer.schedule_step())
      optimizer.zero_grad()
      return value
    return update

  def _run(self, jits: list[FastJit], args: list[tuple]) -> list:
    """jits[i](*args[i]) for every device: one after another on this thread while any jit still compiles or
    captures, else the first here and the others on workers."""
    if any(j.cnt < 2 for j in jits):
      return [j(*a) for j, a in zip(jits, args, strict=True)]
    others = [self.pool.submit(j, *a) for j, a in zip(jits[1:], args[1:], strict=True)]
    return [jits[0](*args[0]), *(f.result() for f in others)]

  def __call__(self, lr: np.ndarray, hr: np.ndarray, learning_rate: float | None = None) -> Tensor:
    n = len(self.devices)
    if lr.shape[0] % n:
      raise ValueError(f"batch {lr.shape[0]} does not split evenly over {n} devices")
    k = lr.shape[0] // n
    if self.slots is None or self.slots[0][0].shape[0] != k:
      dtype = self.replica_params[0][0].dtype
      self.slots = [(input_slot((k, *lr.shape[1:]), dtype, d), input_slot((k, *hr.shape[1:]), dtype, d))
                    for d in self.devices]
    inputs = [(write_into(x, lr[i * k:(i + 1) * k]), write_into(y, hr[i * k:(i + 1) * k]))
              for i, (x, y) in enumerate(self.slots)]
    shares = [t for share in self._run(self.grad_jits, inputs) for t in share]
    if learning_rate is not None:
      for rate in self.rates:
        write_into(rate, np.array([learning_rate]))
    return self._run(self.update_jits, [(rate, *shares) for rate in self.rates])[0]


def split_context(receptive_field: int | None) -> int | None:
  """Rows of overlap that make a band's kept rows exact: half the receptive field, rounded up."""
  return None if receptive_field is None else math.ceil(receptive_field / 2)
