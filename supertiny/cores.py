"""Every CPU core for one model. tinygrad 0.14 runs a CPU kernel on the Python thread that launches it, so one
device keeps one core busy while PyTorch uses them all. CPU:0, CPU:1, ... are separate tinygrad devices over the
same memory: a copy of the model on each, driven from its own Python thread, runs alongside the others, because
ctypes releases the GIL while a kernel runs.

Thread safety: a TinyJit capture records every kernel that is realized anywhere in the process (tinygrad keeps one
global capture list), so captures run one device after the other on the calling thread. Worker threads only replay
captured JITs, which launch the recorded kernels on buffers that no other thread touches, and read results through
zero-copy views of those buffers. Every jit here is a supertiny.replay.FastJit: its replays call the kernels
directly, without tinygrad's Python work per kernel, during which the other threads would wait for the GIL.

Training (`SplitTrainStep`) is data parallel: each device computes the gradient of its share of the batch, then
every device averages all the gradients in the same order and applies its own copy of the optimizer, so the
copies stay equal bit for bit. Tiled upscaling (`CorePool`, used by supertiny.infer) gives tiles to the devices in
turn; tiles of one shape compile to the same kernels on every device, so the image is the one-device image bit for
bit. One call (`SplitForward`) cuts a batch by images, or one image into bands of rows that overlap by the model's
reach (supertiny.conv sums every output in the same order whatever the band's size; elementwise kernels compiled
for another shape may differ in the last bit).
"""

from __future__ import annotations

import math
import os
import threading
import types
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

import numpy as np
from tinygrad import Device, Tensor, dtypes, nn
from tinygrad.dtype import DType
from tinygrad.nn.optim import Optimizer
from tinygrad.nn.state import get_parameters
from tinygrad.uop.ops import Ops

from .devices import on_cpu
from .errors import SuperTinyError
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


def host_array(t: Tensor) -> np.ndarray:
  """A realized tensor's values as a new numpy array; a plain copy of the buffer when the tensor is one whole
  buffer (safe in a worker thread: nothing is scheduled), else through tinygrad."""
  base = t.uop.base
  plain = t.uop is base or (t.uop.op is Ops.RESHAPE and t.uop.src[0] is base)
  buf = base.realized if base.op is Ops.BUFFER else None
  if not plain or buf is None or buf.size != t.numel() or t.dtype != buf.dtype or t.dtype.fmt is None:
    return t.numpy()
  view = buf.as_memoryview(allow_zero_copy=True)
  return np.frombuffer(view, dtype=np.dtype(t.dtype.fmt)).reshape(t.shape).copy()


def write_into(t: Tensor, values: np.ndarray) -> Tensor:
  """Copy `values` into the realized buffer behind `t` (a plain whole-buffer tensor, as made by `input_slot`): a
  jit input refilled without creating a new tensor, which costs milliseconds per call on the CPU. Host memory
  (the CPU) is written in place, scheduling nothing, so worker threads may do it; other devices get an assign."""
  buf = t.uop.base.realized
  if hasattr(buf.allocator, "_as_buffer"):
    view = np.frombuffer(buf.as_memoryview(allow_zero_copy=True), dtype=np.dtype(t.dtype.fmt))
    view.reshape(t.shape)[...] = values
  else:
    t.assign(Tensor(np.ascontiguousarray(values, dtype=np.float32), device=t.device).cast(t.dtype)).realize()
  return t


def input_slot(shape: tuple[int, ...], dtype: DType, device: str) -> Tensor:
  """A realized tensor of `shape` on `device` whose buffer `write_into` refills."""
  return Tensor.zeros(*shape, dtype=dtype, device=device).contiguous().realize()


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
  """A worker thread met an input shape whose jit is not captured yet: the call must run on the home thread."""


_worker = threading.local()  # .replay_only: set while calls may only replay captured jits


class DeviceRunner:
  """One device's copy of a model, with one jit (FastJit) and one input slot per input shape: `runner(x)` maps an NCHW
  numpy batch to the model's numpy output. The first device's runner calls the model itself, held weakly (runners
  live in caches keyed by the model)."""

  def __init__(self, model: Callable[[Tensor], Tensor], device: str):
    self.device = device
    if Device.canonicalize(device) == Device.canonicalize(_device_of(model)):
      ref = weakref.ref(model)
      self.model: Callable[[], Callable[[Tensor], Tensor]] = lambda: ref()  # type: ignore[return-value,assignment]
    else:
      replica = replicate(model, device)
      self.model = lambda: replica  # type: ignore[assignment,return-value]
    self.dtype = next((p.dtype for p in get_parameters(model)), dtypes.float32)
    self.jits: dict[tuple[int, ...], tuple[FastJit, Tensor]] = {}

  def __call__(self, x: np.ndarray) -> np.ndarray:
    """The model's float32 output for a float32 NCHW batch (computed in the weights' dtype)."""
    if x.shape not in self.jits:
      if getattr(_worker, "replay_only", False):
        raise Cold
      dtype = self.dtype

      def forward(t: Tensor) -> Tensor:
        return self.model()(t if dtype == dtypes.float32 else t.cast(dtype)).float().contiguous().realize()
      self.jits[x.shape] = (FastJit(forward), input_slot(x.shape, dtypes.float32, self.device))
    jit, slot = self.jits[x.shape]
    if jit.cnt < 2 and getattr(_worker, "replay_only", False):
      raise Cold
    return host_array(jit(write_into(slot, x)))


def _device_of(model: object) -> str:
  params = get_parameters(model)
  return params[0].device if params and isinstance(params[0].device, str) else Device.DEFAULT


class CorePool:
  """Many calls of one model spread over `devices`, one thread each: item i goes to device i mod n. Calls that
  would compile or capture a jit (a device's first two calls for an input shape) run one at a time on the calling
  thread; only replays of captured jits run side by side."""

  def __init__(self, model: Callable[[Tensor], Tensor], devices: Sequence[str]):
    self.runners = [DeviceRunner(model, d) for d in devices]
    self.pool = ThreadPoolExecutor(len(self.runners) - 1, thread_name_prefix="supertiny-core") \
      if len(self.runners) > 1 else None

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


class SplitForward:
  """`model(x)` for NCHW float numpy batches with the work spread over `devices`. Several images are split by
  image; one image into bands of rows that overlap by `context` rows (the model's reach, None: global models, not
  split), when that saves work, else layer by layer in shares of output channels (`StagedForward`) for models
  with `channel_stages`. Returns numpy."""

  def __init__(self, model: Callable[[Tensor], Tensor], devices: Sequence[str], context: int | None):
    self.cores = CorePool(model, devices)
    self.context = context
    # an image that does not cut into bands: layer by layer in shares of channels, where the model says how
    self.staged = StagedForward(model, devices, [r.model() for r in self.cores.runners[1:]]) \
      if len(devices) > 1 and hasattr(model, "channel_stages") else None

  def _pieces(self, x: np.ndarray) -> list[tuple[np.ndarray, slice]]:
    """(input piece, the rows of the piece's output to keep, in LR rows)."""
    batch, height = x.shape[0], x.shape[2]
    parts = len(self.cores.runners)
    if batch >= parts:
      return [(x[a:b], slice(None)) for a, b, _, _ in row_bands(batch, parts, 0)]
    bands = row_bands(height, parts, self.context) if self.context is not None else []
    if not bands or max(hi - lo for lo, hi, _, _ in bands) > 0.8 * height:  # the overlap would eat the gain
      return [(x, slice(None))]
    return [(x[:, :, lo:hi], slice(a - lo, b - lo)) for lo, hi, a, b in bands]

  def __call__(self, x: np.ndarray) -> np.ndarray:
    pieces = self._pieces(np.ascontiguousarray(x, dtype=np.float32))
    if len(pieces) == 1 and self.staged is not None:
      return self.staged(pieces[0][0])
    outputs = self.cores.map(lambda runner, piece: runner(piece[0]), pieces)
    if len(pieces) == 1:
      return outputs[0]
    if pieces[0][1] == slice(None):
      return np.concatenate(outputs, axis=0)
    scale = outputs[0].shape[2] // pieces[0][0].shape[2]
    return np.concatenate([out[:, :, keep.start * scale: keep.stop * scale] for out, (_, keep) in
                           zip(outputs, pieces, strict=True)], axis=2)


class Stage(NamedTuple):
  """One layer of a model's forward pass for `StagedForward`: `fn(model, part, *values)` computes output channels
  `part` of the layer from the values named by `inputs` (0: the model's input, k: stage k's output, whole);
  `channels` is the layer's output channel count and `block` the granularity of a share (supertiny.conv's register
  block of output channels). `border` > 0 keeps the output in host memory with a zero border of that many pixels on
  every side: the zero padding of the convolutions that read it, which then run unpadded (no padding kernel per
  layer). Stages receive their inputs as kept, border included; the model's input has none.

  `reach` > 0 shares the layer by rows instead: each device computes every channel of a band of output rows, for
  layers with too few output channels to share (an RGB output convolution costs as much for one channel as for
  three on this CPU). Such a stage receives the band of its inputs' rows with `reach` pixels of context on every
  side (zeros beyond the image), so that unpadded operations give exactly the band's rows; inputs and output are at
  the same resolution."""
  inputs: tuple[int, ...]
  channels: int
  fn: Callable[..., Tensor]
  block: int = 8
  reach: int = 0
  border: int = 0


def channel_shares(channels: int, parts: int, block: int) -> list[slice]:
  """`channels` cut into at most `parts` contiguous shares of whole blocks, as equal as the blocks allow."""
  units = max(channels // block, 1) if channels % block == 0 else channels
  size = channels // units
  return [slice(a * size, b * size) for a, b, _, _ in row_bands(units, parts, 0) if b > a]


class _Share:
  """One device's part of one stage: its jit, input slots, output channels (all of them for a stage shared by rows)
  and output rows, and whether the jit reads the host values in place and writes its output into them."""

  def __init__(self, jit: FastJit, part: slice, rows: slice):
    self.jit, self.part, self.rows = jit, part, rows
    self.slots: list[Tensor] = []
    self.reads_host = self.writes_host = False


@dataclass
class _Plan:
  """What StagedForward keeps per input shape: the values in host memory (the input, then each stage's output, as
  kept: with their borders), each device's shares, made at the first call (None: the device has none), and whether
  the captured shares were pointed at the values."""
  values: list[np.ndarray | None]
  shares: list[dict[int, _Share | None]]
  redirected: bool = False


class StagedForward:
  """`model(x)` for one NCHW float numpy image, layer by layer, each device computing a share of every layer's
  output channels from the whole of its inputs (`model.channel_stages()`; a stage with a `reach` is shared by rows
  instead). For models whose reach covers a small image, so that bands of rows would repeat most of the work (EDSR
  at 64x64). Between layers the shares meet in host memory and the threads wait for each other; the first two
  calls of a shape (compile, capture) run one device after the other on the calling thread. From then on the
  shares' kernels read their inputs where they lie in host memory and write their output channels in place
  (`FastJit.redirect`): nothing is copied between layers."""

  def __init__(self, model: object, devices: Sequence[str], copies: Sequence[object] | None = None):
    """`copies`: the model's copies on devices[1:] where the caller holds them already (a CorePool's)."""
    self.stages: list[Stage] = model.channel_stages()  # type: ignore[attr-defined]
    self.borders = [0, *(st.border for st in self.stages)]  # of each value
    self.models = [model, *(copies if copies is not None else [replicate(model, d) for d in devices[1:]])]
    self.devices = tuple(devices)
    self.plans: dict[tuple[int, ...], _Plan] = {}
    self.pool = ThreadPoolExecutor(len(devices) - 1, thread_name_prefix="supertiny-stage") if len(devices) > 1 \
      else None

  def _share(self, d: int, k: int, inputs: list[np.ndarray]) -> _Share | None:
    """Device d's share of stage k, None if it has none."""
    stage, parts = self.stages[k], len(self.devices)
    rows = slice(None)
    if stage.reach:  # every channel of a band of rows
      height = inputs[0].shape[2] - 2 * self.borders[stage.inputs[0]]
      _, _, keep_from, keep_to = row_bands(height, parts, 0)[d]
      if keep_to == keep_from:
        return None
      part, rows = slice(0, stage.channels), slice(keep_from, keep_to)
    else:
      shares = channel_shares(stage.channels, parts, stage.block)
      if d >= len(shares):
        return None
      part = shares[d]
    model = self.models[d]
    dtype = next((p.dtype for p in get_parameters(model)), dtypes.float32)  # host values are float32
    borders = [self.borders[i] for i in stage.inputs]

    def share(*values: Tensor) -> Tensor:
      values = tuple(v if dtype == dtypes.float32 else v.cast(dtype) for v in values)
      if stage.reach:
        values = tuple(_band(v, b, rows, stage.reach) for v, b in zip(values, borders, strict=True))
      out = stage.fn(model, part, *values)
      if stage.border and not stage.reach:  # a band of rows goes into a value whose border is zeros already
        out = out.pad((stage.border,) * 4)
      return out.float().contiguous().realize()
    return _Share(FastJit(share), part, rows)

  def _run(self, plan: _Plan, d: int, k: int) -> None:
    """Device d's share of stage k, if it has one."""
    stage, values = self.stages[k], plan.values
    inputs = [values[i] for i in stage.inputs]
    if k not in plan.shares[d]:  # first call (on the calling thread)
      plan.shares[d][k] = self._share(d, k, inputs)
    share = plan.shares[d][k]
    if share is None:
      return
    if not share.slots:
      share.slots.extend(input_slot(v.shape, dtypes.float32, self.devices[d]) for v in inputs)
    if share.reads_host:
      out = share.jit(*share.slots)
    else:
      out = share.jit(*(write_into(slot, v) for slot, v in zip(share.slots, inputs, strict=True)))
    if share.writes_host:
      return
    out = host_array(out)
    b = stage.border
    if values[k + 1] is None:  # zeros: the border of a value written in bands of rows stays zero
      height = inputs[0].shape[2] - 2 * self.borders[stage.inputs[0]] + 2 * b if stage.reach else out.shape[2]
      width = out.shape[3] + 2 * b if stage.reach else out.shape[3]
      values[k + 1] = np.zeros((out.shape[0], stage.channels, height, width), dtype=np.float32)
    if stage.reach:
      values[k + 1][:, :, b + share.rows.start:b + share.rows.stop, b:b + out.shape[3]] = out
    else:
      values[k + 1][:, share.part] = out

  def _redirect(self, plan: _Plan) -> None:
    """Point every captured share at the host values: inputs read in place; outputs written into their channels
    where those are one contiguous run (a share of channels of one image; not a band of rows)."""
    for shares in plan.shares:
      for k, share in shares.items():
        if share is None:
          continue
        inputs = [plan.values[i] for i in self.stages[k].inputs]
        target = None if self.stages[k].reach else plan.values[k + 1][:, share.part]
        if target is not None and target.flags.c_contiguous and share.jit.redirect(inputs, target):
          share.reads_host = share.writes_host = True
        else:
          share.reads_host = share.jit.redirect(inputs)

  def __call__(self, x: np.ndarray) -> np.ndarray:
    if x.shape not in self.plans:
      self.plans[x.shape] = _Plan([np.empty(x.shape, np.float32), *([None] * len(self.stages))],
                                  [{} for _ in self.devices])
    plan = self.plans[x.shape]
    plan.values[0][...] = x  # in place: redirected kernels read it there
    shares = [s for d_shares in plan.shares for s in d_shares.values() if s is not None]
    captured = bool(shares) and all(s.jit.cnt >= 2 for s in shares)
    if self.pool is None or not captured:
      for k in range(len(self.stages)):  # compile and capture on this thread, one device after the other
        for d in range(len(self.devices)):
          self._run(plan, d, k)
    else:
      if not plan.redirected:
        self._redirect(plan)
        plan.redirected = True
      barrier = threading.Barrier(len(self.devices))

      def replay(d: int) -> None:
        try:
          for k in range(len(self.stages)):
            self._run(plan, d, k)
            barrier.wait()  # every share of layer k is in host memory before layer k + 1 reads it
        except BaseException:
          barrier.abort()
          raise
      futures = [self.pool.submit(replay, d) for d in range(1, len(self.devices))]
      replay(0)
      for f in futures:
        f.result()
    b, out = self.borders[-1], plan.values[-1]
    return (out[:, :, b:out.shape[2] - b, b:out.shape[3] - b] if b else out).copy()


def _band(value: Tensor, border: int, rows: slice, reach: int) -> Tensor:
  """Rows `rows` of an image kept with a zero border of `border` pixels, with `reach` pixels of context on every
  side (zeros beyond the image)."""
  if border < reach:
    value, border = value.pad((reach - border,) * 4), reach
  skip = border - reach
  return value[:, :, rows.start + skip:rows.stop + skip + 2 * reach, skip:value.shape[3] - skip]


class SplitTrainStep:
  """A data-parallel training step over `devices` (the model's own first), one thread per device. Each device
  computes the loss and gradient of its share of the batch; then each reads the others' gradients, averages them
  in the same order and applies its own copy of `optimizer`, so the copies of the weights (and of the optimizer's
  state) stay equal bit for bit without being copied back. `step(lr, hr[, learning_rate])` takes numpy batches
  (NCHW, the batch a multiple of the device count) and a float, and returns the loss as a Tensor on the first
  device; the update equals make_train_step's on the whole batch up to float rounding. `clip`: global
  gradient-norm clipping. BatchNorm layers are refused: their statistics would be per share."""

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
    self.grad_jits = [FastJit(self._grads_fn(i, loss_fn)) for i in range(len(self.devices))]
    self.update_jits = [FastJit(self._update_fn(i)) for i in range(len(self.devices))]
    self.pool = ThreadPoolExecutor(len(self.devices) - 1, thread_name_prefix="supertiny-core")
    self.slots: list[tuple[Tensor, Tensor]] | None = None
    rate = optimizer.lr.numpy().reshape(1)
    self.rates = [write_into(input_slot((1,), optimizer.lr.dtype, d), rate) for d in self.devices]

  def _grads_fn(self, index: int, loss_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[..., list[Tensor]]:
    replica, params = self.replicas[index], self.replica_params[index]

    def grads(lr: Tensor, hr: Tensor) -> list[Tensor]:
      value = loss_fn(replica(lr), hr)
      # one flat gradient: the other devices copy it in one piece
      share = [value.reshape(1), flat_cat([g.contiguous().flatten() for g in value.gradient(*params)])]
      Tensor.realize(*share)
      return share
    return grads

  def _update_fn(self, index: int) -> Callable[..., Tensor]:
    device, optimizer, params = self.devices[index], self.optimizers[index], self.replica_params[index]

    def here(t: Tensor) -> Tensor:
      return t if t.device == device else t.to(device)

    def update(rate: Tensor, *shares: Tensor) -> Tensor:
      """shares: each device's loss and flat gradient, device by device."""
      optimizer.lr.assign(rate.reshape(optimizer.lr.shape))
      n = len(self.devices)
      # the same sums in the same order on every device: their updates are identical
      value = sum((here(t) for t in shares[2::2]), here(shares[0])) / n
      flat = sum((here(t) for t in shares[3::2]), here(shares[1])) / n
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
