"""Training: losses, learning-rate schedules, the jitted step (with global-norm gradient clipping) and the
resumable loop that writes checkpoints and metrics into a run folder."""

from __future__ import annotations

import csv
import math
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad import Context, Device, Tensor
from tinygrad.nn.optim import LAMB, Adam, AdamW, Optimizer
from tinygrad.nn.state import get_state_dict

from .checkpoint import read_checkpoint, save_checkpoint, section
from .data.cache import cache_folder
from .data.datasets import PatchSampler, load_hr_folders, load_paired_folders
from .data.images import list_images
from .data.worldstrat import training_pairs as worldstrat_pairs
from .errors import SuperTinyError, Terminated
from .evaluate import evaluate_folder, evaluate_worldstrat
from .models import create_model
from .models.registry import CHANNEL_NAMES, SRModel
from .models.weights import load_weights
from .plotting import pyplot, save_figure
from .runtime.devices import open_device
from .runtime.training import WeightAverage, core_lanes, jitted_step, train_step


def l1_loss(sr: Tensor, hr: Tensor) -> Tensor:
  return (sr - hr).abs().mean()


def l2_loss(sr: Tensor, hr: Tensor) -> Tensor:
  return (sr - hr).square().mean()


def charbonnier_loss(sr: Tensor, hr: Tensor, eps: float = 1e-3) -> Tensor:
  return ((sr - hr).square() + eps * eps).sqrt().mean()


def psnr_loss(sr: Tensor, hr: Tensor, eps: float = 1e-6) -> Tensor:
  """Minus the mean of the patches' PSNRs (peak 1), in dB: the benchmarks average PSNR over images, which weighs an
  error in a smooth image more than the same error in a textured one; L2 over a batch weighs it the same. `eps`
  (about the MSE of rounding to 8 bits) keeps a patch the model already renders exactly from dominating."""
  per_patch = (sr - hr).square().mean(axis=tuple(range(1, sr.ndim)))
  return (per_patch + eps).log().mean() * (10 / math.log(10))


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"l1": l1_loss, "l2": l2_loss, "charbonnier": charbonnier_loss,
                                                         "psnr": psnr_loss}


@dataclass(frozen=True)
class InteriorLoss:
  """`loss` over the output pixels at least `border` HR pixels inside the patch, whose inputs are all real pixels,
  as an image's interior pixels' are at test time; the zero padding at a small patch's edges reaches most of it."""
  loss: Callable[[Tensor, Tensor], Tensor]
  border: int

  def __call__(self, sr: Tensor, hr: Tensor) -> Tensor:
    b = self.border
    return self.loss(sr[:, :, b:-b, b:-b], hr[:, :, b:-b, b:-b])


def training() -> Context:
  """tinygrad's training mode (there is no Tensor.train in tinygrad 0.14)."""
  return Context(TRAINING=1)


class MaskedL1:
  """Mean absolute error over the clear pixels of the HR; `target` carries the clear mask as its last channel."""

  def __call__(self, sr: Tensor, target: Tensor) -> Tensor:
    hr, clear = target[:, :-1], target[:, -1:]
    return ((sr - hr).abs() * clear).sum() / (self.weight(target) + 1e-6)

  @staticmethod
  def weight(target: Tensor) -> Tensor:
    """The number of terms averaged (clear pixels times bands): a batch split over cores weights its shares by it."""
    return target[:, -1:].sum() * (target.shape[1] - 1)


masked_l1 = MaskedL1()


def patch_batch(rng: np.random.Generator, inputs: np.ndarray, targets: np.ndarray, batch: int, patch: int,
                scale: int) -> tuple[np.ndarray, np.ndarray]:
  """A batch of random co-located LR/HR patches, each flipped and rotated at random."""
  n, _, h, w = inputs.shape
  lr_batch, hr_batch = [], []
  for _ in range(batch):
    i, y, x = rng.integers(n), rng.integers(h - patch + 1), rng.integers(w - patch + 1)
    lr = inputs[i, :, y:y + patch, x:x + patch]
    hr = targets[i, :, y * scale:(y + patch) * scale, x * scale:(x + patch) * scale]
    turns, flip = int(rng.integers(4)), bool(rng.integers(2))
    lr, hr = np.rot90(lr, turns, axes=(1, 2)), np.rot90(hr, turns, axes=(1, 2))
    if flip:
      lr, hr = lr[:, ::-1], hr[:, ::-1]
    lr_batch.append(lr)
    hr_batch.append(hr)
  return np.ascontiguousarray(np.stack(lr_batch), np.float32), np.ascontiguousarray(np.stack(hr_batch), np.float32)


@dataclass
class Fitted:
  """What `fit` did: the last training loss, and with a validation, the step whose weights it kept and their score."""
  loss: float
  best_step: int | None = None
  best_score: float | None = None


def fit(model, inputs: np.ndarray, targets: np.ndarray, scale: int, steps: int, batch: int = 16, patch: int = 12,
        rate: float = 1e-3, seed: int = 0, progress: Callable[[int, float], None] | None = None,
        validate: Callable[[], float] | None = None, validate_every: int = 100, cores: int | None = None) -> Fitted:
  """Train `model` in memory on LR `inputs` (N x Cin x h x w) against `targets` (N x (C+1) x H x W, clear mask
  last) by the masked L1 loss on random augmented patches, Adam with a cosine schedule from `rate` to rate/100.
  `validate` (higher is better, on held-back data) is called before the first step, every `validate_every` steps
  and after the last; the model ends with the weights of its best call: small data sets overfit long before the
  schedule ends. `cores`: on the CPU, how many share each batch (None: SUPERTINY_CORES or every core). For studies
  whose data fits in memory (supertiny train runs from files, resumably)."""
  Tensor.manual_seed(seed)
  rng = np.random.default_rng(seed)
  optimizer = Adam(model.parameters(), lr=rate)
  step = train_step(model, optimizer, masked_l1, batch, cores=cores)
  fitted = Fitted(math.nan)
  kept: dict[str, np.ndarray] = {}

  def check(done: int) -> None:
    with Context(TRAINING=0):
      score = validate()
    if fitted.best_score is None or score > fitted.best_score:
      fitted.best_step, fitted.best_score = done, score
      kept.update({k: v.numpy().copy() for k, v in get_state_dict(model).items()})

  if validate is not None:
    check(0)
  with training():
    for i in range(steps):
      lr_batch, hr_batch = patch_batch(rng, inputs, targets, batch, min(patch, inputs.shape[2], inputs.shape[3]), scale)
      now = rate / 100 + (rate - rate / 100) * 0.5 * (1 + math.cos(math.pi * i / max(steps, 1)))
      fitted.loss = step(lr_batch, hr_batch, now)
      if progress is not None:
        progress(i, fitted.loss)
      if validate is not None and ((i + 1) % validate_every == 0 or i + 1 == steps):
        check(i + 1)
  if kept:
    load_weights(model, kept)
  return fitted


def make_train_step(model: SRModel, optimizer: Optimizer, loss: str = "l1",
                    clip: float = 0.0) -> Callable[..., Tensor]:
  """A jitted step `step(lr_images, hr_images[, learning_rate])` on tensors (supertiny.runtime.training): forward,
  loss, backward, optional clipping of the gradients' global norm to `clip`, optimizer update. Returns the realized
  loss. Call it under `training()`."""
  if loss not in LOSSES:
    raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
  return jitted_step(model, optimizer, LOSSES[loss], clip)


# ---------------------------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
  """A training recipe; `configs/*.toml` hold these fields."""
  model: str
  scale: int
  train: list[str] = field(default_factory=list)  # HR folders (or a `worldstrat` root instead)
  channels: int = 1
  options: dict[str, Any] = field(default_factory=dict)
  train_lr: str | None = None   # folder of given LR images for a single `train` HR folder (paired mode)
  val: str | None = None
  val_last: int = 0             # validate on the last N images (by name) of `val` only; 0 = all. A training folder
                                # that holds them leaves them out: a held-back part of the training data
  steps: int = 2000
  batch: int = 16
  patch: int = 17               # LR patch side
  shave: int = 0                # LR pixels at each patch edge left out of the loss (InteriorLoss); 0 = none
  edge_margin: int = 0          # LR pixels of mirror around each training image (at most shave), so the scored
                                # interior reaches the image edges as a border="symmetric" model sees them
  lr: float = 1e-3
  optimizer: str = "adam"       # adam | adamw
  weight_decay: float = 0.0
  schedule: str = "constant"    # constant | step | cosine
  warmup: int = 0               # linear warm-up steps
  decay_every: int = 1000       # step schedule: multiply by gamma every this many steps
  gamma: float = 0.5
  min_lr: float = 0.0           # cosine floor
  clip: float = 0.0             # global gradient-norm clip; 0 = off (the paper used 1.0)
  ema: float = 0.0              # decay per step of an exponential moving average of the weights, which validation
                                # and best.safetensors then use (BasicSR's ema_decay, e.g. 0.999); 0 = off
  loss: str = "l1"
  augment: bool = True
  rescale: list[float] = field(default_factory=list)  # HR folders also at these sizes (MATLAB bicubic), as FSRCNN
                                                       # augmented T91 with 0.9-0.6; [] = as they are
  seed: int = 0
  val_every: int = 500
  save_every: int = 100
  devices: list[str] = field(default_factory=list)  # data-parallel over these devices; empty = the default device
  cores: int | None = None      # CPU: data-parallel over this many cores, one thread each; None = all
  cache: bool = True            # keep degraded LR images on disk (see data.cache.cache_folder)
  init: str | None = None       # a SuperTiny checkpoint whose weights start the run (fine-tuning), not its optimizer
  worldstrat: str | None = None  # a WorldStrat root: train on its train split, validate on its val split by cPSNR

  @classmethod
  def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise SuperTinyError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    values = dict(values)
    if isinstance(values.get("channels"), str) and values["channels"].lower() in CHANNEL_NAMES:
      values["channels"] = CHANNEL_NAMES[values["channels"].lower()]
    for name in ("train", "devices"):  # one folder or device written without the list
      if isinstance(values.get(name), str):
        values[name] = [values[name]]
    types = {f.name: f.type for f in fields(cls)}
    for key, value in values.items():
      expected = types[key]
      if not _has_type(value, expected):
        raise SuperTinyError(f"{source}: {key} must be {_TYPE_WORDS[expected]}, got {value!r}")
    config = cls(**values)
    config.check(source)
    return config

  def check(self, source: str = "config") -> None:
    problems = []
    if self.loss not in LOSSES:
      problems.append(f"loss must be one of {', '.join(LOSSES)}")
    if self.optimizer not in ("adam", "adamw"):
      problems.append("optimizer must be adam or adamw")
    if self.schedule not in ("constant", "step", "cosine"):
      problems.append("schedule must be constant, step or cosine")
    if self.channels not in (1, 3):
      problems.append("channels must be 1 (Y) or 3 (RGB)")
    for name in ("steps", "batch", "patch", "val_every", "save_every", "scale"):
      if getattr(self, name) < 1:
        problems.append(f"{name} must be at least 1")
    if self.worldstrat is not None and (self.train or self.train_lr or self.val):
      problems.append("worldstrat is a whole data source: give it without train, train_lr or val (it validates on "
                      "its own val split)")
    if self.worldstrat is None and not self.train:
      problems.append("train needs at least one folder (or a worldstrat root)")
    if self.val_last < 0 or (self.val_last and self.val is None):
      problems.append("val_last must be a count of images of `val` (0 = all)")
    if self.shave < 0 or 2 * self.shave >= self.patch:
      problems.append("shave must leave part of the patch: 0 <= 2 * shave < patch")
    if not 0 <= self.edge_margin <= self.shave:
      problems.append("edge_margin must be between 0 and shave: the loss then scores only real pixels")
    if self.edge_margin and self.options.get("border") != "symmetric":
      problems.append('edge_margin trains the mirrored border: give the model options border = "symmetric"')
    if self.lr <= 0:
      problems.append("lr must be positive")
    if not 0 <= self.ema < 1:
      problems.append("ema must be in [0, 1): the moving average's decay per step (0 = off)")
    if any(not 0 < factor <= 1 for factor in self.rescale):
      problems.append("rescale factors must be in (0, 1]: the HR images are made smaller, never larger")
    if self.rescale and (self.worldstrat is not None or self.train_lr is not None):
      problems.append("rescale applies to HR folders degraded on the fly, not to given LR images or worldstrat")
    if self.cores is not None and self.cores < 1:
      problems.append("cores must be at least 1")
    if self.devices and self.batch % len(self.devices):
      problems.append(f"batch {self.batch} does not split evenly over {len(self.devices)} devices")
    if problems:
      raise SuperTinyError(f"{source}: {'; '.join(problems)}")


_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "list[str]": "a list of strings", "list[float]": "a list of numbers", "dict[str, Any]": "a table",
               "str | None": "a string", "int | None": "an integer"}


def _has_type(value: Any, annotation: str) -> bool:
  """Whether a config value fits a TrainConfig field's annotation (TOML gives str, int, float, bool, list, dict)."""
  if annotation.endswith(" | None") and value is None:
    return True
  kind = annotation.removesuffix(" | None")
  if kind == "bool":
    return isinstance(value, bool)
  if kind == "int":
    return isinstance(value, int) and not isinstance(value, bool)
  if kind == "float":
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if kind == "str":
    return isinstance(value, str)
  if kind == "list[str]":
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
  if kind == "list[float]":
    return isinstance(value, list) and all(_has_type(v, "float") for v in value)
  return isinstance(value, dict)


def learning_rate(config: TrainConfig, step: int) -> float:
  """The learning rate for (0-based) step `step`."""
  if config.warmup and step < config.warmup:
    return config.lr * (step + 1) / config.warmup
  if config.schedule == "step":
    return config.lr * config.gamma ** (step // config.decay_every)
  if config.schedule == "cosine":
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))
  return config.lr


def resolve_devices(devices: list[str]) -> tuple[str, ...]:
  """Canonical names of the devices for data-parallel training; one device or none means no sharding (an empty
  tuple)."""
  names = [open_device(name) for name in devices]
  if len(set(names)) != len(names):
    raise SuperTinyError(f"devices {', '.join(devices)} name the same device twice")
  return tuple(names) if len(names) > 1 else ()


def make_optimizer(config: TrainConfig, params: list[Tensor]) -> LAMB:
  if config.optimizer == "adamw":
    return AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
  return Adam(params, lr=config.lr)


def optimizer_state(optimizer: LAMB) -> dict[str, Tensor]:
  state = {"b1_t": optimizer.b1_t, "b2_t": optimizer.b2_t}
  state.update({f"m.{i}": t for i, t in enumerate(optimizer.m)})
  state.update({f"v.{i}": t for i, t in enumerate(optimizer.v)})
  return state


def restore_optimizer(optimizer: LAMB, state: dict[str, Tensor], source: str) -> None:
  targets = optimizer_state(optimizer)
  if set(targets) != set(state):
    raise SuperTinyError(f"{source}: optimizer state does not fit this model/optimizer")
  for key, target in targets.items():
    target.assign(state[key].to(target.device).cast(target.dtype)).realize()


# ---------------------------------------------------------------------------------------------------------------

CSV_FIELDS = ["step", "loss", "lr", "val_psnr", "val_ssim", "seconds"]
BOARD_TAGS = {"loss": "train/loss", "lr": "train/lr", "val_psnr": "val/psnr_y", "val_ssim": "val/ssim_y"}


class Run:
  """A run folder: last.safetensors, best.safetensors, metrics.csv, curves.png and TensorBoard logs in tensorboard/."""

  def __init__(self, folder: str | Path):
    self.folder = Path(folder)
    self.last, self.best = self.folder / "last.safetensors", self.folder / "best.safetensors"
    self.metrics = self.folder / "metrics.csv"
    self.board: Any = None

  @contextmanager
  def locked(self) -> Iterator[None]:
    """Hold the folder's lock (an OS file lock, released when the process ends however it ends, so a killed run
    can be resumed) and remove the temporary files a killed run left."""
    self.folder.mkdir(parents=True, exist_ok=True)
    handle = open(self.folder / ".lock", "a+")  # noqa: SIM115 (held open while the run writes)
    try:
      _lock(handle)
    except OSError:
      handle.close()
      raise SuperTinyError(f"{self.folder}: another `supertiny train` is writing to this run folder") from None
    try:
      for stale in [*self.folder.glob(".*.tmp"), self.metrics.with_suffix(".tmp")]:
        stale.unlink(missing_ok=True)
      yield
    finally:
      handle.close()

  def open_board(self, resumed_at: int | None = None) -> None:
    """Start the TensorBoard event file; after a resume, events past the checkpoint's step are hidden (purged)."""
    from tensorboardX import SummaryWriter

    purge = resumed_at + 1 if resumed_at is not None else None
    self.board = SummaryWriter(str(self.folder / "tensorboard"), purge_step=purge, flush_secs=30)

  def close_board(self) -> None:
    if self.board is not None:
      self.board.close()
      self.board = None

  def rows(self) -> list[dict[str, str]]:
    if not self.metrics.exists():
      return []
    with open(self.metrics, newline="") as f:
      return list(csv.DictReader(f))

  def keep_rows_before(self, step: int) -> None:
    """On resume, drop rows logged after the checkpoint (they will be logged again)."""
    rows = [r for r in self.rows() if int(r["step"]) <= step]
    self._write(rows)

  def append(self, row: dict[str, Any]) -> None:
    new = not self.metrics.exists()
    with open(self.metrics, "a", newline="") as f:
      writer = csv.DictWriter(f, CSV_FIELDS)
      if new:
        writer.writeheader()
      writer.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    if self.board is not None:
      for key, tag in BOARD_TAGS.items():
        if row.get(key, "") != "":
          self.board.add_scalar(tag, float(row[key]), int(row["step"]))

  def plot(self) -> Path:
    """curves.png: training loss (and its running mean) and validation PSNR against step."""
    plt = pyplot()
    rows = self.rows()
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    val = [(int(r["step"]), float(r["val_psnr"])) for r in rows if r.get("val_psnr")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.plot(steps, loss, color="0.75", linewidth=0.8, label="loss")
    if len(loss) >= 20:
      window = max(5, len(loss) // 50)
      left.plot(steps[window - 1:], np.convolve(loss, np.ones(window) / window, "valid"), label=f"mean of {window}")
    left.set(xlabel="step", ylabel="training loss", yscale="log")
    left.legend()
    if val:
      right.plot(*zip(*val, strict=True), marker="o")
    right.set(xlabel="step", ylabel="validation PSNR (Y, dB)")
    fig.tight_layout()
    return save_figure(fig, self.folder / "curves.png")

  def _write(self, rows: list[dict[str, Any]]) -> None:
    tmp = self.metrics.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, CSV_FIELDS)
      writer.writeheader()
      writer.writerows(rows)
    tmp.replace(self.metrics)


def train(config: TrainConfig, out: str | Path, resume: bool = False,
          report: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
  """Run (or resume) training; returns {"step", "best_psnr", "best_ssim", "seconds"}. The run folder is locked
  while it runs: a second run on it is refused."""
  run = Run(out)
  if run.last.exists() and not resume:
    raise SuperTinyError(f"{run.folder}: already holds a run (last.safetensors); pass --resume or choose another --out")
  with run.locked():
    return _train(config, run, resume, report, progress)


def _start_from(model: Any, config: TrainConfig) -> list[str]:
  """Load the weights of `config.init` into `model`; its model, channels and options (but the border, which changes
  no weight) must be the run's. A checkpoint of another scale gives all but the upsampling layers, which keep their
  fresh start (FSRCNN's own way to a new scale: the LR-space layers transfer, the deconvolution is learnt again;
  models that work on the bicubic image, as SRCNN, transfer whole). Returns the names left fresh."""
  meta, tensors = read_checkpoint(config.init)

  def weighty(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k != "border"}

  held = (meta.get("model"), meta.get("scale"), meta.get("channels"), weighty(meta.get("options") or {}))
  wanted = (config.model, config.scale, config.channels, weighty(config.options))
  upsampling = tuple(getattr(model, "upsampling_layers", ()))
  other_scale = held[0] == wanted[0] and held[2:] == wanted[2:] and held[1] != wanted[1]
  if held != wanted and not other_scale:
    raise SuperTinyError(f"{config.init}: holds {held[0]} x{held[1]} with {held[2]} channel(s) and options {held[3]}, "
                         f"not the run's {config.model} x{config.scale} with {config.channels} and {config.options}")
  state = {k: v.numpy() for k, v in section(tensors, "model").items()
           if not (other_scale and k.split(".")[0] in upsampling)}
  own = get_state_dict(model)
  fresh = sorted(set(own) - set(state)) if other_scale else []
  state.update({k: own[k].numpy() for k in fresh})
  load_weights(model, state)
  return fresh


def _train(config: TrainConfig, run: Run, resume: bool, report: Callable[[str], None], progress: bool
           ) -> dict[str, Any]:
  from tqdm import tqdm

  Tensor.manual_seed(config.seed)
  model = create_model(config.model, scale=config.scale, channels=config.channels, **config.options)
  if config.worldstrat is not None:
    pairs = worldstrat_pairs(config.worldstrat, config.scale, config.channels, revisits=getattr(model, "revisits", 1),
                             masks=getattr(model, "revisit_masks", False))
  elif config.train_lr is not None:
    if len(config.train) != 1:
      raise SuperTinyError("paired training (train_lr) takes exactly one HR folder in train")
    pairs = load_paired_folders(config.train_lr, config.train[0], config.scale, config.channels)
  else:
    pairs = load_hr_folders(config.train, config.scale, config.channels, cache_folder() if config.cache else None,
                            exclude=held_out(config), rescale=config.rescale)
  sampler = PatchSampler(pairs, config.scale, config.patch, config.batch, config.seed, config.augment,
                         config.edge_margin)

  devices = resolve_devices(config.devices)
  start, best, checkpoint, spent, earlier_devices = 0, {"psnr": -math.inf, "ssim": 0.0}, None, 0.0, ""
  if resume and run.last.exists():
    meta, checkpoint = read_checkpoint(run.last)
    earlier_devices = meta.get("device", "")
    load_weights(model, {k: v.numpy() for k, v in section(checkpoint, "model").items()})
    start, spent = int(meta["step"]), float(meta.get("seconds", 0.0))
    best = meta.get("best", best)
    run.keep_rows_before(start)
    report(f"resumed {run.last} at step {start}")
  elif config.init is not None:
    fresh = _start_from(model, config)
    report(f"started from the weights of {config.init}" + (f" (fresh: {', '.join(fresh)})" if fresh else ""))
  if devices:
    # data parallel: every device holds all weights, each takes batch/len(devices) samples; tinygrad sums the
    # gradients across devices in backward, so the update equals the single-device one
    for p in model.parameters():
      p.shard_(devices)
  saved = section(checkpoint, "optimizer") if checkpoint is not None else {}
  averaged = _averaged_copy(model, config, devices, saved, report) if config.ema else None
  optimizer = make_optimizer(config, model.parameters())
  if checkpoint is not None:
    restore_optimizer(optimizer, {k: v for k, v in saved.items() if not k.startswith(AVERAGE_PREFIX)}, str(run.last))
  Tensor.realize(*model.parameters())
  average = WeightAverage(model, averaged, config.ema) if averaged is not None else None
  scored = averaged if averaged is not None else model  # what validation scores and best.safetensors holds
  run.open_board(start if checkpoint is not None else None)

  loss = LOSSES[config.loss] if not config.shave else InteriorLoss(LOSSES[config.loss], config.shave * config.scale)
  step_fn = train_step(model, optimizer, loss, config.batch, devices, config.cores, config.clip)
  shared_over = len(core_lanes(model, config.batch, config.cores)) or 1
  device = device_history(earlier_devices, start, _device_words(devices, shared_over))
  meta_base = {"options": config.options, "config": asdict(config), "device": device, "commit": _commit()}

  def run_seconds() -> float:
    """Wall time of the whole run, across resumes (`began`: this session's start)."""
    return spent + time.time() - began

  def save(path: Path, step: int, val: dict | None = None, weights: Any = model) -> None:
    state = optimizer_state(optimizer)
    if averaged is not None and weights is model:  # best.safetensors holds the average as its model already
      state.update({AVERAGE_PREFIX + k: v for k, v in get_state_dict(averaged).items()})
    # a finite loss can hide overflowed weights or Adam moments: never overwrite a good checkpoint with them
    finite = Tensor.stack(*[t.float().isfinite().all() for t in [*model.parameters(), *state.values()]]).all()
    if not finite.item():
      kept = f"; the last good checkpoint {run.last} is kept" if run.last.exists() else ""
      raise SuperTinyError(f"weights or optimizer state became non-finite by step {step}: stopped{kept}. "
                           "Try a lower --lr or --clip 1")
    save_checkpoint(path, weights, {**meta_base, "step": step, "best": best, "val": val,
                                  "seconds": round(run_seconds(), 1)}, state)
    if run.board is not None:
      run.board.flush()  # the event file then holds every step the checkpoint does: a resume leaves no gap

  def validate(step: int) -> dict[str, float] | None:
    if config.worldstrat is not None:
      scores = evaluate_worldstrat(scored, config.worldstrat, "val")  # cPSNR/cSSIM against SPOT
      return {"psnr": scores.psnr, "ssim": scores.ssim}
    if config.val is None:
      return None
    scores = evaluate_folder(scored, config.val, config.scale, last=config.val_last)
    return {"psnr": scores.psnr, "ssim": scores.ssim}

  began, done = time.time(), start
  bar = tqdm(total=config.steps, initial=start, unit="step", disable=not progress, dynamic_ncols=True)
  # Ctrl-C only raises a flag, checked between steps, so the checkpoint never holds a half-applied update
  stop: list[int] = []  # the signal that asked to stop
  handlers = {sig: signal.signal(sig, lambda signum, _frame: stop.append(signum))
              for sig in (signal.SIGINT, signal.SIGTERM)} if _in_main_thread() else {}
  try:
    for step, lr_batch, hr_batch in sampler.prefetch(start, config.steps):
      if stop:
        raise Terminated if stop[0] == signal.SIGTERM else KeyboardInterrupt
      rate = learning_rate(config, step)
      with training():
        loss = step_fn(lr_batch, hr_batch, rate)
      if average is not None:
        average.update()
      if not math.isfinite(loss):
        kept = f"; the last good checkpoint {run.last} (step {done}) is kept" if run.last.exists() else ""
        raise SuperTinyError(f"loss became {loss} at step {step + 1}: stopped{kept}. Try a lower --lr or --clip 1")
      done = step + 1
      row: dict[str, Any] = {"step": done, "loss": f"{loss:.6g}", "lr": f"{rate:.6g}",
                             "seconds": f"{run_seconds():.1f}"}
      val = validate(done) if done % config.val_every == 0 or done == config.steps else None
      if val is not None:
        row.update(val_psnr=f"{val['psnr']:.4f}", val_ssim=f"{val['ssim']:.5f}")
        if val["psnr"] > best["psnr"]:
          best = {"psnr": val["psnr"], "ssim": val["ssim"], "step": done}
          save(run.best, done, val, scored)
        bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{val['psnr']:.2f}")
      run.append(row)
      if val is not None:
        run.plot()
      if done % config.save_every == 0 or done == config.steps:
        save(run.last, done)
      if done % 10 == 0:
        bar.set_postfix(loss=f"{loss:.4f}", best=f"{best['psnr']:.2f}", refresh=False)
      bar.update(1)
  except KeyboardInterrupt:
    save(run.last, done)
    bar.close()
    report(f"interrupted: saved {run.last} at step {done}; continue with --resume")
    raise
  finally:
    run.close_board()
    for sig, previous in handlers.items():
      signal.signal(sig, previous)
  bar.close()
  run.plot()
  if not run.best.exists():
    save(run.best, done, weights=scored)  # no validation set: the last weights are the best we know
  return {"step": done, "best_psnr": best["psnr"], "best_ssim": best["ssim"], "seconds": time.time() - began}


AVERAGE_PREFIX = "ema."  # the moving average's tensors in a checkpoint's optimizer section


def _averaged_copy(model: Any, config: TrainConfig, devices: tuple[str, ...], saved: dict[str, Tensor],
                   report: Callable[[str], None]) -> Any:
  """A second model for the moving average of `model`'s weights: the average a resumed checkpoint holds, else
  the model's weights as they start (from `init`, a resume without an average, or the random start)."""
  averaged = create_model(config.model, scale=config.scale, channels=config.channels, **config.options)
  held = {k.removeprefix(AVERAGE_PREFIX): v for k, v in saved.items() if k.startswith(AVERAGE_PREFIX)}
  if saved and not held:
    report("the checkpoint holds no moving average of the weights: it starts from the weights it holds")
  source = held or get_state_dict(model)
  load_weights(averaged, {k: v.numpy() for k, v in source.items()})
  if devices:
    for p in averaged.parameters():  # as the model's
      p.shard_(devices)
  return averaged


def held_out(config: TrainConfig) -> set[Path]:
  """The validation images that training must not see (the last `val_last` of `val`), resolved."""
  if config.val is None or not config.val_last:
    return set()
  return {p.resolve() for p in list_images(config.val)[-config.val_last:]}


def device_history(earlier: str, resumed_at: int, here: str) -> str:
  """Where a run's steps ran, across resumes: "CPU (1 core) to step 1648; CUDA" for a run moved to a GPU."""
  # checkpoints written before the singular was fixed say "CPU (1 cores)"
  earlier = earlier.replace("(1 cores)", "(1 core)")
  if not earlier or earlier.split("; ")[-1] == here:
    return earlier or here
  return f"{earlier} to step {resumed_at}; {here}"


def _device_words(devices: tuple[str, ...], cores: int) -> str:
  """Where the steps ran: the devices named, or the default device with the number of CPU cores the batch was
  shared over."""
  if devices:
    return ", ".join(devices)
  if Device.DEFAULT != "CPU":
    return Device.DEFAULT
  return f"CPU ({cores} core{'' if cores == 1 else 's'})"


def _commit() -> str:
  """The git commit of the code that trains (with +dirty when it has changes), or "unknown" outside a checkout."""
  import subprocess

  root = Path(__file__).resolve().parent.parent
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                           text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  if head.returncode:
    return "unknown"
  return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _lock(handle: Any) -> None:
  """An exclusive, non-blocking lock on an open file; OSError when another process holds it."""
  if sys.platform == "win32":
    import msvcrt

    msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
  else:
    import fcntl

    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def _in_main_thread() -> bool:
  return threading.current_thread() is threading.main_thread()


def load_config(path: str | Path) -> dict[str, Any]:
  """A TOML recipe as a dict of TrainConfig fields."""

  path = Path(path)
  try:
    with open(path, "rb") as f:
      return tomllib.load(f)
  except FileNotFoundError:
    raise SuperTinyError(f"{path}: no such config file") from None
  except tomllib.TOMLDecodeError as exc:
    raise SuperTinyError(f"{path}: not valid TOML ({exc})") from exc


__all__ = ["LOSSES", "TrainConfig", "learning_rate", "load_config", "make_train_step", "resolve_devices", "train",
           "training"]
