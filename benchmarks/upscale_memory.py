"""Peak memory and time of tiled upscaling for large inputs on this machine.

Each case runs in a fresh process, so its peak resident memory (ru_maxrss) is its own. The input is the bundled
sample tiled out to SIDE x SIDE (RGB, uint8); the output stays in memory as the API returns it.

  .venv/bin/python benchmarks/upscale_memory.py                   # 2000 and 8000 px, the default x3 model
  .venv/bin/python benchmarks/upscale_memory.py --sizes 2000 --models bicubic,espcn_x3_y --tile 512 --json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASE = r"""
import json, resource, sys, time
import numpy as np
from supertiny.data.images import read_image
from supertiny.infer import upscale_tiled
from supertiny.pretrained import load_model
import supertiny

side, name, scale, tile = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from pathlib import Path
sample = read_image(Path(supertiny.__file__).parent / "samples" / "butterfly.png")
image = np.tile(sample, (side // sample.shape[0] + 1, side // sample.shape[1] + 1, 1))[:side, :side].copy()
model = load_model(name, scale, random_init=True)  # a zoo name without shipped weights: speed and memory only
upscale_tiled(model, image[:tile, :tile], tile=tile)        # compile the tile's kernels outside the timing
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
began = time.perf_counter()
out = upscale_tiled(model, image, tile=tile)
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"side": side, "model": name, "scale": scale, "tile": tile, "seconds": seconds,
                  "megapixels_per_s": side * side / 1e6 / seconds, "peak_rss_mib": peak,
                  "rss_before_mib": before, "input_mib": image.nbytes / 2**20, "output_mib": out.nbytes / 2**20}))
"""


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="2000,8000", help="input sides in pixels [2000,8000]")
  parser.add_argument("--models", default="espcn_x3_y", help="models or checkpoints [espcn_x3_y]")
  parser.add_argument("--scale", type=int, default=3)
  parser.add_argument("--tile", type=int, default=256)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  rows = []
  for name in args.models.split(","):
    for side in map(int, args.sizes.split(",")):
      done = subprocess.run([sys.executable, "-c", CASE, str(side), name, str(args.scale), str(args.tile)],
                            capture_output=True, text=True)
      if done.returncode != 0:
        sys.exit(f"{name} at {side}px failed:\n{done.stderr}")
      rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
      if not args.json:
        r = rows[-1]
        print(f"{r['model']:<12} x{r['scale']} {side:>5}x{side:<5} tile {r['tile']}: {r['seconds']:8.1f} s "
              f"({r['megapixels_per_s']:.3f} MP/s in)  peak RSS {r['peak_rss_mib']:8.0f} MiB  "
              f"(input {r['input_mib']:.0f} MiB, output {r['output_mib']:.0f} MiB)", flush=True)
  if args.json:
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
  main()
