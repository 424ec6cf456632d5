"""One training step factory for every placement: `train_step(...)` returns `step(lr, hr, rate) -> loss` for numpy
batches whatever runs it: one device (a TinyJit of forward, loss, backward and update), devices that share the
batch through tinygrad's sharding, or every CPU core (supertiny.runtime.cores.SplitTrainStep: a copy of the model
per core, each a share of the batch). `WeightAverage` keeps a moving average of the weights beside them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tinygrad import Tensor, TinyJit, dtypes
from tinygrad.nn.optim import Optimizer
from tinygrad.nn.state import get_state_dict

from .cores import SplitTrainStep, core_devices, has_batchnorm, optimizer_tensors

Loss = Callable[[Tensor, Tensor], Tensor]


def jitted_step(model: Callable[[Tensor], Tensor], optimizer: Optimizer, loss_fn: Loss,
                clip: float = 0.0) -> Callable[..., Tensor]:
  """A jitted step `step(lr_images, hr_images[, learning_rate])` on tensors: forward, loss, backward, optional
  clipping of the gradients' global norm to `clip`, optimizer update. Returns the realized loss. Call it in
  training mode (`Context(TRAINING=1)`)."""

  @TinyJit
  def step(lr: Tensor, hr: Tensor, learning_rate: Tensor | None = None) -> Tensor:
    if learning_rate is not None:
      optimizer.lr.assign(learning_rate)
    optimizer.zero_grad()
    value = loss_fn(model(lr), hr)
    value.backward()
    if clip > 0:
      grads = [p.grad for p in optimizer.params if p.grad is not None]
      norm = Tensor.stack(*[g.float().square().sum() for g in grads]).sum().sqrt()
      factor = (clip / (norm + 1e-6)).minimum(1.0)
      for p in optimizer.params:
        if p.grad is not None:
          p.grad = p.grad * factor
    # one schedule: the loss is read before the optimizer overwrites the weights it was computed from
    Tensor.realize(value, *optimizer.schedule_step())
    # drop the gradients' graphs: TinyJit keeps every buffer that a live tensor's graph names out of its memory plan,
    # and custom kernels (supertiny.runtime.conv) put their output buffers into that graph
    optimizer.zero_grad()
    return value

  # with the weights and the optimizer's state realized, the first call has no one-off work left: capture it
  # (TinyJit would otherwise run it plainly, then schedule and lower everything again to capture the second)
  Tensor.realize(*optimizer.params, *optimizer.buffers, *optimizer_tensors(optimizer))
  step.cnt = 1
  return step


def core_lanes(model: Callable[[Tensor], Tensor], batch: int, cores: int | None = None) -> tuple[str, ...]:
  """The CPU devices a step shares its batch over: one per core (`cores`: None for SUPERTINY_CORES or every core)
  when the batch divides evenly and the model has no BatchNorm (its statistics would be per share), else none
  (one jit on the model's own device)."""
  lanes = core_devices(cores)
  return lanes if len(lanes) > 1 and batch % len(lanes) == 0 and not has_batchnorm(model) else ()


def train_step(model: Callable[[Tensor], Tensor], optimizer: Optimizer, loss_fn: Loss, batch: int,
               devices: Sequence[str] = (), cores: int | None = None,
               clip: float = 0.0) -> Callable[[np.ndarray, np.ndarray, float], float]:
  """`step(lr, hr, rate) -> loss` for NCHW float32 numpy batches of `batch` images and a learning rate. `devices`:
  several devices sharing each batch (the model's weights must be sharded over them already); else, on the CPU,
  one thread per core (`cores`: None for SUPERTINY_CORES or every core) when the batch divides evenly and the
  model has no BatchNorm (its statistics would be per share); else one jit on the model's device. The update is
  the same up to float rounding whichever runs it. Call it in training mode."""
  lanes = () if devices else core_lanes(model, batch, cores)
  if lanes:
    split = SplitTrainStep(model, optimizer, loss_fn, lanes, clip)
    return lambda lr, hr, rate: split(lr, hr, rate).item()
  jit = jitted_step(model, optimizer, loss_fn, clip)
  devices = tuple(devices)

  def place(values: np.ndarray, axis: int | None) -> Tensor:
    t = Tensor(values, dtype=dtypes.float32)
    return t.shard(devices, axis=axis) if devices else t

  return lambda lr, hr, rate: jit(place(lr, 0), place(hr, 0), place(np.array([rate], np.float32), None)).item()


class WeightAverage:
  """An exponential moving average of `model`'s weights kept in `averaged` (a second model of the same build, on
  the same device or shards): after each step `update()` sets every float tensor of its state to
  decay * itself + (1 - decay) * the model's, in one jitted pass. BatchNorm's running statistics average too."""

  def __init__(self, model: object, averaged: object, decay: float):
    if not 0.0 < decay < 1.0:
      raise ValueError(f"decay must be in (0, 1), got {decay}")
    source, target = get_state_dict(model), get_state_dict(averaged)
    if set(source) != set(target):
      raise ValueError("the averaged model's state does not match the model's")
    self.decay = decay
    self.pairs = [(target[name], source[name]) for name in sorted(source) if dtypes.is_float(source[name].dtype)]
    Tensor.realize(*[t for pair in self.pairs for t in pair])

    @TinyJit
    def update() -> None:
      Tensor.realize(*[mean.assign(mean * decay + weight * (1.0 - decay)) for mean, weight in self.pairs])

    self._update = update

  def update(self) -> None:
    self._update()
