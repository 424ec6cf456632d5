"""The `supertiny` command line: `eval` (the benchmark protocol), `demo` (the bundled sample), `zoo` (the models)."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import SuperTinyError

SAMPLE = Path(__file__).parent / "samples" / "butterfly.png"


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
  print(f"supertiny: warning: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
  return value


def _model(name: str, scale: int, channels: int | None = None, weights: str | None = None):
  """A registered model; learned ones need weights (or run with their random initialisation, as a smoke test)."""
  from .models import MODELS, create_model
  from .models.weights import load_weights

  if name not in MODELS and (name.endswith(".safetensors") or Path(name).is_file()):
    from .checkpoint import model_from_checkpoint

    model, _ = model_from_checkpoint(name)
    if model.scale != scale:
      raise SuperTinyError(f"{name}: the checkpoint is for x{model.scale}, not x{scale}")
    return model
  learned = name in MODELS and MODELS[name].learned
  model = create_model(name, scale=scale, channels=channels if learned else None)
  if weights is not None:
    if not learned:
      raise SuperTinyError(f"{weights}: {name} has no weights to load")
    load_weights(model, weights)
  elif learned:
    warnings.warn(f"{name} has no weights given (--weights): its output is from random initialisation", stacklevel=2)
  return model


def cmd_train(args: argparse.Namespace) -> int:
  from .train import TrainConfig, load_config, train

  values = load_config(args.config) if args.config else {}
  for key in ("model", "scale", "train", "train_lr", "val", "steps", "batch", "patch", "lr", "loss", "optimizer",
              "schedule", "warmup", "clip", "seed", "val_every", "save_every"):
    given = getattr(args, key)
    if given is not None:
      values[key] = given
  if args.channels is not None:
    values["channels"] = {"y": 1, "rgb": 3}[args.channels]
  for required in ("model", "scale", "train"):
    if required not in values:
      raise SuperTinyError(f"--{required} is required (on the command line or in --config)")
  config = TrainConfig.from_dict(values, args.config or "command line")
  summary = train(config, args.out, resume=args.resume)
  best = f"best Y PSNR {summary['best_psnr']:.2f} dB" if summary["best_psnr"] > -1e9 else "no validation set"
  print(f"trained {config.model} x{config.scale} for {summary['step']} steps in {summary['seconds']:.0f} s; {best}; "
        f"checkpoints in {args.out}")
  return 0


def cmd_zoo(args: argparse.Namespace) -> int:
  from .models import MODELS, create_model, parameter_count

  rows = []
  for name, spec in MODELS.items():
    scale = args.scale if spec.scales is None or args.scale in spec.scales else spec.scales[0]
    model = create_model(name, scale=scale, channels=args.channels if spec.learned else None)
    rows.append({"name": name, "parameters": parameter_count(model), "receptive_field": model.receptive_field,
                 "scales": list(spec.scales) if spec.scales else "any", "learned": spec.learned,
                 "channels": model.channels, "scale": scale, "summary": spec.summary})
  rows.sort(key=lambda r: (r["learned"], r["parameters"]))
  if args.json:
    print(json.dumps(rows, indent=2))
    return 0
  print(f"{'model':<17} {'params':>10} {'RF (LR px)':>10}  {'scales':<10} summary")
  for r in rows:
    rf = "global" if r["receptive_field"] is None else str(r["receptive_field"])
    scales = "any" if r["scales"] == "any" else ",".join(map(str, r["scales"]))
    print(f"{r['name']:<17} {r['parameters']:>10,} {rf:>10}  {scales:<10} {r['summary']}")
  print(f"\nparameters and receptive field at x{args.scale} (or the nearest supported scale), "
        f"{args.channels} channel(s) for learned models")
  return 0


def cmd_eval(args: argparse.Namespace) -> int:
  from tqdm import tqdm

  from .evaluate import evaluate_folder

  if args.lr and len(args.lr) != len(args.dirs):
    raise SuperTinyError(f"--lr given {len(args.lr)} time(s) for {len(args.dirs)} HR folder(s): give one per folder")
  model = _model(args.model, args.scale, args.channels, args.weights)
  results = []
  for i, folder in enumerate(args.dirs):
    lr_folder = args.lr[i] if args.lr else None
    with tqdm(desc=Path(folder).name, unit="img", leave=False, disable=not sys.stderr.isatty()) as bar:
      results.append(evaluate_folder(model, folder, args.scale, lr_folder, args.space,
                                     progress=lambda _name, bar=bar: bar.update()))
  if args.json:
    doc = {"model": args.model, "scale": args.scale, "datasets": {}}
    for r in results:
      entry = {"psnr": r.psnr, "ssim": r.ssim, "images": len(r.images)}
      if args.per_image:
        entry["per_image"] = {s.name: {"psnr": s.psnr, "ssim": s.ssim} for s in r.images}
      doc["datasets"][r.name] = entry
    print(json.dumps(doc, indent=2))
    return 0
  space = "Y" if args.space == "y" else "RGB"
  print(f"model {args.model}, x{args.scale}, PSNR/SSIM on {space}, shave {args.scale}")
  for r in results:
    print(f"\n{r.name} ({len(r.images)} images)")
    print(f"  {'image':<16} {'PSNR':>8} {'SSIM':>7}")
    if args.per_image:
      for s in r.images:
        print(f"  {s.name:<16} {s.psnr:8.2f} {s.ssim:7.4f}")
    print(f"  {'mean':<16} {r.psnr:8.2f} {r.ssim:7.4f}")
  return 0


def cmd_demo(args: argparse.Namespace) -> int:
  from .data.images import write_image
  from .evaluate import load_pair, score
  from .infer import upscale_array

  if args.model == "bicubic":
    warnings.warn("no trained weights ship yet: using the bicubic baseline", stacklevel=1)
  model = _model(args.model, args.scale, args.channels, args.weights)
  lr, hr = load_pair(args.image, args.scale)
  out = Path(args.output)
  out.mkdir(parents=True, exist_ok=True)
  stem = Path(args.image).stem
  sr = upscale_array(model, lr)
  write_image(out / f"{stem}_lr_x{args.scale}.png", lr)
  write_image(out / f"{stem}_x{args.scale}_{args.model}.png", sr)
  p, s = score(sr, hr, args.scale)
  print(f"{Path(args.image).name}: {lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]} with {args.model} "
        f"x{args.scale}: PSNR {p:.2f} dB, SSIM {s:.4f} (Y channel, shave {args.scale})")
  print(f"wrote {out / f'{stem}_lr_x{args.scale}.png'} and {out / f'{stem}_x{args.scale}_{args.model}.png'}")
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="supertiny", description="Super-resolution in tinygrad.")
  parser.add_argument("--version", action="version", version=f"supertiny {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)

  ev = sub.add_parser("eval", help="score a model on HR image folders by the literature's protocol",
                      description="Each DIR is a folder of HR images named after its dataset. Every image is "
                                  "modcropped, degraded with MATLAB bicubic, super-resolved and scored with "
                                  "PSNR/SSIM on the Y channel with a border shave of SCALE pixels.")
  ev.add_argument("dirs", nargs="+", metavar="DIR", help="folder of HR images")
  ev.add_argument("--model", default="bicubic", help="model name (see `supertiny zoo`) or checkpoint file [bicubic]")
  ev.add_argument("--scale", type=_positive_int, required=True, help="upscaling factor")
  ev.add_argument("--weights", metavar="FILE", help="weights for a learned model (.pth/.pt state dict, .safetensors)")
  ev.add_argument("--channels", type=int, choices=(1, 3), default=3, help="learned models: 1 = Y, 3 = RGB [3]")
  ev.add_argument("--lr", action="append", metavar="DIR",
                  help="folder of given LR images matched to DIR by file name (once per DIR)")
  ev.add_argument("--space", choices=("y", "rgb"), default="y", help="score on Y (the literature) or RGB [y]")
  ev.add_argument("--per-image", action="store_true", help="also report every image")
  ev.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
  ev.set_defaults(run=cmd_eval)

  demo = sub.add_parser("demo", help="degrade the bundled sample image, upscale it and report PSNR/SSIM")
  demo.add_argument("image", nargs="?", default=str(SAMPLE), help="HR image [bundled butterfly.png]")
  demo.add_argument("--model", default="bicubic", help="model name [bicubic]")
  demo.add_argument("--scale", type=_positive_int, default=4, help="upscaling factor [4]")
  demo.add_argument("--weights", metavar="FILE", help="weights for a learned model")
  demo.add_argument("--channels", type=int, choices=(1, 3), default=3, help="learned models: 1 = Y, 3 = RGB [3]")
  demo.add_argument("-o", "--output", default="supertiny-demo", help="output folder [supertiny-demo]")
  demo.set_defaults(run=cmd_demo)

  tr = sub.add_parser("train", help="train a model (resumable); writes checkpoints and metrics.csv to --out")
  tr.add_argument("--config", help="TOML recipe (configs/*.toml); command-line options override it")
  tr.add_argument("--model", help="model name")
  tr.add_argument("--scale", type=_positive_int)
  tr.add_argument("--channels", choices=("y", "rgb"), help="train on the Y channel or RGB [y]")
  tr.add_argument("--train", nargs="+", metavar="DIR", help="HR training folders (degraded on the fly)")
  tr.add_argument("--train-lr", dest="train_lr", metavar="DIR", help="given LR images for a single --train folder")
  tr.add_argument("--val", metavar="DIR", help="HR validation folder, scored by the eval protocol")
  tr.add_argument("--steps", type=_positive_int)
  tr.add_argument("--batch", type=_positive_int)
  tr.add_argument("--patch", type=_positive_int, help="LR patch side")
  tr.add_argument("--lr", type=float, help="learning rate")
  tr.add_argument("--loss", choices=("l1", "l2", "charbonnier"))
  tr.add_argument("--optimizer", choices=("adam", "adamw"))
  tr.add_argument("--schedule", choices=("constant", "step", "cosine"))
  tr.add_argument("--warmup", type=int)
  tr.add_argument("--clip", type=float, help="clip the gradients' global norm (0 = off)")
  tr.add_argument("--seed", type=int)
  tr.add_argument("--val-every", dest="val_every", type=_positive_int)
  tr.add_argument("--save-every", dest="save_every", type=_positive_int)
  tr.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
  tr.add_argument("--resume", action="store_true", help="continue the run in --out from last.safetensors")
  tr.set_defaults(run=cmd_train)

  zoo = sub.add_parser("zoo", help="list every model with its parameter count, receptive field and scales")
  zoo.add_argument("--scale", type=_positive_int, default=4, help="scale to size the models for [4]")
  zoo.add_argument("--channels", type=int, choices=(1, 3), default=3, help="channels of learned models [3]")
  zoo.add_argument("--json", action="store_true", help="print one JSON document")
  zoo.set_defaults(run=cmd_zoo)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  warnings.showwarning = _one_line_warnings
  try:
    return args.run(args)
  except SuperTinyError as exc:
    print(f"supertiny: error: {exc}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("supertiny: interrupted", file=sys.stderr)
    return 130
