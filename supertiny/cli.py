"""The `supertiny` command line: `eval` (the benchmark protocol), `demo` (the bundled sample), `zoo` (the models)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .data.radiometry import CHOICES as RADIOMETRY_CHOICES
from .errors import SuperTinyError, Terminated, raise_terminated

BORDERS = ("zeros", "symmetric")  # supertiny.models.base.BORDERS, written out: the CLI starts without tinygrad
LOSSES = ("l1", "l2", "charbonnier", "psnr")  # supertiny.train.LOSSES' names, written out for the same reason

SAMPLE = Path(__file__).parent / "samples" / "butterfly.png"


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
  print(f"supertiny: warning: {message}", file=sys.stderr)


def _positive_int(text: str, least: int = 1, kind: str = "positive") -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
  if value < least:
    raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
  return value


def _non_negative_int(text: str) -> int:
  return _positive_int(text, least=0, kind="non-negative")


def _channels(text: str) -> int:
  """--channels, spelled the same in every command: y (= 1, luma) or rgb (= 3), or a band count."""
  from .models.registry import CHANNEL_NAMES

  if text.lower() in CHANNEL_NAMES:
    return CHANNEL_NAMES[text.lower()]
  try:
    return _positive_int(text)
  except argparse.ArgumentTypeError:
    raise argparse.ArgumentTypeError(f"expected y, rgb or a channel count, got {text!r}") from None


def _outputs(inputs: list[str], out: str, on_dask: bool = False) -> list[tuple[Path, Path]]:
  """(source, target) pairs: files and the images of folders; OUT is a file for a single input file whose name has
  an image suffix (or, on Dask, a Zarr store: `.zarr`), else a folder where each output keeps its input's name."""
  from .data.images import IMAGE_SUFFIXES, WRITABLE_SUFFIXES, list_images
  from .data.raster import JPEG2000_SUFFIXES

  target = Path(out)
  sources: list[Path] = []
  for given in map(Path, inputs):
    sources.extend(list_images(given) if given.is_dir() else [given])
  single = len(inputs) == 1 and not Path(inputs[0]).is_dir()
  if single and target.suffix.lower() in IMAGE_SUFFIXES:
    return [(sources[0], target)]
  if single and target.suffix.lower() == ".zarr":
    if not on_dask:
      raise SuperTinyError(f"{target}: Zarr stores are written on Dask: add --dask (or --scheduler ADDRESS)")
    return [(sources[0], target)]
  if target.suffix and not target.is_dir():  # a file name where a folder is needed, or an unknown format
    if single:
      raise SuperTinyError(f"{target}: cannot write {target.suffix} files (writes "
                           f"{', '.join(sorted(WRITABLE_SUFFIXES))}; a name without a suffix is a folder)")
    raise SuperTinyError(f"{target}: {len(sources)} outputs need a folder, not a file name")
  # JPEG 2000 (satellite bands) is read, not written: it comes out as GeoTIFF, which keeps the georeferencing
  names = [p.stem + ".tif" if p.suffix.lower() in JPEG2000_SUFFIXES else p.name for p in sources]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise SuperTinyError(f"{twice[0]}: several inputs share this name and would overwrite each other in {target}")
  return [(p, target / n) for p, n in zip(sources, names, strict=True)]


_WORKER_MODEL = None  # the model of an `upscale --jobs` worker process, loaded once by _start_worker


def _start_worker(model: str | None, scale: int | None, channels: int | None, weights: str | None,
                  random_init: bool, device: str | None, cores: int) -> None:
  global _WORKER_MODEL
  from .pretrained import load_model
  from .runtime.internals import compile_in_process

  compile_in_process()
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent ends us
  signal.signal(signal.SIGTERM, _worker_terminated)
  if device:
    os.environ["DEV"] = device  # this process has not opened a tinygrad device yet
  os.environ["SUPERTINY_CORES"] = str(cores)  # the jobs share the cores
  warnings.simplefilter("ignore")  # the parent has shown load_model's warnings once
  _WORKER_MODEL = load_model(model, scale, channels, weights, random_init)


def _upscale_one(model, source: Path, target: Path, tile: int, overlap: int | None, overwrite: bool,
                 radiometry: str, progress=None) -> tuple[tuple[int, ...], str] | str:
  """(shape, dtype) of the written output, or the one-line error for this file: one bad file (or a full disk)
  must not cost the others."""
  from .upscaling import upscale_file

  return _outcome(lambda: upscale_file(model, source, target, tile, overlap, overwrite, progress, radiometry), source,
                  target)


def _outcome(work, source: Path, target: Path) -> tuple[tuple[int, ...], str] | str:
  """(shape, dtype) of the raster `work()` returns (or of the file it wrote, as that pair), or its one-line error."""
  try:
    result = work()
  except Exception as exc:  # noqa: BLE001 (any one file's failure, a decoder's or memory, must not stop the batch)
    return _message(exc, source, target)
  return result if isinstance(result, tuple) else (result.pixels.shape, str(result.pixels.dtype))


def _message(exc: Exception, source: Path, target: Path) -> str:
  """One line for one file's failure, naming the file."""
  if isinstance(exc, SuperTinyError):
    return str(exc)
  if isinstance(exc, OSError):
    return f"{exc.filename or target}: {exc.strerror or exc}"
  if isinstance(exc, MemoryError):
    return f"{source}: out of memory (try a smaller --tile, fewer --jobs or a lower --max-pixels)"
  reason = str(exc).splitlines()[0] if str(exc) else ""
  return f"{source}: failed ({type(exc).__name__}{': ' + reason if reason else ''})"


def _written(target: Path, result):
  from .upscaling import write_output

  write_output(target, result)
  return result


def _settled(entry: tuple) -> tuple:
  """(source, target, outcome) once the entry's write, if any, has finished."""
  source, target, outcome = entry
  return source, target, outcome if isinstance(outcome, str) else outcome.result()


_WORKER_BUSY = False  # a worker is inside a file (its output may be half written)


def _worker_terminated(signum: int, frame: object) -> None:
  """SIGTERM in a worker: inside a file, unwind through its clean-up first; between files, just end."""
  if _WORKER_BUSY:
    raise Terminated
  os._exit(143)


def _upscale_in_worker(source: Path, target: Path, tile: int, overlap: int | None, overwrite: bool,
                       radiometry: str) -> tuple[tuple[int, ...], str] | str:
  global _WORKER_BUSY
  _WORKER_BUSY = True
  try:
    return _upscale_one(_WORKER_MODEL, source, target, tile, overlap, overwrite, radiometry)
  except Terminated:
    os._exit(143)  # the temporary output is removed; ending here keeps the pool from taking the next file
  finally:
    _WORKER_BUSY = False


def _upscale_jobs(args: argparse.Namespace, model, pairs: list[tuple[Path, Path]]):
  """(source, target, outcome) per file, from args.jobs worker processes, each with its own copy of the model and
  an equal share of the cores (within a file, tiles run on that many cores at once)."""
  import multiprocessing
  from concurrent.futures import ProcessPoolExecutor, wait
  from concurrent.futures.process import BrokenProcessPool

  from .data.images import remove_partial_outputs
  from .runtime.cores import core_devices

  jobs = min(args.jobs, len(pairs))
  context = multiprocessing.get_context("spawn")  # a fresh interpreter: no tinygrad state copied from this one
  init = (args.model, model.scale, args.channels, args.weights, args.random_init, args.device,
          max(1, len(core_devices()) // jobs))
  pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=init)
  # Ctrl-C only raises a flag, acted on while waiting for a file: a KeyboardInterrupt raised wherever the main
  # thread happens to be can land in a destructor (tinygrad's), where Python prints it as a traceback and drops it
  interrupted: list[int] = []
  previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
  try:
    futures = [(s, t, pool.submit(_upscale_in_worker, s, t, args.tile, args.tile_overlap, args.overwrite,
                                  args.radiometry)) for s, t in pairs]
    for source, target, future in futures:
      try:
        while not wait([future], timeout=0.1).done:
          if interrupted:
            raise KeyboardInterrupt
        outcome = future.result()
      except BrokenProcessPool as exc:
        raise SuperTinyError(f"{source}: a worker process died ({exc}); out of memory? try fewer --jobs") from None
      yield source, target, outcome
  except BaseException:
    # interrupted (or stopped early): no file is started again, and the workers end now, not after their files
    workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
      process.terminate()
    # a worker inside a long native call (a kernel, a compile) sees SIGTERM only when it returns: on a loaded
    # machine that can be tens of seconds, so what has not ended after a few seconds is killed
    deadline = time.monotonic() + 5
    for process in workers:
      process.join(max(0.0, deadline - time.monotonic()))
    for process in workers:
      if process.is_alive():
        process.kill()
        process.join(5)
    for _, target in pairs:  # a worker ended between creating its temporary output and guarding it
      remove_partial_outputs(target)
    raise
  finally:
    signal.signal(signal.SIGINT, previous)
    pool.shutdown(wait=True)


def cmd_upscale(args: argparse.Namespace) -> int:
  from collections import deque
  from concurrent.futures import ThreadPoolExecutor

  from tqdm import tqdm

  from .pretrained import load_model
  from .runtime.cores import core_devices
  from .upscaling import upscale_source

  model = load_model(args.model, args.scale, args.channels, args.weights, args.random_init)
  pairs = _outputs(args.inputs, args.output, on_dask=bool(args.dask or args.scheduler))
  if args.skip_existing:  # outputs are written whole or not at all, so one that exists is complete
    done = [p for p in pairs if p[1].exists()]
    if done:
      print(f"supertiny: skipping {len(done)} output(s) that exist", file=sys.stderr)
    pairs = [p for p in pairs if not p[1].exists()]
  failed = 0
  show = sys.stderr.isatty()

  def one_by_one():
    # files are upscaled one after the other on every core, and written (encoding PNG costs more than upscaling
    # it) by a thread per core while the next ones are upscaled: Pillow's encoders release the GIL
    writers = len(core_devices())
    with ThreadPoolExecutor(writers, thread_name_prefix="supertiny-write") as pool:
      pending: deque = deque()
      for source, target in pairs:
        with tqdm(desc=source.name, unit="tile", leave=False, disable=not show) as tiles:
          def on_tile(done: int, total: int, bar=tiles) -> None:
            bar.total = total
            bar.update(done - bar.n)

          try:
            result = upscale_source(model, source, target, args.tile, args.tile_overlap, args.overwrite, on_tile,
                                    args.radiometry)
          except Exception as exc:  # noqa: BLE001 (one line per failed file; the batch goes on)
            pending.append((source, target, _message(exc, source, target)))
          else:
            pending.append((source, target, pool.submit(_outcome, lambda t=target, r=result: _written(t, r), source,
                                                        target)))
        while len(pending) > writers or (pending and isinstance(pending[0][2], str)):
          yield _settled(pending.popleft())
      while pending:
        yield _settled(pending.popleft())

  with tqdm(total=len(pairs), unit="file", disable=not show or len(pairs) == 1) as files:
    if args.dask or args.scheduler:
      outcomes = _upscale_on_dask(args, model, pairs)
    elif args.jobs > 1 and len(pairs) > 1:
      outcomes = _upscale_jobs(args, model, pairs)
    else:
      outcomes = one_by_one()
    for source, target, outcome in outcomes:
      files.update()
      if isinstance(outcome, str):
        print(f"supertiny: error: {outcome}", file=sys.stderr)
        failed += 1
        continue
      (h, w, c), dtype = outcome
      tqdm.write(f"{source} -> {target} ({w}x{h}, {c} band{'s' if c > 1 else ''}, {dtype}, "
                 f"{model.name} x{model.scale})")
  if failed:
    print(f"supertiny: {failed} of {len(pairs)} file(s) failed", file=sys.stderr)
    return 1
  return 0


def _upscale_on_dask(args: argparse.Namespace, model, pairs: list[tuple[Path, Path]]):
  """`upscale --dask` / `--scheduler`: each file chunk by chunk on a Dask cluster, written window by window; yields
  (source, target, outcome) as the other ways of upscaling do."""
  from tqdm import tqdm

  from .dask import ModelRef, dask_client, upscale_file_chunked

  if model.receptive_field is None:
    raise SuperTinyError(f"model {model.name!r} is global (every output pixel sees the whole input): it cannot run "
                         "chunk by chunk on Dask")
  ref = ModelRef(args.model, args.scale, args.channels, args.weights, args.random_init)
  with dask_client(args.scheduler) as client:
    print(f"supertiny: Dask cluster of {len(client.scheduler_info()['workers'])} worker(s); dashboard "
          f"{client.dashboard_link}", file=sys.stderr)
    for source, target in pairs:
      if target.exists() and not args.overwrite:
        yield source, target, f"{target}: already exists (pass --overwrite to replace it, or --skip-existing)"
        continue
      with tqdm(desc=source.name, unit="chunk", leave=False, disable=not sys.stderr.isatty()) as chunks:
        def on_chunk(done: int, total: int, bar=chunks) -> None:
          bar.total = total
          bar.update(done - bar.n)

        yield source, target, _outcome(lambda s=source, t=target, p=on_chunk: upscale_file_chunked(
          s, t, ref, client, args.chunk, args.radiometry, args.tile, cores=1, progress=p), source, target)


def _device_list(text: str) -> list[str]:
  """--devices: a count (the first N devices of the default backend) or names separated by commas."""
  from tinygrad import Device

  if text.isdigit():
    return [f"{Device.DEFAULT}:{i}" for i in range(int(text))]
  return [name.strip() for name in text.split(",") if name.strip()]


def cmd_train(args: argparse.Namespace) -> int:
  from .train import TrainConfig, load_config, train

  values = load_config(args.config) if args.config else {}
  if args.old_lr is not None:
    warnings.warn("`train --lr` is deprecated and will be removed: use --learning-rate", FutureWarning, stacklevel=1)
    args.lr = args.lr if args.lr is not None else args.old_lr
  for key in ("model", "scale", "train", "train_lr", "val", "val_last", "steps", "batch", "patch", "shave",
              "edge_margin", "lr", "loss", "optimizer", "schedule", "warmup", "clip", "ema", "seed", "val_every",
              "save_every", "cores", "init", "worldstrat", "rescale"):
    given = getattr(args, key)
    if given is not None:
      values[key] = given
  if args.channels is not None:
    values["channels"] = args.channels
  if args.revisits is not None:
    values["options"] = {**values.get("options", {}), "revisits": args.revisits}
  if args.devices is not None:
    values["devices"] = _device_list(args.devices)
  if args.no_cache:
    values["cache"] = False
  for required in ("model", "scale"):
    if required not in values:
      raise SuperTinyError(f"--{required} is required (on the command line or in --config)")
  if "train" not in values and "worldstrat" not in values:
    raise SuperTinyError("--train (HR folders) or --worldstrat (a WorldStrat root) is required (on the command line "
                         "or in --config)")
  config = TrainConfig.from_dict(values, args.config or "command line")
  summary = train(config, args.out, resume=args.resume)
  best = f"best Y PSNR {summary['best_psnr']:.2f} dB" if summary["best_psnr"] > -1e9 else "no validation set"
  print(f"trained {config.model} x{config.scale} for {summary['step']} steps in {summary['seconds']:.0f} s; {best}; "
        f"checkpoints in {args.out}")
  return 0


def cmd_zoo(args: argparse.Namespace) -> int:
  from .models import MODELS, create_model, parameter_count
  from .pretrained import shipped_scores

  weights = shipped_scores()
  rows = []
  for name, spec in MODELS.items():
    scale = args.scale if spec.scales is None or args.scale in spec.scales else spec.scales[0]
    model = create_model(name, scale=scale, channels=args.channels if spec.learned else None)
    rows.append({"name": name, "parameters": parameter_count(model), "receptive_field": model.receptive_field,
                 "scales": list(spec.scales) if spec.scales else "any", "learned": spec.learned,
                 "channels": model.channels, "scale": scale, "summary": spec.summary,
                 "weights": [w for w in weights if w["model"] == name]})
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
  print(f"\n{'shipped weights':<17} {'scale':>5}  {'Set5 PSNR/SSIM':<16} {'Set14 PSNR/SSIM':<16} (Y; docs/results.md)")
  for w in weights:
    scored = [f"{w[s]['psnr']:.2f} / {w[s]['ssim']:.4f}" if s in w else "not scored" for s in ("Set5", "Set14")]
    print(f"{w['name']:<17} {'x' + str(w['scale']):>5}  {scored[0]:<16} {scored[1]:<16}")
  return 0


def cmd_eval(args: argparse.Namespace) -> int:
  from tqdm import tqdm

  from .evaluate import evaluate_folder
  from .pretrained import load_model

  if args.old_lr_dirs:
    warnings.warn("`eval --lr` is deprecated and will be removed: use --lr-dir", FutureWarning, stacklevel=1)
    args.lr_dirs = (args.lr_dirs or []) + args.old_lr_dirs
  if args.lr_dirs and len(args.lr_dirs) != len(args.dirs):
    raise SuperTinyError(f"--lr-dir given {len(args.lr_dirs)} time(s) for {len(args.dirs)} HR folder(s): give one "
                         "per folder")
  if bool(args.dirs) == bool(args.worldstrat):
    raise SuperTinyError("give HR folders or --worldstrat ROOT (one of the two)")
  model = load_model(args.model, args.scale, args.channels, args.weights, args.random_init)
  results = []
  if args.worldstrat:
    from .evaluate import evaluate_worldstrat

    args.metric = "cpsnr"
    with tqdm(desc="WorldStrat", unit="AOI", leave=False, disable=not sys.stderr.isatty()) as bar:
      results.append(evaluate_worldstrat(model, args.worldstrat, args.split, args.shift_window,
                                         progress=lambda _name: bar.update(), protocol=args.protocol))
  for i, folder in enumerate(args.dirs):
    lr_folder = args.lr_dirs[i] if args.lr_dirs else None
    with tqdm(desc=Path(folder).name, unit="img", leave=False, disable=not sys.stderr.isatty()) as bar:
      results.append(evaluate_folder(model, folder, args.scale, lr_folder, args.space,
                                     progress=lambda _name, bar=bar: bar.update(), metric=args.metric,
                                     window=args.shift_window))
  if args.json:
    doc = {"model": args.model, "scale": args.scale, "metric": args.metric, "datasets": {}}
    for r in results:
      entry = {"psnr": r.psnr, "ssim": r.ssim, "images": len(r.images)}
      if args.per_image:
        entry["per_image"] = {s.name: {"psnr": s.psnr, "ssim": s.ssim} for s in r.images}
      doc["datasets"][r.name] = entry
    print(json.dumps(doc, indent=2))
    return 0
  space = "R, G, B" if args.worldstrat else "Y" if args.space == "y" else "RGB"
  if args.metric == "cpsnr":
    print(f"model {args.model}, x{args.scale}, cPSNR/cSSIM on {space} (shift- and brightness-corrected, "
          f"{args.shift_window} window, peak 1)")
  else:
    print(f"model {args.model}, x{args.scale}, PSNR/SSIM on {space}, shave {args.scale}")
  names = ("cPSNR", "cSSIM") if args.metric == "cpsnr" else ("PSNR", "SSIM")
  for r in results:
    column = max([16, *(len(s.name) for s in r.images)]) if args.per_image else 16
    print(f"\n{r.name} ({len(r.images)} images)")
    print(f"  {'image':<{column}} {names[0]:>8} {names[1]:>7}")
    if args.per_image:
      for s in r.images:
        print(f"  {s.name:<{column}} {s.psnr:8.2f} {s.ssim:7.4f}")
    print(f"  {'mean':<{column}} {r.psnr:8.2f} {r.ssim:7.4f}")
  return 0


def cmd_demo(args: argparse.Namespace) -> int:
  from .data.images import write_image
  from .evaluate import load_pair, score
  from .infer import upscale_array
  from .pretrained import default_model, load_model

  name = args.model or default_model(args.scale)
  model = load_model(name, args.scale, args.channels, args.weights, args.random_init)
  label = Path(name).stem if name.endswith(".safetensors") else name
  lr, hr = load_pair(args.image, args.scale)
  out = Path(args.output)
  out.mkdir(parents=True, exist_ok=True)
  stem = Path(args.image).stem
  sr = upscale_array(model, lr)
  lr_file, sr_file = out / f"{stem}_lr_x{args.scale}.png", out / f"{stem}_x{args.scale}_{label}.png"
  write_image(lr_file, lr)
  write_image(sr_file, sr)
  p, s = score(sr, hr, args.scale)
  print(f"{Path(args.image).name}: {lr.shape[1]}x{lr.shape[0]} -> {sr.shape[1]}x{sr.shape[0]} with {label} "
        f"x{args.scale}: PSNR {p:.2f} dB, SSIM {s:.4f} (Y channel, shave {args.scale})")
  print(f"wrote {lr_file} and {sr_file}")
  return 0


def _crop(text: str) -> tuple[int, int, int]:
  try:
    x, y, size = (int(v) for v in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected X,Y,SIZE in output pixels, got {text!r}") from None
  return y, x, size


def cmd_compare(args: argparse.Namespace) -> int:
  from .compare import compare, draw

  target = Path(args.output)
  if target.exists() and not args.overwrite:
    raise SuperTinyError(f"{target}: already exists (pass --overwrite to replace it)")
  models = [m.strip() for m in args.models.split(",") if m.strip()]
  panels, crop = compare(args.image, args.scale, models, args.given_lr, args.crop)
  kind = "input upscaled" if args.given_lr else "HR degraded with MATLAB bicubic, then upscaled"
  draw(panels, crop, f"{Path(args.image).name}, x{args.scale} ({kind}); PSNR/SSIM on Y", target)
  for p in panels:
    scores = f"  {p.scores[0]:6.2f} dB  {p.scores[1]:.4f}" if p.scores else ""
    print(f"{p.label:<24}{scores}")
  print(f"wrote {target} (crop x={crop[1]} y={crop[0]} size={crop[2]})")
  return 0


def cmd_worldstrat(args: argparse.Namespace) -> int:
  if args.action == "miniature":
    from .data.worldstrat_miniature import write_miniature

    out = write_miniature(args.path, layout=args.layout, seed=args.seed)
    print(f"wrote a miniature WorldStrat root ({args.layout} layout) to {out}")
    return 0
  from .data.worldstrat import WorldStrat

  dataset = WorldStrat(args.path, args.split, revisits=args.revisits, product=args.product)
  print(f"{dataset.root}: {dataset.layout} layout, split {args.split}, {len(dataset)} AOI(s), {args.product}")
  print(f"  {'AOI':<24} {'revisits':>8} {'LR (WxH)':>10} {'HR (WxH)':>10}  clear fraction of the {args.revisits} "
        f"chosen")
  for sample in dataset:
    _, _, height, width = sample.lr.shape
    clear = " ".join(f"{c:.2f}" for c in sample.clear.mean(axis=(1, 2))[: sample.real])
    print(f"  {sample.name:<24} {len(dataset.revisit_files(sample.name)):>8} {f'{width}x{height}':>10} "
          f"{f'{sample.hr.shape[2]}x{sample.hr.shape[1]}':>10}  {clear}")
  return 0


def cmd_sentinel2(args: argparse.Namespace) -> int:
  from . import sentinel2
  from .data.radiometry import RADIOMETRIES
  from .data.sentinel2 import read_scene

  if args.radiometry not in ("auto", *RADIOMETRIES):
    raise SuperTinyError(f"unknown radiometry {args.radiometry!r}; choose from auto, {', '.join(RADIOMETRIES)}")
  if args.action == "sharpen":
    if not args.output:
      raise SuperTinyError("sentinel2 sharpen: give the output GeoTIFF with -o")
    target = Path(args.output)
    if target.exists() and not args.overwrite:
      raise SuperTinyError(f"{target}: exists (--overwrite to replace it)")
    done = sentinel2.sharpen_folder(args.folder, target, {"20m": args.weights, "60m": args.weights_60m},
                                    args.radiometry)
    rows, cols = done["shape"]
    print(f"wrote {target}: {len(done['bands'])} bands ({', '.join(done['bands'])}) at 10 m, {cols}x{rows}, "
          f"{'georeferenced' if done['georeferenced'] else 'no georeferencing'}; {done['radiometry']}")
    for method in done["methods"]:
      print(f"  {method}")
    return 0
  job = sentinel2.JOBS[args.bands]
  if args.figure and job.name != "20m":
    raise SuperTinyError("sentinel2 --figure draws a 20 m band (--bands 20m)")
  scene = read_scene(args.folder, args.radiometry)
  split = sentinel2.split_column(scene, args.train_fraction)
  model, meta = None, {}
  if args.action == "train":
    if not args.out:
      raise SuperTinyError("sentinel2 train: give the weights file to write with --out")
    from tqdm import tqdm

    with tqdm(total=args.steps, desc=f"train bandsharpen {job.name}", unit="step",
              disable=not sys.stderr.isatty()) as bar:
      def progress(step: int, loss: float) -> None:
        bar.update()
        if step % 50 == 0:
          bar.set_postfix(loss=f"{loss:.5f}")

      model, loss = sentinel2.train_sharpener(scene, job, split, steps=args.steps, seed=args.seed, width=args.width,
                                              blocks=args.blocks, progress=progress, cores=args.cores)
  elif args.weights or job.shipped.is_file():
    model, meta = sentinel2.load_sharpener(args.weights, job)
  rows = sentinel2.evaluate(scene, job, model, split)
  if args.action == "train":
    meta = {"trained_on": f"{Path(args.folder).resolve().name}, 10 m columns 0-{split - 1} (Wald's protocol, "
                          f"x{job.ratio})",
            "steps": args.steps, "seed": args.seed, "final_loss": loss,
            "held_back_rmse": {r["band"]: round(r["bandsharpen"], 2) for r in rows}}
    sentinel2.save_sharpener(args.out, model, job, meta)
  if args.figure and model is not None:
    sentinel2.figure(scene, model, split, args.figure, band=args.band)
  if args.json:
    print(json.dumps({"bands": job.name, "held_back_columns": [split, scene.shape[1]],
                      "radiometry": scene.radiometry.description, "rmse_dn": rows,
                      **({"trained_on": meta.get("trained_on")} if meta else {})}, indent=2))
    return 0
  metres = job.ratio * 10
  print(f"held-back columns {split}-{scene.shape[1] - 1} of the 10 m grid; {metres} m bands restored from "
        f"{metres * job.ratio} m (Wald's protocol); RMSE in digital numbers")
  names = list(rows[0])[1:]
  print(f"  {'band':<6}" + "".join(f"{n:>13}" for n in names))
  for row in rows:
    print(f"  {row['band']:<6}" + "".join(f"{row[n]:>13.2f}" for n in names))
  if args.action == "train":
    print(f"wrote {args.out}")
  return 0

def cmd_timeseries(args: argparse.Namespace) -> int:
  from tqdm import tqdm

  from .data.landsat import read_time_series
  from .timeseries import study

  series = read_time_series(args.folder)
  bars: dict[str, tqdm] = {}

  def progress(name: str, step: int, loss: float) -> None:
    bar = bars.setdefault(name, tqdm(total=args.steps, desc=f"train {name}", unit="step", leave=False,
                                     disable=not sys.stderr.isatty()))
    bar.update()
    if step % 50 == 0:
      bar.set_postfix(loss=f"{loss:.4f}")

  result = study(series, scale=args.scale, revisits=args.revisits, steps=args.steps, test_every=args.test_every,
                 seed=args.seed, misregistration=args.misregistration, stacked=args.stacked, figure=args.figure,
                 revisit_dropout=args.revisit_dropout, validate_every=args.validate_every, progress=progress,
                 cores=args.cores)
  for bar in bars.values():
    bar.close()
  if args.json:
    print(json.dumps(result, indent=2))
    return 0
  print(f"{args.folder}: {len(series.dates)} dates; x{args.scale}, {args.revisits} revisits per target "
        f"(misregistered up to {args.misregistration:g} px); "
        f"{result['train_targets']} training targets, {len(result['validation_targets'])} for validation, "
        f"{len(result['test_targets'])} held back; {args.steps} steps")
  if result["validation_targets"]:
    print("  weights kept (best validation cPSNR) from step: "
          + ", ".join(f"{name} {step}" for name, step in result["chosen_step"].items()))
  print(f"  {'method':<34} {'cPSNR':>7} {'cSSIM':>7}")
  for row in result["results"]:
    print(f"  {row['method']:<34} {row['cpsnr']:7.2f} {row['cssim']:7.4f}")
  return 0


def cmd_paper(args: argparse.Namespace) -> int:
  from .paper import FULL, METHODS, QUICK, Budget, ablation, study

  budget = QUICK if args.quick else FULL
  if args.steps is not None:
    budget = Budget(args.steps, budget.batch, budget.patch, budget.cores)
  settings = args.settings.split(",") if args.settings else ["paper", "ours"]
  if args.ablate:
    settings += [s for s in ablation("paper") if s not in settings]
  out = args.out or ("runs/paper-quick" if args.quick else "runs/paper")
  methods = args.methods.split(",") if args.methods else tuple(METHODS)
  result = study(args.data, out, budget, settings, methods, resume=args.resume,
                 devices=_device_list(args.devices) if args.devices else (), report_only=args.report,
                 report=lambda line: print(line, file=sys.stderr), progress=sys.stderr.isatty())
  if args.json:
    print(json.dumps(result["rows"], indent=2))
    return 0
  print(Path(result["written"]["md"]).read_text(), end="")
  print(f"report: {', '.join(str(p) for p in result['written'].values())}")
  return 0


def cmd_export(args: argparse.Namespace) -> int:
  from .checkpoint import export_weights

  meta = export_weights(args.checkpoint, args.output, args.border)
  border = meta.get("options", {}).get("border", "zeros")
  print(f"wrote {args.output}: {meta['model']} x{meta['scale']} ({meta['channels']} channel(s)), weights only, "
        f"border {border}")
  return 0


def _image_limit(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--max-pixels", dest="max_pixels", type=float, metavar="N",
                      help="refuse image files whose header declares more pixels (checked before decoding) "
                           "[$SUPERTINY_MAX_PIXELS or 1.07e9, about a gigapixel]")


TRAINING_CORES_HELP = "on the CPU: data-parallel over this many cores, one thread and CPU device each [all]"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="supertiny", description="Super-resolution in tinygrad.")
  parser.add_argument("--version", action="version", version=f"supertiny {__version__}")
  sub = parser.add_subparsers(dest="command", required=True)

  ev = sub.add_parser("eval", help="score a model on HR image folders by the literature's protocol",
                      description="Each DIR is a folder of HR images named after its dataset. Every image is "
                                  "modcropped, degraded with MATLAB bicubic, super-resolved and scored with "
                                  "PSNR/SSIM on the Y channel with a border shave of SCALE pixels.")
  ev.add_argument("dirs", nargs="*", metavar="DIR", help="folder of HR images")
  ev.add_argument("--worldstrat", metavar="ROOT",
                  help="score on a WorldStrat root instead of folders: each AOI's clearest revisit (true colour) "
                       "upscaled, resampled to the SPOT grid and scored by cPSNR/cSSIM (docs/satellite.md)")
  ev.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                  help="--worldstrat: the split to score [test]")
  ev.add_argument("--protocol", choices=("aoi", "benchmark"), default="aoi",
                  help="--worldstrat: aoi scores each AOI's clearest revisit on the whole SPOT grid; benchmark cuts "
                       "the first revisit into the released benchmark's 9 chips (LR 160, HR 500: x3.125) [aoi]")
  ev.add_argument("--model", default="bicubic", help="model name (see `supertiny zoo`) or checkpoint file [bicubic]")
  ev.add_argument("--scale", type=_positive_int, required=True, help="upscaling factor")
  ev.add_argument("--weights", metavar="FILE", help="weights for a learned model (.pth/.pt state dict, .safetensors)")
  ev.add_argument("--channels", type=_channels,
                  help="learned models: y (or 1) or rgb (or 3) [the shipped weights'; rgb with --random-init]")
  ev.add_argument("--random-init", action="store_true",
                  help="run a learned zoo model from random initialisation (untrained) instead of its shipped weights")
  ev.add_argument("--lr-dir", dest="lr_dirs", action="append", metavar="LR_DIR",
                  help="folder of given LR images matched to DIR by file name (once per DIR)")
  ev.add_argument("--lr", dest="old_lr_dirs", action="append", help=argparse.SUPPRESS)  # deprecated: --lr-dir
  ev.add_argument("--space", choices=("y", "rgb"), default="y", help="score on Y (the literature) or RGB [y]")
  ev.add_argument("--metric", choices=("psnr", "cpsnr"), default="psnr",
                  help="psnr: the literature's protocol; cpsnr: shift- and brightness-corrected PSNR/SSIM for "
                       "satellite pairs (WorldStrat's, symmetric +-2 px search) [psnr]")
  ev.add_argument("--shift-window", choices=("symmetric", "original"), default="symmetric",
                  help="cpsnr: search HR shifts around zero, or WorldStrat's released one-sided window [symmetric]")
  ev.add_argument("--per-image", action="store_true", help="also report every image")
  ev.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
  _image_limit(ev)
  ev.set_defaults(run=cmd_eval)

  demo = sub.add_parser("demo", help="degrade the bundled sample image, upscale it and report PSNR/SSIM")
  demo.add_argument("image", nargs="?", default=str(SAMPLE), help="HR image [bundled butterfly.png]")
  demo.add_argument("--model", help="model name or checkpoint [the best shipped model for the scale]")
  demo.add_argument("--scale", type=_positive_int, default=4, help="upscaling factor [4]")
  demo.add_argument("--weights", metavar="FILE", help="weights for a learned model")
  demo.add_argument("--channels", type=_channels,
                  help="learned models: y (or 1) or rgb (or 3) [the shipped weights'; rgb with --random-init]")
  demo.add_argument("--random-init", action="store_true",
                  help="run a learned zoo model from random initialisation (untrained) instead of its shipped weights")
  demo.add_argument("-o", "--output", default="supertiny-demo", help="output folder [supertiny-demo]")
  demo.set_defaults(run=cmd_demo)

  up = sub.add_parser("upscale", help="upscale image files or folders (any size: tiled), keeping their format",
                      description="Each output keeps its input's format, bit depth, bands and alpha; GeoTIFFs keep "
                                  "their CRS and metadata with the geotransform scaled. Tiles overlap by enough to "
                                  "give exactly the untiled result.")
  up.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
  up.add_argument("-o", "--output", required=True, metavar="OUT",
                  help="output folder (outputs keep their input's name), or a file name for a single input")
  up.add_argument("--model", help="model name or checkpoint file [the best shipped model for the scale]")
  up.add_argument("--scale", type=_positive_int, help="upscaling factor [the checkpoint's, else 4]")
  up.add_argument("--weights", metavar="FILE", help="weights for a learned zoo model")
  up.add_argument("--channels", type=_channels,
                  help="learned zoo models: y (or 1), rgb (or 3), N = N-band images [the shipped weights'; rgb with "
                       "--weights or --random-init]")
  up.add_argument("--random-init", action="store_true",
                  help="run a learned zoo model from random initialisation (untrained) instead of its shipped weights")
  up.add_argument("--tile", type=_positive_int, default=256, help="tile side in input pixels [256]")
  up.add_argument("--tile-overlap", dest="tile_overlap", type=int, metavar="O",
                  help="overlap of neighbouring tiles in input pixels [the model's receptive field; 32 if global]")
  up.add_argument("--device", help="tinygrad device, e.g. CPU or CUDA [$DEV or tinygrad's default]")
  up.add_argument("--overwrite", action="store_true", help="replace outputs that exist")
  up.add_argument("--skip-existing", action="store_true",
                  help="skip outputs that exist (they are complete: outputs are written whole or not at all), so an "
                       "interrupted batch resumes")
  up.add_argument("--dask", action="store_true",
                  help="upscale chunk by chunk on a local Dask cluster (a worker per core); GeoTIFFs are read and "
                       "written by windows, so no process holds a whole raster (pip install 'supertiny[dask]')")
  up.add_argument("--scheduler", metavar="ADDRESS",
                  help="as --dask, on the dask.distributed scheduler at ADDRESS (tcp://host:8786)")
  up.add_argument("--chunk", type=_positive_int, default=1024, help="--dask: chunk side in input pixels [1024]")
  up.add_argument("--radiometry", choices=RADIOMETRY_CHOICES, default="auto", metavar="NAME",
                  help="what the values mean, so the model sees them at the right brightness: auto (the file's "
                       "GDAL scale/offset, else a Landsat MTL beside it or a Sentinel-2 MTD XML above it, else "
                       "dtype), dtype (integers by their type's range, floats by their own), "
                       "reflectance, 12bit, spot12, s2, s2-n0400 (Sentinel-2 from baseline 04.00: DN - 1000), "
                       "landsat-sr, landsat-c2-sr; outputs keep the input's units and dtype [auto]")
  up.add_argument("--jobs", type=_positive_int, default=1,
                  help="files upscaled at once, each in a process with its own copy of the model (use up to the "
                       "number of cores on a CPU; each process takes about 0.5 GiB more) [1]")
  _image_limit(up)
  up.set_defaults(run=cmd_upscale)

  cmp = sub.add_parser("compare", help="side-by-side figure of models on one image, with crops and PSNR/SSIM",
                       description="IMAGE is an HR ground truth, degraded by the protocol and scored (or, with "
                                   "--given-lr, an input to upscale without scores).")
  cmp.add_argument("image", metavar="IMAGE")
  cmp.add_argument("--scale", type=_positive_int, required=True)
  cmp.add_argument("--models", default="nearest,bilinear,bicubic",
                   help="comma-separated model names or checkpoints [nearest,bilinear,bicubic]")
  cmp.add_argument("--given-lr", dest="given_lr", action="store_true", help="IMAGE is the LR input")
  cmp.add_argument("--crop", type=_crop, metavar="X,Y,SIZE", help="crop in output pixels [the most detailed]")
  cmp.add_argument("-o", "--output", required=True, metavar="FIGURE", help="figure file (.png, .pdf, .svg)")
  cmp.add_argument("--overwrite", action="store_true")
  _image_limit(cmp)
  cmp.set_defaults(run=cmd_compare)

  ex = sub.add_parser("export", help="copy a training checkpoint without its optimizer state (to share or ship)")
  ex.add_argument("checkpoint")
  ex.add_argument("output")
  ex.add_argument("--border", choices=BORDERS,
                  help="how the exported model extends images past their edges: the layers' zero padding, or the "
                       "image mirrored (symmetric) by the model's reach [kept from the checkpoint]")
  ex.set_defaults(run=cmd_export)

  tr = sub.add_parser("train", help="train a model (resumable); writes checkpoints and metrics.csv to --out")
  tr.add_argument("--config", help="TOML recipe (configs/*.toml); command-line options override it")
  tr.add_argument("--model", help="model name")
  tr.add_argument("--scale", type=_positive_int)
  tr.add_argument("--channels", type=_channels, help="train on y (or 1) or rgb (or 3) [y]")
  tr.add_argument("--train", nargs="+", metavar="DIR", help="HR training folders (degraded on the fly)")
  tr.add_argument("--worldstrat", metavar="ROOT",
                  help="train on a WorldStrat root instead of folders: its train split (each AOI's clearest revisit, "
                       "true colour, with SPOT resampled to the scale), validated on its val split by cPSNR")
  tr.add_argument("--revisits", type=_positive_int, metavar="K",
                  help="--worldstrat: train on the K clearest revisits stacked (fusion, or any learned model) [1]")
  tr.add_argument("--train-lr", dest="train_lr", metavar="DIR", help="given LR images for a single --train folder")
  tr.add_argument("--rescale", nargs="+", type=float, metavar="F",
                  help="also train on the HR images resized by these factors (0.9 0.8 0.7 0.6: FSRCNN's augmentation)")
  tr.add_argument("--val", metavar="DIR", help="HR validation folder, scored by the eval protocol")
  tr.add_argument("--val-last", dest="val_last", type=int, metavar="N",
                  help="validate on the last N images of --val only, and train without them [0 = all]")
  tr.add_argument("--steps", type=_positive_int)
  tr.add_argument("--batch", type=_positive_int)
  tr.add_argument("--patch", type=_positive_int, help="LR patch side")
  tr.add_argument("--shave", type=_non_negative_int,
                  help="LR pixels at each patch edge left out of the loss (0 = none): train on interior outputs")
  tr.add_argument("--edge-margin", dest="edge_margin", type=_non_negative_int,
                  help="LR pixels of mirror around each training image (at most --shave), so a border=symmetric "
                       "model learns the image edges as it sees them [0]")
  tr.add_argument("--learning-rate", dest="lr", type=float, help="learning rate")
  tr.add_argument("--lr", dest="old_lr", type=float, help=argparse.SUPPRESS)  # deprecated: --learning-rate
  tr.add_argument("--loss", choices=LOSSES)
  tr.add_argument("--optimizer", choices=("adam", "adamw"))
  tr.add_argument("--schedule", choices=("constant", "step", "cosine"))
  tr.add_argument("--warmup", type=int)
  tr.add_argument("--clip", type=float, help="clip the gradients' global norm (0 = off)")
  tr.add_argument("--ema", type=float, metavar="DECAY",
                  help="validate and keep as best an exponential moving average of the weights with this decay per "
                       "step (0.999 is common) [0 = off]")
  tr.add_argument("--seed", type=int)
  tr.add_argument("--init", metavar="CHECKPOINT",
                  help="start from this SuperTiny checkpoint's weights (fine-tuning; a fresh optimizer and schedule)")
  tr.add_argument("--val-every", dest="val_every", type=_positive_int)
  tr.add_argument("--save-every", dest="save_every", type=_positive_int)
  tr.add_argument("--devices", metavar="N|DEV,DEV",
                  help="data-parallel over N devices of the default backend or the named ones (CUDA:0,CUDA:1)")
  tr.add_argument("--cores", type=_positive_int, help=TRAINING_CORES_HELP)
  tr.add_argument("--no-cache", dest="no_cache", action="store_true",
                  help="do not keep degraded LR images on disk ($SUPERTINY_CACHE, ~/.cache/supertiny/degraded)")
  tr.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
  tr.add_argument("--resume", action="store_true", help="continue the run in --out from last.safetensors")
  _image_limit(tr)
  tr.set_defaults(run=cmd_train)

  ws = sub.add_parser("worldstrat", help="WorldStrat satellite data: write a miniature root, or list a root's AOIs",
                      description="`worldstrat miniature OUT` writes a small WorldStrat root in the release's exact "
                                  "layout (for trying the tools and for tests); `worldstrat info ROOT` lists a "
                                  "split's AOIs with their revisits and clear fractions.")
  ws.add_argument("action", choices=("miniature", "info"))
  ws.add_argument("path", help="miniature: the folder to write; info: a WorldStrat root (Zenodo or Kaggle layout)")
  ws.add_argument("--layout", choices=("zenodo", "kaggle"), default="zenodo", help="miniature: layout [zenodo]")
  ws.add_argument("--seed", type=int, default=0, help="miniature: seed of the synthetic scenes [0]")
  ws.add_argument("--split", choices=("train", "val", "test", "all"), default="all", help="info: split [all]")
  ws.add_argument("--revisits", type=_positive_int, default=8, help="info: revisits per AOI, clearest first [8]")
  ws.add_argument("--product", choices=("L2A", "L1C"), default="L2A", help="info: Sentinel-2 product [L2A]")
  ws.set_defaults(run=cmd_worldstrat)

  s2p = sub.add_parser("sentinel2", help="Sentinel-2 band super-resolution: every band to 10 m as one GeoTIFF, "
                                          "the 20 m bands sharpened by a network learned by Wald's protocol",
                       description="`sentinel2 sharpen FOLDER -o OUT.tif` reads a scene's band files (a .SAFE "
                                   "product or a folder of *_B02.jp2 ... files) and writes all bands at 10 m: the 10 m "
                                   "bands unchanged, B05, B06, B07, B8A, B11 and B12 sharpened by one band sharpener, "
                                   "B01 and B09 by another, B10 by bicubic. `sentinel2 train FOLDER --out "
                                   "W.safetensors [--bands 60m]` trains one on the scene's left part (the bands "
                                   "restored from their degraded selves, Wald's protocol) and scores it on "
                                   "the held-back right part; `sentinel2 evaluate FOLDER` scores saved weights "
                                   "there against bicubic (docs/satellite.md). Needs rasterio: "
                                   "pip install 'supertiny[geo]'.")
  s2p.add_argument("action", choices=("sharpen", "train", "evaluate"))
  s2p.add_argument("folder", help="folder holding the scene's band files (searched recursively)")
  s2p.add_argument("-o", "--output", help="sharpen: the GeoTIFF to write")
  s2p.add_argument("--overwrite", action="store_true", help="sharpen: replace an existing output")
  s2p.add_argument("--weights", help="sharpen, evaluate: a band sharpener's weights (for sharpen: the 20 m one) "
                                     "[the shipped one]")
  s2p.add_argument("--weights-60m", help="sharpen: the 60 m band sharpener's weights [the shipped one, if any]")
  s2p.add_argument("--bands", choices=("20m", "60m"), default="20m",
                   help="train, evaluate: the 20 m bands (ratio 2) or B01 and B09 (60 m, ratio 6) [20m]")
  s2p.add_argument("--out", help="train: the weights file to write")
  s2p.add_argument("--radiometry", default="auto",
                   help="what the digital numbers mean: auto (the product's MTD XML, else s2), s2 (before "
                        "processing baseline 04.00), s2-n0400 (offset 1000) [auto]")
  s2p.add_argument("--train-fraction", type=float, default=2 / 3,
                   help="train, evaluate: the left fraction of the scene trained on; the rest is held back [0.667]")
  s2p.add_argument("--steps", type=_positive_int, default=3000, help="train: steps [3000]")
  s2p.add_argument("--seed", type=int, default=0, help="train: seed [0]")
  s2p.add_argument("--width", type=_positive_int, default=32, help="train: feature maps [32]")
  s2p.add_argument("--blocks", type=int, default=4, help="train: residual blocks [4]")
  s2p.add_argument("--figure", metavar="PNG", help="train, evaluate: also draw one band on a held-back crop, from 40 m "
                                                   "and at 10 m, beside bicubic and the truth")
  s2p.add_argument("--band", choices=("B05", "B06", "B07", "B8A", "B11", "B12"), default="B11",
                   help="--figure: the band to draw [B11]")
  s2p.add_argument("--json", action="store_true", help="train, evaluate: print one JSON document")
  s2p.add_argument("--cores", type=_positive_int, help="train: " + TRAINING_CORES_HELP)
  s2p.set_defaults(run=cmd_sentinel2)

  tsp = sub.add_parser("timeseries", help="multi-revisit study on a Landsat time series: fusion vs single-image vs "
                                           "bicubic, by cPSNR on held-back clear dates",
                       description="Clear dates are HR targets; their nearest dates, degraded by --scale, are the LR "
                                   "revisits. Trains the fusion model on the clearest revisit alone (single-image) "
                                   "and on all --revisits, and scores both and bicubic on held-back targets "
                                   "(docs/satellite.md).")
  tsp.add_argument("folder", help="folder of Landsat scene folders (<scene id>/<scene id>_b3.tif, _b4, _b5, _fmask)")
  tsp.add_argument("--scale", type=_positive_int, default=2, help="degradation factor [2]")
  tsp.add_argument("--revisits", type=_positive_int, default=4, help="LR revisits per target [4]")
  tsp.add_argument("--steps", type=_positive_int, default=2000, help="training steps per model [2000]")
  tsp.add_argument("--test-every", type=_positive_int, default=3, help="hold back every Nth clear date [3]")
  tsp.add_argument("--validate-every", type=_non_negative_int, default=4, metavar="N",
                   help="keep every Nth training target out of training to choose each model's weights by its "
                        "cPSNR there (0: keep the last step's) [4]")
  tsp.add_argument("--seed", type=int, default=0, help="seed of initialisation and patches [0]")
  tsp.add_argument("--misregistration", type=float, default=1.0, metavar="PX",
                   help="each date, as a revisit, moves by a random offset of up to PX HR pixels per axis before it "
                        "is degraded, as real revisits do [1.0]")
  tsp.add_argument("--stacked", metavar="MODEL",
                   help="also train this zoo model on the clearest revisit and on the revisits stacked as input "
                        "channels (revisits=k), e.g. espcn")
  tsp.add_argument("--revisit-dropout", action="store_true",
                   help="train the fusion model on every target twice: with all its revisits and with the reference "
                        "alone (an ablation; it did not help on the Landsat series)")
  tsp.add_argument("--figure", metavar="PNG", help="draw the first held-back target: revisits, predictions, truth")
  tsp.add_argument("--json", action="store_true", help="print one JSON document (with per-date scores)")
  tsp.add_argument("--cores", type=_positive_int, help=TRAINING_CORES_HELP)
  tsp.set_defaults(run=cmd_timeseries)

  pp = sub.add_parser("paper", help="the seed paper's study: five methods and three interpolations, trained in the "
                                     "paper's setting and ours (resumable; docs/paper.md)",
                      description="Trains single-kernel, transposed-conv, srcnn (5-5-3), espcn and conv-transformer "
                                  "x4 on a fixed set of photo pairs in each setting, scores them and nearest, linear "
                                  "and bicubic on the test pairs, and writes results.{md,csv,json} and figures to "
                                  "--out. Settings: 'paper', 'ours', or either with switches changed: "
                                  "paper+loss (our loss), ours+batchnorm=running; switches: batchnorm, loss, "
                                  "schedule, clip, augment, residual, tokens, head (docs/paper.md).")
  pp.add_argument("--data", default="../shared/datasets/BSDS200",
                  help="photos to make 100 pairs from (centre 320x320 crops, 80 train / 20 test), or a folder of "
                       "pairs as it is: train/{LR,HR} and test/{LR,HR} (or val, low_res/high_res), or one {LR,HR} "
                       "pool split by name, or a WorldStrat root (its benchmark chips) [../shared/datasets/BSDS200]")
  pp.add_argument("--out", help="study folder [runs/paper, or runs/paper-quick with --quick]")
  pp.add_argument("--quick", action="store_true",
                  help="25 steps of batch 4 on 24x24 LR patches, one core (minutes, not days)")
  pp.add_argument("--steps", type=_positive_int, help="training steps per run [2000; 25 with --quick]")
  pp.add_argument("--settings", help="comma-separated settings [paper,ours]")
  pp.add_argument("--ablate", action="store_true", help="add the paper's setting with each switch changed alone")
  pp.add_argument("--methods", help="comma-separated methods [all: single-kernel,transposed-conv,srcnn,espcn,"
                                    "conv-transformer]")
  pp.add_argument("--devices", metavar="N|DEV,DEV", help="train data-parallel over these devices (as train does)")
  pp.add_argument("--resume", action="store_true", help="continue unfinished runs (finished ones are kept)")
  pp.add_argument("--report", action="store_true", help="only score the runs there are and rewrite the report")
  pp.add_argument("--json", action="store_true", help="print the table's rows as JSON")
  pp.set_defaults(run=cmd_paper)

  zoo = sub.add_parser("zoo", help="list every model with its parameter count, receptive field and scales")
  zoo.add_argument("--scale", type=_positive_int, default=4, help="scale to size the models for [4]")
  zoo.add_argument("--channels", type=_channels, default=3, help="channels of learned models: y/1 or rgb/3 [rgb]")
  zoo.add_argument("--json", action="store_true", help="print one JSON document")
  zoo.set_defaults(run=cmd_zoo)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  warnings.showwarning = _one_line_warnings
  logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # a damaged TIFF gets our one line, not its log too
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, raise_terminated)
  if getattr(args, "max_pixels", None) is not None:
    os.environ["SUPERTINY_MAX_PIXELS"] = str(int(args.max_pixels))  # worker processes inherit it
  try:
    if getattr(args, "device", None):
      from tinygrad import Context

      from .runtime.devices import open_device

      open_device(args.device)
      with Context(DEV=args.device):
        return args.run(args)
    return args.run(args)
  except SuperTinyError as exc:
    print(f"supertiny: error: {exc}", file=sys.stderr)
    return 1
  except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): temporary files are gone, workers ended
    terminated = isinstance(exc, Terminated)
    print(f"supertiny: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
    return 143 if terminated else 130
