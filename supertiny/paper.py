"""The seed paper's study, rerun: five learned methods against nearest, linear and bicubic interpolation on a
fixed set of x4 photo pairs, trained in the paper's setting and in ours for the same step budget.

The paper (../shared/seed, docs/paper.md): batch 16, 2000 optimisation steps (it also says "2000 epochs"; we take
steps), Adam, BatchNorm after every intermediate layer, ReLU, gradient clipping at 1.0, L2 loss. Its "test loss" is
the MSE on [0, 1] pixels and its "average pixel inaccuracy" that loss's root in 8-bit levels (sqrt(0.15) x 255 =
98.8). A setting is the paper's or ours with named switches changed (`paper+loss` is the paper's setting with our
loss; `ours+batchnorm=running` ours with BatchNorm evaluated on running statistics), so an ablation adds the
differences one at a time. Every run is a `supertiny train` run folder (resumable); the report is rebuilt from
whatever runs exist, finished or not.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad import Tensor

from .checkpoint import model_from_checkpoint, read_checkpoint
from .data.images import atomic_output, list_images, read_image, to_float
from .data.paired_set import PairedSet, paired_set
from .errors import SuperTinyError
from .infer import upscale_tiled
from .metrics import evaluate_pair
from .models import create_model
from .models.layers import parameter_count
from .plotting import pyplot, save_figure
from .train import Run, TrainConfig, train, training


@dataclass(frozen=True)
class Switch:
  name: str
  paper: Any
  ours: Any
  choices: tuple[Any, ...]
  meaning: str


SWITCHES: dict[str, Switch] = {s.name: s for s in (
  Switch("batchnorm", "batch", "off", ("batch", "running", "off"),
         "BatchNorm after every intermediate layer, normalising test images with batch statistics too (tinygrad's "
         "training mode left on; the paper does not say) | with running statistics at test time | no BatchNorm"),
  Switch("loss", "l2", "l1", ("l2", "l1"), "training loss: L2 (MSE) | L1"),
  Switch("schedule", "constant", "cosine", ("constant", "cosine"),
         "Adam's learning rate 1e-3 throughout | warm-up over 5% of the steps, then cosine decay to 1e-5"),
  Switch("clip", 1.0, 0.0, (1.0, 0.0), "global gradient-norm clipping at 1.0 | none"),
  Switch("augment", False, True, (False, True), "random flips and 90-degree rotations of the training pairs"),
  Switch("residual", False, True, (False, True),
         "the model's output is the image | is added to the bicubic image (VDSR's global residual)"),
  Switch("tokens", "paper", "ours", ("paper", "ours"),
         "convolution-transformer only: 20x20-pixel patches upsampled by a transposed convolution, as the paper "
         "| 4x4-pixel patches upsampled by pixel shuffle"),
  Switch("head", "default", "zero", ("default", "zero"),
         "convolution-transformer only: its output layer starts from tinygrad's default initialisation | from zero, "
         "so that with the residual the untrained model is bicubic"),
)}


@dataclass(frozen=True)
class Method:
  name: str      # the paper's words
  model: str     # the zoo model
  options: dict[str, Any]
  batchnorm: bool  # has intermediate layers (the paper put BatchNorm after each)


METHODS: dict[str, Method] = {
  "single-kernel": Method("single-kernel convolution (bicubic, one 13x13 convolution)", "single-kernel", {}, False),
  "transposed-conv": Method("transposed convolution (C-64-32-C, kernels 5, 3, 5)", "transposed-conv", {}, True),
  "srcnn": Method("multi-layer convolution (SRCNN 5-5-3, C-64-32-C)", "srcnn", {"variant": "paper"}, True),
  "espcn": Method("sub-pixel convolution (ESPCN C-64-64-48, pixel shuffle)", "espcn", {"variant": "paper"}, True),
  "conv-transformer": Method("convolution-transformer (128-d, 6 blocks, 8 heads)", "conv-transformer", {}, False),
}
INTERPOLATIONS = {"nearest": "nearest", "linear": "bilinear", "bicubic": "bicubic"}
SCALE = 4


@dataclass(frozen=True)
class Budget:
  steps: int
  batch: int
  patch: int | None  # LR patch side; None = whole images, as the paper trained
  cores: int | None = None  # CPU cores per run (None: all); one core compiles a step once, where short runs spend
                            # most of their time


FULL = Budget(2000, 16, None)
QUICK = Budget(25, 4, 24, cores=1)


def parse_setting(text: str) -> dict[str, Any]:
  """Switch values of a setting: `paper` or `ours`, then `+switch` (the other setting's value) or
  `+switch=value`, any number of times."""
  base, *changes = text.split("+")
  if base not in ("paper", "ours"):
    raise SuperTinyError(f"setting {text!r}: starts with 'paper' or 'ours', then +switch or +switch=value")
  other = "ours" if base == "paper" else "paper"
  values = {s.name: getattr(s, base) for s in SWITCHES.values()}
  for change in changes:
    name, _, value = change.partition("=")
    if name not in SWITCHES:
      raise SuperTinyError(f"setting {text!r}: unknown switch {name!r}; switches: {', '.join(SWITCHES)}")
    switch = SWITCHES[name]
    if not value:
      values[name] = getattr(switch, other)
      continue
    words = {str(c).lower(): c for c in switch.choices}
    if isinstance(switch.paper, bool):
      words.update(on=True, off=False)
    if isinstance(switch.paper, float):
      try:
        values[name] = float(value)
      except ValueError:
        raise SuperTinyError(f"setting {text!r}: {name} takes a number, not {value!r}") from None
    elif value.lower() in words:
      values[name] = words[value.lower()]
    else:
      raise SuperTinyError(f"setting {text!r}: {name} is one of {', '.join(map(str, switch.choices))}, not {value!r}")
  return values


def ablation(base: str = "paper") -> list[str]:
  """`base` with each switch changed alone to the other setting's value."""
  return [f"{base}+{name}" for name in SWITCHES]


def model_options(method: str, values: dict[str, Any]) -> dict[str, Any]:
  """create_model options of a method in a setting."""
  spec = METHODS[method]
  options = dict(spec.options)
  if spec.batchnorm:
    options["batchnorm"] = values["batchnorm"] != "off"
  if method == "conv-transformer":
    paper_tokens = values["tokens"] == "paper"
    options.update(patch=20 if paper_tokens else 4, upsampler="transposed" if paper_tokens else "pixelshuffle",
                   residual=values["residual"])
    if values["head"] == "zero":
      options["zero_output"] = True
  elif values["residual"]:
    options["bicubic_residual"] = True
  return options


def run_config(method: str, values: dict[str, Any], pairs: PairedSet, budget: Budget,
               devices: Sequence[str] = ()) -> TrainConfig:
  side = min(pairs.lr_size)
  cosine = values["schedule"] == "cosine"
  return TrainConfig(
    model=METHODS[method].model, scale=SCALE, channels=3, train=[str(pairs.train_hr)], train_lr=str(pairs.train_lr),
    options=model_options(method, values), steps=budget.steps, batch=budget.batch,
    patch=side if budget.patch is None else min(budget.patch, side), lr=1e-3, schedule=values["schedule"],
    warmup=max(1, budget.steps // 20) if cosine else 0, min_lr=1e-5 if cosine else 0.0, clip=values["clip"],
    loss=values["loss"], augment=values["augment"], seed=0, val=None, val_every=budget.steps,
    save_every=max(1, min(100, budget.steps // 10)), devices=list(devices), cores=budget.cores, cache=False)


# ---------------------------------------------------------------------------------------------------------------


def _images(lr_folder: Path, hr_folder: Path, names: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
  lr_by_name = {p.stem: p for p in list_images(lr_folder)}
  hr_by_name = {p.stem: p for p in list_images(hr_folder)}
  return [read_image(lr_by_name[n])[..., :3] for n in names], [read_image(hr_by_name[n])[..., :3] for n in names]


def predict(model, images: Sequence[np.ndarray], batch_statistics: bool, batch: int) -> list[np.ndarray]:
  """8-bit predictions for 8-bit LR images: through the product runner, or, where BatchNorm normalises with batch
  statistics (the paper's test setting as we read it), as batches of `batch` images in tinygrad's training mode."""
  if not batch_statistics:
    return [upscale_tiled(model, image, tile=max(image.shape[:2])) for image in images]
  out = []
  for first in range(0, len(images), batch):
    chunk = np.stack([to_float(i).transpose(2, 0, 1) for i in images[first: first + batch]]).astype(np.float32)
    with training():
      sr = model(Tensor(chunk)).numpy()
    out += [np.round(np.clip(s.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8) for s in sr]
  return out


def scores(srs: Sequence[np.ndarray], hrs: Sequence[np.ndarray]) -> dict[str, float]:
  """The paper's test loss (MSE on [0, 1] RGB pixels, no border shaved) and its root in 8-bit levels, and PSNR and
  SSIM on Y and on RGB by the protocol (x4 border shaved), averaged over the images."""
  loss = float(np.mean([np.mean((to_float(s) - to_float(h)) ** 2) for s, h in zip(srs, hrs, strict=True)]))
  y = [evaluate_pair(to_float(s), to_float(h), SCALE, "y") for s, h in zip(srs, hrs, strict=True)]
  rgb = [evaluate_pair(to_float(s), to_float(h), SCALE, "rgb") for s, h in zip(srs, hrs, strict=True)]
  return {"test_loss": loss, "pixel_inaccuracy": math.sqrt(loss) * 255,
          "psnr_y": float(np.mean([v[0] for v in y])), "ssim_y": float(np.mean([v[1] for v in y])),
          "psnr_rgb": float(np.mean([v[0] for v in rgb])), "ssim_rgb": float(np.mean([v[1] for v in rgb]))}


@dataclass
class Study:
  """A study folder: data/ (the pairs), runs/<setting>/<method>/ (train run folders), and the report."""
  out: Path
  pairs: PairedSet
  budget: Budget
  settings: list[str]
  methods: list[str]
  # (setting, method) -> predictions of the first training and test image, kept by `evaluate` for the figures
  shown: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

  def run_folder(self, setting: str, method: str) -> Path:
    return self.out / "runs" / setting / method

  def train_all(self, resume: bool, devices: Sequence[str] = (), report: Callable[[str], None] = print,
                progress: bool = True) -> None:
    """Train every (setting, method) run that is not finished, in order; a finished run is left as it is."""
    for setting in self.settings:
      values = parse_setting(setting)
      for method in self.methods:
        folder = self.run_folder(setting, method)
        done = finished_steps(folder)
        if done is not None and done >= self.budget.steps:
          continue
        if done is not None and not resume:
          raise SuperTinyError(f"{folder}: holds an unfinished run (step {done}); pass --resume to continue it")
        report(f"training {method} in setting {setting} ({self.budget.steps} steps) -> {folder}")
        train(run_config(method, values, self.pairs, self.budget, devices), folder, resume=resume,
              report=report, progress=progress)

  def evaluate(self, report: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per interpolation and per existing run (finished or not), scored on the test pairs. Keeps each
    one's predictions of the first training and test image for the figures."""
    test_lr, test_hr = _images(self.pairs.test_lr, self.pairs.test_hr, self.pairs.names("test"))
    (train_lr,), _ = _images(self.pairs.train_lr, self.pairs.train_hr, self.pairs.names("train")[:1])
    rows = []
    for label, name in INTERPOLATIONS.items():
      model = create_model(name, scale=SCALE, channels=None)
      sr = predict(model, test_lr, False, 1)
      self.shown[("", label)] = (predict(model, [train_lr], False, 1)[0], sr[0])
      rows.append({"method": label, "setting": "", "steps": 0, "target_steps": 0, **scores(sr, test_hr),
                   "params": 0, "steps_per_s": "", "wall_s": "", "device": ""})
    for setting in self.settings:
      batch_stats = parse_setting(setting)["batchnorm"] == "batch"
      for method in self.methods:
        checkpoint = Run(self.run_folder(setting, method)).last
        if not checkpoint.exists():
          continue
        model, meta = model_from_checkpoint(checkpoint)
        step, seconds = int(meta["step"]), float(meta.get("seconds", 0.0))
        statistics = batch_stats and METHODS[method].batchnorm
        sr = predict(model, test_lr, statistics, self.budget.batch)
        # with batch statistics, the lone training image is its own batch
        self.shown[(setting, method)] = (predict(model, [train_lr], statistics, self.budget.batch)[0], sr[0])
        rows.append({"method": method, "setting": setting, "steps": step, "target_steps": self.budget.steps,
                     **scores(sr, test_hr), "params": parameter_count(model),
                     "steps_per_s": round(step / seconds, 3) if seconds else "", "wall_s": round(seconds, 1),
                     "device": meta.get("device", "")})
        report(f"scored {method} ({setting}, step {step}): PSNR-Y {rows[-1]['psnr_y']:.2f} dB")
    return rows

  def write_report(self, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """results.csv, results.json, results.md and the figures; returns what was written."""
    written = {}
    fields = list(rows[0])
    with atomic_output(self.out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fields)
      writer.writeheader()
      writer.writerows(rows)
    written["csv"] = self.out / "results.csv"
    document = {"data": self.pairs.source, "budget": vars(self.budget) | {"scale": SCALE},
                "settings": {s: parse_setting(s) for s in self.settings}, "rows": rows}
    with atomic_output(self.out / "results.json") as tmp:
      Path(tmp).write_text(json.dumps(document, indent=2))
    written["json"] = self.out / "results.json"
    with atomic_output(self.out / "results.md") as tmp:
      Path(tmp).write_text(markdown_table(rows, self.pairs.source, self.budget))
    written["md"] = self.out / "results.md"
    written.update(self.figures())
    return written

  def figures(self) -> dict[str, Path]:
    """figure2_interpolation.png (the paper's Figure 2: nearest, linear and bicubic on the first test image), and
    per setting figure3_<setting>.png (its Figure 3: each model on the first training and test image beside LR
    and HR) and curves_<setting>.png (training loss against step); from the predictions `evaluate` kept."""
    images = {split: _images(lr, hr, self.pairs.names(split)[:1]) for split, lr, hr in (
      ("train", self.pairs.train_lr, self.pairs.train_hr), ("test", self.pairs.test_lr, self.pairs.test_hr))}
    lr, hr = images["test"][0][0], images["test"][1][0]
    panels = [("LR", lr)] + [(f"{label}\n{_psnr_words(self.shown[('', label)][1], hr)}", self.shown[("", label)][1])
                             for label in INTERPOLATIONS]
    written = {"figure2": _grid([panels + [("HR", hr)]], self.out / "figure2_interpolation.png",
                                f"test image {self.pairs.names('test')[0]}, x4")}
    for setting in self.settings:
      runs = {m: Run(self.run_folder(setting, m)) for m in self.methods if (setting, m) in self.shown}
      if not runs:
        continue
      rows = []
      for index, split in enumerate(("train", "test")):
        (lr,), (hr,) = images[split]
        row = [(f"{split} {self.pairs.names(split)[0]}: LR", lr)]
        for method in runs:
          sr = self.shown[(setting, method)][index]
          row.append((f"{method}\n{_psnr_words(sr, hr)}", sr))
        rows.append(row + [("HR", hr)])
      written[f"figure3 {setting}"] = _grid(rows, self.out / f"figure3_{setting}.png", f"setting {setting}")
      written[f"curves {setting}"] = _curves(runs, self.out / f"curves_{setting}.png", setting)
    return written


def _psnr_words(sr: np.ndarray, hr: np.ndarray) -> str:
  return f"{evaluate_pair(to_float(sr), to_float(hr), SCALE, 'y')[0]:.2f} dB"


def _grid(rows: list[list[tuple[str, np.ndarray]]], path: Path, title: str) -> Path:
  """Rows of titled images (LR shown at its own size, stretched to the panel) written as a PNG."""
  plt = pyplot()
  columns = max(len(r) for r in rows)
  fig, axes = plt.subplots(len(rows), columns, figsize=(2.2 * columns, 2.5 * len(rows)), squeeze=False)
  for axis_row, row in zip(axes, rows, strict=True):
    for axis, (label, image) in zip(axis_row, row + [("", None)] * (columns - len(row)), strict=True):
      axis.axis("off")
      if image is not None:
        axis.imshow(image, interpolation="nearest")
        axis.set_title(label, fontsize=8)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save_figure(fig, path)


def _curves(runs: dict[str, Run], path: Path, setting: str) -> Path:
  plt = pyplot()
  fig, axis = plt.subplots(figsize=(6, 3.6))
  for method, run in runs.items():
    rows = run.rows()
    if rows:
      axis.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label=method, linewidth=0.8)
  axis.set(xlabel="step", ylabel="training loss", yscale="log", title=f"setting {setting}")
  axis.legend(fontsize=8)
  fig.tight_layout()
  return save_figure(fig, path)


def finished_steps(folder: Path) -> int | None:
  """The step of a run folder's last checkpoint, or None without one."""
  last = Run(folder).last
  return int(read_checkpoint(last)[0]["step"]) if last.exists() else None


def markdown_table(rows: list[dict[str, Any]], source: str, budget: Budget) -> str:
  lines = [f"Data: {source}. Budget: {budget.steps} steps of batch {budget.batch}, "
           + ("whole images" if budget.patch is None else f"{budget.patch}x{budget.patch} LR patches") + ", x4.", "",
           "| method | setting | steps | test loss (MSE) | pixel inaccuracy | PSNR Y | SSIM Y | PSNR RGB | SSIM RGB "
           "| parameters | steps/s | wall s | device |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
  for r in rows:
    steps = "" if not r["target_steps"] else (f"{r['steps']}" if r["steps"] >= r["target_steps"]
                                               else f"{r['steps']} of {r['target_steps']}")
    lines.append(f"| {r['method']} | {r['setting']} | {steps} | {r['test_loss']:.4f} | {r['pixel_inaccuracy']:.1f} | "
                 f"{r['psnr_y']:.2f} | {r['ssim_y']:.4f} | {r['psnr_rgb']:.2f} | {r['ssim_rgb']:.4f} | "
                 f"{r['params'] or ''} | {r['steps_per_s']} | {r['wall_s']} | {r['device']} |")
  return "\n".join(lines) + "\n"


def study(data: str | Path, out: str | Path, budget: Budget = FULL, settings: Sequence[str] = ("paper", "ours"),
          methods: Sequence[str] = tuple(METHODS), resume: bool = False, devices: Sequence[str] = (),
          report_only: bool = False, report: Callable[[str], None] = print, progress: bool = True
          ) -> dict[str, Any]:
  """Make or find the pairs, train what is not finished (unless `report_only`), score every run and write the
  report into `out`; returns {"rows", "written"}."""
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise SuperTinyError(f"unknown method(s) {', '.join(unknown)}; methods: {', '.join(METHODS)}")
  for setting in settings:
    parse_setting(setting)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  pairs = paired_set(Path(data), out / "data", scale=SCALE)
  runs = Study(out, pairs, budget, list(settings), list(methods))
  if not report_only:
    runs.train_all(resume, devices, report, progress)
  rows = runs.evaluate(report)
  return {"rows": rows, "written": runs.write_report(rows)}
