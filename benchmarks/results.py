"""The results table of the shipped weights, from `supertiny eval` itself, beside bicubic and the published rows.

  .venv/bin/python benchmarks/results.py          # writes docs/results.md and supertiny/weights/scores.json
  .venv/bin/python benchmarks/results.py --fresh  # the same, scoring every file again

Scores are kept in benchmarks/results_cache.json by each checkpoint's content hash and scale, so a file scored
before (the runs under way, the weights that did not change) is not run again; bicubic's by name. --fresh
ignores the cache, as after a change to the evaluation itself.

For every checkpoint in supertiny/weights/ and for bicubic at its scale, runs `supertiny eval --json` on the
bundled Set5 and Set14 (Y channel, shave = scale: the literature's protocol) and records PSNR/SSIM and how the
weights were trained (their metadata). `supertiny zoo` lists the scores.json figures beside the shipped names;
tests/test_upscaling.py checks them against a fresh eval.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supertiny.checkpoint import read_checkpoint  # noqa: E402
from supertiny.pretrained import WEIGHTS  # noqa: E402

SETS = [ROOT / "tests" / "assets" / "Set5", ROOT / "tests" / "assets" / "Set14"]
RUNS = ROOT / "training"  # resumable runs committed between sessions (docs/training.md, "Runs under way")
# Published Set5 / Set14 Y PSNR of the same architectures (../shared/REFERENCE.md, from the papers)
# (no ESPCN row at x2, nor from 91 images at x4: the 91-image SRCNN 9-1-5 row is the floor issue #10 sets there)
PUBLISHED = {
  ("espcn", 3): "ESPCN, 91 images: 32.55 / 29.08",
  ("espcn", 4): "SRCNN 9-1-5, 91 images: 30.09 / 27.20; ESPCN, ImageNet: 30.90 / 27.73",
  ("espcn", 2): "SRCNN 9-1-5, 91 images: 36.34 / 32.18 (no ESPCN x2 row)",
  ("fsrcnn", 2): "FSRCNN, 91 images: 36.94 (Set5 only)",
  ("fsrcnn", 3): "FSRCNN, 91 images: 33.06 (Set5 only)",
  ("fsrcnn", 4): "FSRCNN, 91 images: 30.55 (Set5 only)",
  ("srcnn", 2): "SRCNN 9-1-5, 91 images: 36.34 / 32.18; 9-5-5, ImageNet: 36.66 / 32.42",
  ("srcnn", 3): "SRCNN 9-1-5, 91 images: 32.39 / 29.00; 9-5-5, ImageNet: 32.75 / 29.28",
  ("srcnn", 4): "SRCNN 9-1-5, 91 images: 30.09 / 27.20; 9-5-5, ImageNet: 30.48 / 27.49",
  ("single-kernel", 4): "none (the seed paper's model; the issue asks bicubic + 0.5 dB on Set5)",
  ("transposed-conv", 4): "none (the seed paper's model; the issue asks bicubic + 0.5 dB on Set5)",
  ("vdsr", 3): "VDSR, 291 images: 33.66 / 29.77",
  ("edsr-baseline", 4): "EDSR-baseline, DIV2K: 32.09 / 28.58",
}


CACHE = Path(__file__).resolve().with_name("results_cache.json")  # scores by file content and scale (--fresh: none)


def _cache_key(model: str, scale: int) -> str:
  """A checkpoint's content hash (a file, or a shipped name), else the model's name (bicubic), with the scale."""
  file = ROOT / model if (ROOT / model).is_file() else WEIGHTS / f"{model}.safetensors"
  return f"{hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else model} x{scale}"


def evaluate(model: str, scale: int, cache: dict[str, dict] | None = None) -> dict[str, dict[str, float]]:
  """Set5 and Set14 Y PSNR/SSIM from `supertiny eval --json`; a `cache` answers for a file scored before."""
  key = _cache_key(model, scale)
  if cache is not None and all(folder.name in cache.get(key, {}) for folder in SETS):
    return {folder.name: cache[key][folder.name] for folder in SETS}  # the cache file sorts its keys
  done = subprocess.run([sys.executable, "-m", "supertiny", "eval", "--model", model, "--scale", str(scale),
                         "--json", *map(str, SETS)], capture_output=True, text=True, check=True, cwd=ROOT)
  measured = {name: {"psnr": d["psnr"], "ssim": d["ssim"]} for name, d in json.loads(done.stdout)["datasets"].items()}
  if cache is not None:
    cache[key] = measured
  return measured


def runs_under_way(cache: dict[str, dict] | None = None) -> list[str]:
  """A row for every unfinished run in training/: its step, wall time and best validation so far, Set5/Set14 of
  its best checkpoint (of its latest one before any validation), and the wall time the rest would take at its pace
  so far."""
  rows = []
  for last in sorted(RUNS.glob("**/last.safetensors")):
    meta, _ = read_checkpoint(last)
    config, step = meta.get("config", {}), int(meta["step"])
    total = int(config.get("steps", step))
    if step >= total or not config.get("val"):
      continue  # finished, or never validated (the paper study's runs are scored by `supertiny paper`)
    best, best_file = meta.get("best") or {}, last.with_name("best.safetensors")
    validated = bool(best.get("step")) and best_file.is_file()
    # before its first validation a run is scored on its latest weights: progress, not a choice
    scored = best_file if validated else last
    scale, seconds = int(meta["scale"]), float(meta.get("seconds", 0.0))
    measured = evaluate(str(scored.relative_to(ROOT)), scale, cache)
    rest = (total - step) * seconds / max(step, 1) / 3600
    validation = f"{best['psnr']:.3f} dB at {int(best['step']):,}" if validated else "none yet (latest scored)"
    rows.append(f"| `{last.parent.relative_to(ROOT)}` | {meta['model']} x{scale} | {step:,} of {total:,} | "
                f"{seconds / 3600:.1f} h | {validation} | "
                f"{measured['Set5']['psnr']:.2f} / {measured['Set14']['psnr']:.2f} | "
                f"{PUBLISHED.get((meta['model'], scale), '-')} | {rest:.1f} h |")
  return rows


def wheel_size() -> int:
  """Bytes of the package's wheel, built into a temporary folder."""
  with tempfile.TemporaryDirectory() as folder:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", folder, str(ROOT)], check=True,
                   capture_output=True)
    return sum(f.stat().st_size for f in Path(folder).glob("*.whl"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--fresh", action="store_true", help="score every file again, ignoring results_cache.json")
  args = parser.parse_args()
  cache = {} if args.fresh or not CACHE.is_file() else json.loads(CACHE.read_text())
  scores, rows = {}, []
  for path in sorted(WEIGHTS.glob("*.safetensors")):
    meta, _ = read_checkpoint(path)
    scale, config = int(meta["scale"]), meta.get("config", {})
    measured, bicubic = evaluate(path.stem, scale, cache), evaluate("bicubic", scale, cache)
    scores[path.stem] = measured
    data = ", ".join(Path(folder).name for folder in config.get("train") or [config.get("worldstrat") or "?"])
    if config.get("rescale"):
      data += f" (also at {', '.join(f'{f:g}' for f in config['rescale'])} of its size)"
    interior = f", patch edges of {config['shave']} pixels out of the loss" if config.get("shave") else ""
    if config.get("edge_margin"):
      interior += f", images mirrored by {config['edge_margin']} pixels to train their edges"
    tuned = f" ({config.get('loss')} loss{interior}, from {config['init']})" if config.get("init") else interior
    recipe = (f"{config.get('steps')} steps x batch {config.get('batch')} on {data}{tuned}, best at step "
              f"{meta.get('step')}, validated on {config.get('val')}"
              + (f" (last {config['val_last']})" if config.get("val_last") else "")
              + (f"; {float(meta['seconds']) / 3600:.1f} h wall time, {meta.get('device', '?')}" if "seconds" in meta
                 else "; wall time not recorded")
              + ("; image edges mirrored (border symmetric)" if meta.get("options", {}).get("border") == "symmetric"
                 else ""))
    rows.append(f"| `{path.stem}` | x{scale} | {measured['Set5']['psnr']:.2f} / {measured['Set5']['ssim']:.4f} | "
                f"{measured['Set14']['psnr']:.2f} / {measured['Set14']['ssim']:.4f} | "
                f"{bicubic['Set5']['psnr']:.2f} / {bicubic['Set14']['psnr']:.2f} | "
                f"{PUBLISHED.get((meta['model'], scale), '-')} | {recipe} |")
  (WEIGHTS / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
  doc = ["# Results of the shipped weights", "",
         "Generated by `.venv/bin/python benchmarks/results.py` from `supertiny eval --json` on the bundled Set5 "
         "and Set14 (Y channel, shave = scale, MATLAB-bicubic degradation: the literature's protocol). Nothing was "
         "selected on Set5 or Set14 unless the recipe column says so.", "",
         "| weights | scale | Set5 PSNR / SSIM | Set14 PSNR / SSIM | bicubic Set5 / Set14 | published | training |",
         "|---|---|---|---|---|---|---|", *rows, "",
         f"Every file the package ships in supertiny/weights/ (these and the satellite models in its subfolders): "
         f"{sum(f.stat().st_size for f in WEIGHTS.rglob('*') if f.is_file()) / 1024:.0f} kB. The whole wheel "
         f"(`.venv/bin/pip wheel --no-deps -w dist .`): {wheel_size() / 1e6:.1f} MB.", "",
         "## Runs under way", "",
         "Unfinished runs committed in training/ (resumed with `--resume`, docs/training.md), scored on their best "
         "checkpoint so far (chosen on validation: the last 10 of BSDS200), or on their latest before the first "
         "validation. Wall time is this CPU's (2 cores), "
         "often shared with other runs; the rest is estimated at the run's own pace so far.", "",
         "| run | model | step | wall time | best validation | Set5 / Set14 of best | published | rest, est. |",
         "|---|---|---|---|---|---|---|---|", *runs_under_way(cache), ""]
  (ROOT / "docs" / "results.md").write_text("\n".join(doc))
  CACHE.write_text(json.dumps(cache, indent=2, sort_keys=True) + "\n")
  print("\n".join(rows))


if __name__ == "__main__":
  main()
