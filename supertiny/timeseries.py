"""Multi-revisit super-resolution on a satellite time series, as a study: does fusing several cloudy, striped
revisits beat super-resolving the clearest one, and does that beat bicubic?

A date is an HR target (for testing: at least `min_clear` of its pixels valid and clear; for training, whose
loss counts clear pixels only: `train_clear`). The `revisits` dates nearest to it in time, whatever their clouds,
degraded by `scale` with MATLAB bicubic (their gaps filled from neighbours first), are its LR revisits, each with
its clear mask (an LR pixel is clear when all the HR pixels it covers are). Every `test_every`-th clear date is
held back for testing, and its date is never an LR revisit of a training target; part of the other targets
validates, choosing each network's weights. The methods are scored on the held-back targets by cPSNR/cSSIM over
the target's clear pixels (metrics.corrected_metrics: brightness- and shift-corrected, symmetric +-2 px): bicubic
on the clearest revisit, the fusion network (models/fusion.py) given the clearest revisit alone (single-image SR,
the same design), the untrained fusion network (its consensus of the revisits) and the fusion network trained on
all of them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad import Tensor

from .data.landsat import TimeSeries
from .data.worldstrat import revisit_stack
from .errors import SuperTinyError
from .metrics import corrected_metrics
from .models import create_model
from .ops import imresize, shift_image
from .plotting import pyplot, save_figure
from .runtime.runner import forward_batch
from .train import fit
from .upscaling import fill_invalid


@dataclass
class RevisitSample:
  """One HR target date and its LR revisits: `hr` C x H x W with `hr_clear` H x W; `lr` k x C x h x w (gaps filled)
  with `lr_clear` k x h x w, nearest date first; `clearest` the index of the revisit with most clear pixels."""
  date: datetime.date
  hr: np.ndarray
  hr_clear: np.ndarray
  lr: np.ndarray
  lr_clear: np.ndarray
  revisit_dates: list[datetime.date]
  clearest: int

  def _clearest_first(self) -> list[int]:
    return [self.clearest, *(i for i in range(len(self.lr)) if i != self.clearest)]

  def fusion_input(self) -> np.ndarray:
    """k(C+1) x h x w: each revisit's bands, then its clear mask, the clearest revisit first (the fusion model's
    input and reference)."""
    order = self._clearest_first()
    return revisit_stack(self.lr[order], self.lr_clear[order], masks=True)

  def stacked_input(self) -> np.ndarray:
    """kC x h x w: the revisits' bands stacked as channels, the clearest first (a zoo model with `revisits=k`)."""
    order = self._clearest_first()
    return revisit_stack(self.lr[order], self.lr_clear[order], masks=False)

  def single_input(self, with_mask: bool = False) -> np.ndarray:
    """C x h x w: the clearest revisit (with its clear mask after the bands: C+1 channels)."""
    return revisit_stack(self.lr[[self.clearest]], self.lr_clear[[self.clearest]], masks=with_mask)


def degrade(reflectance: np.ndarray, clear: np.ndarray, scale: int,
            shift: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
  """(C x h x w bicubic-downscaled bands with gaps filled first, h x w clear mask) of one date, its HR grid first
  moved by `shift` (rows, cols) HR pixels: a revisit's misregistration."""
  c, height, width = reflectance.shape
  invalid = ~np.isfinite(reflectance)
  filled = fill_invalid(np.moveaxis(np.nan_to_num(reflectance), 0, -1), np.moveaxis(invalid, 0, -1))
  moved = shift_image(filled, *shift)
  moved_clear = shift_image(clear.astype(np.float64), *shift) > 0.99  # near a masked pixel is not clear
  low = np.moveaxis(imresize(moved, 1 / scale), -1, 0).astype(np.float32)
  low_clear = moved_clear.reshape(height // scale, scale, width // scale, scale).all(axis=(1, 3))
  return low, low_clear


def build_samples(series: TimeSeries, scale: int, revisits: int, test_every: int = 3, min_clear: float = 0.98,
                  train_clear: float = 0.7,
                  misregistration: float = 1.0) -> tuple[list[RevisitSample], list[RevisitSample]]:
  """(train, test) samples of the study (see the module docstring); training targets need only `train_clear` of
  their pixels clear (the loss counts clear pixels only). Each date, as a revisit, is moved by its own random
  offset of up to `misregistration` HR pixels per axis (fixed per date) before it is degraded."""
  offsets = np.random.default_rng(20260).uniform(-misregistration, misregistration, (len(series.dates), 2))
  count, _, height, width = series.reflectance.shape
  height, width = height - height % scale, width - width % scale
  reflectance, clear = series.reflectance[:, :, :height, :width], series.clear[:, :height, :width]
  fractions = clear.mean(axis=(1, 2))
  clear_dates = [i for i in range(count) if fractions[i] >= min_clear]
  held_back = set(clear_dates[test_every - 1::test_every])
  targets = [i for i in range(count) if i in held_back or fractions[i] >= min(train_clear, min_clear)]
  if not held_back or len(held_back) == len(targets):
    raise SuperTinyError(f"{len(clear_dates)} date(s) are at least {min_clear:.0%} clear: too few for a train and a "
                         "test part (lower min_clear or test_every)")
  if count - 1 < revisits:
    raise SuperTinyError(f"{count} date(s): too few for {revisits} revisits per target")
  degraded: dict[int, tuple[np.ndarray, np.ndarray]] = {}
  train, test = [], []
  for t in targets:
    pool = [i for i in range(count) if i != t and (t in held_back or i not in held_back)]
    chosen = sorted(pool, key=lambda i: (abs((series.dates[i] - series.dates[t]).days), i))[:revisits]
    for i in chosen:
      if i not in degraded:
        degraded[i] = degrade(reflectance[i], clear[i], scale, tuple(offsets[i]))
    lr = np.stack([degraded[i][0] for i in chosen])
    lr_clear = np.stack([degraded[i][1] for i in chosen])
    clearest = int(np.argmax(lr_clear.mean(axis=(1, 2))))  # the first (nearest) of the clearest
    hr = np.nan_to_num(reflectance[t]).astype(np.float32)
    sample = RevisitSample(series.dates[t], hr, clear[t], lr, lr_clear, [series.dates[i] for i in chosen], clearest)
    (test if t in held_back else train).append(sample)
  return train, test


def score(sr: np.ndarray, sample: RevisitSample) -> tuple[float, float]:
  """(cPSNR, cSSIM) of a C x H x W prediction over the target's clear pixels (peak: reflectance 1)."""
  corrected = corrected_metrics(np.moveaxis(sr, 0, -1), np.moveaxis(sample.hr, 0, -1), clear=sample.hr_clear)
  return corrected.psnr, corrected.ssim


def reference_only(fusion_inputs: np.ndarray, bands: int) -> np.ndarray:
  """The fusion inputs (N x k(C+1) x h x w) with every revisit but the first marked not clear: the network sees
  the single-image case as a special case of its own input and learns to fall back on the reference."""
  n, _, h, w = fusion_inputs.shape
  alone = fusion_inputs.reshape(n, -1, bands + 1, h, w).copy()
  alone[:, 1:, bands] = 0
  return alone.reshape(fusion_inputs.shape)


@dataclass
class _Run:
  """One network of the study: its key in the report's per-run fields, its row label, and the input it is given.
  `reference_alone`: it also trains on every target with its reference revisit alone (revisit dropout)."""
  name: str
  label: str
  model: Any
  input_of: Callable[[RevisitSample], np.ndarray]
  trained: bool = True
  reference_alone: bool = False


def study(series: TimeSeries, scale: int = 2, revisits: int = 4, steps: int = 3000, test_every: int = 3,
          seed: int = 0, misregistration: float = 1.0, stacked: str | None = None, figure: str | Path | None = None,
          revisit_dropout: bool = False, validate_every: int = 4,
          progress: Callable[[str, int, float], None] | None = None, cores: int | None = None) -> dict:
  """Train the fusion model on one revisit (the clearest: single-image SR) and on `revisits`, and score them,
  bicubic and the untrained fusion model (the bicubic upscale of its consensus base) on the held-back targets.
  `validate_every`: every Nth training target is kept out of training to choose each model's weights (its best mean
  cPSNR there, checked every 100 steps; 0: the last step's weights). `stacked`: also a zoo model given the clearest
  revisit alone and given the revisits stacked as input channels (`create_model(stacked, revisits=k)`), both
  trained the same way. `figure`: a PNG of the first held-back target's revisits, every method's prediction and the
  truth (draw_figure). `revisit_dropout`: the fusion model also trains on every target with its reference revisit
  alone (an ablation; docs/satellite.md). `cores`: on the CPU, how many cores share each training batch (train.fit)."""
  samples, test = build_samples(series, scale, revisits, test_every, misregistration=misregistration)
  held = set(range(validate_every - 1, len(samples), validate_every)) if validate_every else set()
  if len(held) == len(samples):
    held = set()
  train = [s for i, s in enumerate(samples) if i not in held]
  validation = [s for i, s in enumerate(samples) if i in held]
  bands = train[0].hr.shape[0]
  targets = np.stack([np.concatenate([s.hr, s.hr_clear[None].astype(np.float32)]) for s in train])

  def seeded(name: str, **options) -> Any:
    Tensor.manual_seed(seed)  # each model's initial weights from the seed alone, not from what was built before
    return create_model(name, scale=scale, channels=bands, **options)

  single_input = partial(RevisitSample.single_input, with_mask=True)  # the fusion net takes the mask as a band
  runs = [_Run("single", "single-image (clearest revisit)", seeded("fusion", revisits=1), single_input),
          # its residual starts at 0: the bicubic consensus of the revisits, never trained
          _Run("consensus", f"consensus ({revisits} revisits, untrained)", seeded("fusion", revisits=revisits),
               RevisitSample.fusion_input, trained=False),
          _Run("fusion", f"fusion ({revisits} revisits)", seeded("fusion", revisits=revisits),
               RevisitSample.fusion_input, reference_alone=revisit_dropout)]
  if stacked is not None:
    runs += [_Run(f"{stacked} single", f"{stacked} (clearest revisit)", seeded(stacked), RevisitSample.single_input),
             _Run(f"{stacked} stacked", f"{stacked} ({revisits} revisits stacked)",
                  seeded(stacked, revisits=revisits), RevisitSample.stacked_input)]
  fits = {}
  for run in (r for r in runs if r.trained):
    inputs, goals = np.stack([run.input_of(s) for s in train]), targets
    if run.reference_alone:
      inputs, goals = np.concatenate([inputs, reference_only(inputs, bands)]), np.concatenate([targets, targets])
    report = None if progress is None else (lambda i, loss, name=run.name: progress(name, i, loss))
    validate = None
    if validation:
      held_inputs = np.stack([run.input_of(s) for s in validation])

      def validate(model: Any = run.model, held_inputs: np.ndarray = held_inputs) -> float:
        predictions = forward_batch(model, held_inputs)
        return float(np.mean([score(sr, s)[0] for sr, s in zip(predictions, validation, strict=True)]))
    fits[run.name] = fit(run.model, inputs, goals, scale, steps, seed=seed, progress=report, validate=validate,
                         cores=cores)
  methods: dict[str, Callable[[RevisitSample], np.ndarray]] = {
    "bicubic (clearest revisit)": lambda s: np.moveaxis(imresize(np.moveaxis(s.single_input(), 0, -1), scale), -1, 0)}
  for run in runs:
    methods[run.label] = lambda s, run=run: forward_batch(run.model, run.input_of(s)[None])[0]
  if figure is not None:
    draw_figure(figure, test[0], {method: predict(test[0]) for method, predict in methods.items()})
  rows = []
  for method, predict in methods.items():
    scores = [score(predict(s), s) for s in test]
    rows.append({"method": method, "cpsnr": float(np.mean([p for p, _ in scores])),
                 "cssim": float(np.mean([q for _, q in scores])),
                 "per_date": {str(s.date): round(p, 3) for s, (p, _) in zip(test, scores, strict=True)}})
  return {"scale": scale, "revisits": revisits, "steps": steps, "seed": seed, "misregistration": misregistration,
          "stacked": stacked, "revisit_dropout": revisit_dropout,
          "train_targets": len(train), "validation_targets": [str(s.date) for s in validation],
          "test_targets": [str(s.date) for s in test],
          "final_loss": {name: f.loss for name, f in fits.items()},
          "chosen_step": {name: f.best_step for name, f in fits.items()},
          "validation_cpsnr": {name: f.best_score for name, f in fits.items()}, "results": rows}


def _false_colour(bands: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
  """C x H x W reflectance -> H x W x 3 in [0, 1]: the last three bands as R, G, B (Landsat SWIR1, NIR, red),
  stretched by one scene-wide range so every panel compares."""
  picked = np.moveaxis(bands[-3:] if bands.shape[0] >= 3 else np.repeat(bands[:1], 3, 0), 0, -1)
  return np.clip((picked - low) / np.maximum(high - low, 1e-6), 0.0, 1.0)


def draw_figure(path: str | Path, sample: RevisitSample, predictions: dict[str, np.ndarray]) -> Path:
  """A PNG: top, the target's LR revisits (nearest date first, pixels their masks call not clear tinted red); bottom,
  each method's prediction with its cPSNR, and the HR truth."""
  plt = pyplot()
  picked = sample.hr[-3:] if sample.hr.shape[0] >= 3 else sample.hr[:1]
  low = np.percentile(picked, 1, axis=(1, 2))
  high = np.percentile(picked, 99, axis=(1, 2))
  k = sample.lr.shape[0]
  columns = max(k, len(predictions) + 1)
  fig, axes = plt.subplots(2, columns, figsize=(2.6 * columns, 5.6))
  for axis in axes.ravel():
    axis.set_axis_off()
  for i in range(k):
    image = _false_colour(sample.lr[i], low, high)
    cloudy = ~sample.lr_clear[i].astype(bool)
    image[cloudy] = image[cloudy] * 0.4 + np.array([0.6, 0.0, 0.0])
    axes[0, i].imshow(image, interpolation="nearest")
    clear = 100 * float(sample.lr_clear[i].mean())
    marker = " (clearest)" if i == sample.clearest else ""
    axes[0, i].set_title(f"revisit {sample.revisit_dates[i]}{marker}\n{clear:.0f}% clear", fontsize=8)
  for axis, (method, image) in zip(axes[1], predictions.items(), strict=False):
    axis.imshow(_false_colour(image, low, high), interpolation="nearest")
    axis.set_title(f"{method}\ncPSNR {score(image, sample)[0]:.2f} dB", fontsize=8)
  axes[1, len(predictions)].imshow(_false_colour(sample.hr, low, high), interpolation="nearest")
  axes[1, len(predictions)].set_title(f"HR truth {sample.date}", fontsize=8)
  fig.suptitle("Held-back target: LR revisits (red: not clear), predictions, truth (false colour: SWIR1, NIR, red)",
               fontsize=9)
  fig.tight_layout()
  return save_figure(fig, path, dpi=90)
