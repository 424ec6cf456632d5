"""Training building blocks: losses and the jitted optimisation step."""

from __future__ import annotations

from collections.abc import Callable

from tinygrad import Context, Tensor, TinyJit
from tinygrad.nn.optim import Optimizer

from .models.registry import SRModel


def l1_loss(sr: Tensor, hr: Tensor) -> Tensor:
  return (sr - hr).abs().mean()


def l2_loss(sr: Tensor, hr: Tensor) -> Tensor:
  return (sr - hr).square().mean()


def charbonnier_loss(sr: Tensor, hr: Tensor, eps: float = 1e-3) -> Tensor:
  return ((sr - hr).square() + eps * eps).sqrt().mean()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": l1_loss, "l2": l2_loss, "charbonnier": charbonnier_loss}


def make_train_step(model: SRModel, optimizer: Optimizer, loss: str = "l1") -> Callable[[Tensor, Tensor], Tensor]:
  """A jitted step: forward, loss, backward, optimizer update; returns the (realized) loss.

  Call it under `Context(TRAINING=1)` (see `training`) so BatchNorm uses batch statistics.
  """
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
  loss_fn = LOSSES[loss]

  @TinyJit
  def step(lr: Tensor, hr: Tensor) -> Tensor:
    optimizer.zero_grad()
    value = loss_fn(model(lr), hr)
    value.backward()
    optimizer.step()
    return value.realize()

  return step


def training() -> Context:
  """tinygrad's training mode (there is no Tensor.train in tinygrad 0.14)."""
  return Context(TRAINING=1)
