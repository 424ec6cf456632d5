"""Peak memory of `supertiny eval` as images of new sizes keep coming: one image against `--count` images of as many
different sizes (crops of Set14), each run a fresh process, peak RSS from the operating system.

  .venv/bin/python benchmarks/eval_memory.py --model vdsr --channels 1 --scale 2 --count 50

Prints each run's peak RSS and wall time, and the ratio (the target: at most 1.2).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_folder(folder: Path, count: int, seed: int = 0) -> None:
  """`count` crops of Set14 images, each of a size no other has (sides from 96 to 96 + 4 * count)."""
  sources = sorted((ROOT / "tests" / "assets" / "Set14").glob("*.png"))
  rng = np.random.default_rng(seed)
  folder.mkdir(parents=True)
  for i in range(count):
    image = np.asarray(Image.open(sources[i % len(sources)]).convert("RGB"))
    h = min(image.shape[0], 96 + 4 * i)
    w = min(image.shape[1], 96 + 4 * ((i * 7) % count))
    y, x = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - w + 1)
    Image.fromarray(image[y:y + h, x:x + w]).save(folder / f"img{i:03d}.png")


def peak_rss(args: list[str]) -> tuple[float, float]:
  """(peak RSS in MiB, wall seconds) of `supertiny eval ARGS` in a fresh process."""
  code = ("import resource, sys; from supertiny.cli import main; code = main(sys.argv[1:]); "
          "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
  start = time.perf_counter()
  done = subprocess.run([sys.executable, "-c", code, "eval", *args], capture_output=True, text=True, check=True)
  wall = time.perf_counter() - start
  peak = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK"))
  return peak / 1024, wall


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="vdsr")
  parser.add_argument("--channels", default="1")
  parser.add_argument("--scale", default="2")
  parser.add_argument("--count", type=int, default=50)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  options = ["--model", args.model, "--channels", args.channels, "--scale", args.scale]
  if not args.model.endswith(".safetensors") and "_x" not in args.model:
    options.append("--random-init")  # memory does not depend on the weights: any zoo model, shipped or not
  with tempfile.TemporaryDirectory() as tmp:
    many, one = Path(tmp) / "many", Path(tmp) / "one"
    make_folder(many, args.count)
    one.mkdir()
    biggest = max(many.iterdir(), key=lambda p: Image.open(p).size[0] * Image.open(p).size[1])
    (one / biggest.name).write_bytes(biggest.read_bytes())
    one_rss, one_wall = peak_rss([*options, str(one)])
    many_rss, many_wall = peak_rss([*options, str(many)])
  result = {"model": args.model, "scale": int(args.scale), "one_image_mib": round(one_rss),
            "one_image_s": round(one_wall, 1), "images": args.count, "many_images_mib": round(many_rss),
            "many_images_s": round(many_wall, 1), "ratio": round(many_rss / one_rss, 3)}
  if args.json:
    print(json.dumps(result))
  else:
    print(f"{args.model} x{args.scale}: one image (the largest) {one_rss:.0f} MiB in {one_wall:.1f} s; "
          f"{args.count} images of {args.count} sizes {many_rss:.0f} MiB in {many_wall:.1f} s; "
          f"ratio {many_rss / one_rss:.2f} (target <= 1.2)")


if __name__ == "__main__":
  resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
  main()
