"""Archive-scale upscaling on Dask, measured as users run it: `supertiny upscale --dask` on a one-band uint8
GeoTIFF (a smooth texture, written by windows so that no process holds it whole), x2 with espcn_x2_y.

For each size: the command on a LocalCluster of one worker and of two (single-threaded processes, one core each),
wall time from process start and throughput with the workers warm (the command's own time minus its first chunk's
kernel compilation is not separated: each worker compiles once, and both runs pay it); each worker's peak resident
memory (read from the workers before the cluster closes, via `supertiny.dask`'s Python API on the same file);
the throughput from the first chunk written to the last (steady, with the workers' kernels compiled);
and the output checked window by window against `supertiny.upscale` on the same window with a margin wider than
the model's reach (tiling is exact, so that is the single-process result there).

  .venv/bin/python benchmarks/dask_scale.py --sizes 5000            # quick: one size
  .venv/bin/python benchmarks/dask_scale.py --sizes 5000,20000 --json
  .venv/bin/python benchmarks/dask_scale.py --sizes 5000 --format zarr   # the workers write the chunks
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "espcn_x2_y"


def write_texture(path: Path, side: int, block: int = 2048) -> None:
  """A side x side uint8 GeoTIFF of a smooth texture with noise, written block by block."""
  import rasterio
  from rasterio.transform import from_origin
  from rasterio.windows import Window

  rng = np.random.default_rng(0)
  with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8", tiled=True,
                     blockxsize=512, blockysize=512, crs="EPSG:32633",
                     transform=from_origin(330000, 5822040, 10, 10), BIGTIFF="IF_SAFER") as out:
    for y in range(0, side, block):
      for x in range(0, side, block):
        h, w = min(block, side - y), min(block, side - x)
        yy, xx = np.mgrid[y:y + h, x:x + w]
        values = 120 + 70 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + 30 * np.sin((xx + yy) / 7.0)
        values += rng.normal(0, 8, (h, w))
        out.write(np.clip(values, 0, 255).astype(np.uint8)[None], window=Window(x, y, w, h))


def run_cli(source: Path, target: Path, workers: int, chunk: int) -> dict:
  """`supertiny upscale --dask` with `workers` single-threaded workers (a scheduler of our own, so the worker count
  is fixed), as a fresh process; wall time and the workers' peak RSS."""
  script = f"""
import resource, sys, time
from distributed import Client, LocalCluster
import supertiny.dask
finished = []
plain = supertiny.dask.upscale_file_chunked
def recorded(*args, progress=None, **kwargs):  # chunk completion times, for the steady throughput
  def on_chunk(done, total):
    finished.append((time.perf_counter(), total))
    if progress is not None:
      progress(done, total)
  return plain(*args, progress=on_chunk, **kwargs)
supertiny.dask.upscale_file_chunked = recorded
start = time.perf_counter()
with LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
  from supertiny.cli import main
  code = main(["upscale", "--scheduler", cluster.scheduler_address, "--chunk", "{chunk}", "--model", "{MODEL}",
               "--overwrite", "{source}", "-o", "{target}"])
  seconds = time.perf_counter() - start
  with Client(cluster) as client:
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
steady = (len(finished) - 1) / (finished[-1][0] - finished[0][0]) / finished[-1][1]  # images per second
usage = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT", code, seconds, max(peaks.values()), usage.ru_maxrss / 1024, steady, usage.ru_utime + usage.ru_stime)
"""
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
  line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
  _, code, seconds, worker_peak, client_peak, steady, client_cpu = line.split()
  if code != "0":
    raise SystemExit(f"upscale --dask failed:\n{done.stderr[-2000:]}")
  return {"workers": workers, "seconds": float(seconds), "worker_peak_rss_mib": float(worker_peak),
          "client_peak_rss_mib": float(client_peak), "steady_images_per_s": float(steady),
          "client_cpu_s": float(client_cpu)}


def read_window(target: Path, opened, y: int, x: int, size: int) -> np.ndarray:
  """size x size output pixels at (y, x): from the GeoTIFF by a window, or from the Zarr store's `data`."""
  if opened is not None:
    from rasterio.windows import Window

    return opened.read(1, window=Window(x, y, size, size))
  import zarr

  return zarr.open_group(str(target), mode="r")["data"][0, y: y + size, x: x + size]


def check_windows(source: Path, target: Path, count: int = 5, size: int = 300) -> int:
  """Windows of the output (corners and random ones) against supertiny.upscale of the same window with a margin;
  returns how many were checked (raises on a difference)."""
  import rasterio
  from rasterio.windows import Window

  import supertiny
  from supertiny.pretrained import load_model
  from supertiny.runtime.runner import reach

  model = load_model(MODEL)
  margin = 2 * reach(model, 1, False) + 8
  s = model.scale
  out = None if target.suffix == ".zarr" else rasterio.open(target)
  with rasterio.open(source) as src:
    side = src.width
    rng = np.random.default_rng(1)
    corners = [(0, 0), (0, side - size), (side - size, 0), (side - size, side - size)]
    spots = corners + [tuple(int(v) for v in rng.integers(0, side - size, 2)) for _ in range(count)]
    for y, x in spots:
      y0, x0 = max(0, y - margin), max(0, x - margin)
      y1, x1 = min(side, y + size + margin), min(side, x + size + margin)
      piece = src.read(1, window=Window(x0, y0, x1 - x0, y1 - y0))
      whole = supertiny.upscale(piece, model=model)
      expected = whole[(y - y0) * s:(y - y0 + size) * s, (x - x0) * s:(x - x0 + size) * s]
      got = read_window(target, out, y * s, x * s, size * s)
      if not np.array_equal(got, expected):
        raise SystemExit(f"window at ({y}, {x}) differs from the single-process result")
  return len(spots)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="5000", help="comma-separated raster sides [5000]")
  parser.add_argument("--workers", default="1,2", help="comma-separated worker counts [1,2]")
  parser.add_argument("--chunk", type=int, default=1024, help="--chunk of upscale --dask [1024]")
  parser.add_argument("--format", choices=("tif", "zarr"), default="tif",
                      help="output: a GeoTIFF written by the command, or a Zarr store written by the workers [tif]")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory(prefix="supertiny-dask-") as tmp:
    for side in map(int, args.sizes.split(",")):
      source, target = Path(tmp) / f"in_{side}.tif", Path(tmp) / f"out_{side}.{args.format}"
      began = time.perf_counter()
      write_texture(source, side)
      print(f"{side}x{side}: input written in {time.perf_counter() - began:.1f} s", file=sys.stderr)
      runs = [run_cli(source, target, int(w), args.chunk) for w in args.workers.split(",")]
      checked = check_windows(source, target)
      for run in runs:
        rows.append({"side": side, "megapixels_in": side * side / 1e6, **run,
                     "megapixels_per_s": side * side / 1e6 / run["seconds"],
                     "steady_megapixels_per_s": side * side / 1e6 * run.pop("steady_images_per_s"),
                     "windows_checked": checked})
  base = {r["side"]: r for r in rows if r["workers"] == min(int(w) for w in args.workers.split(","))}
  for r in rows:
    r["speedup"] = r["megapixels_per_s"] / base[r["side"]]["megapixels_per_s"]
    r["steady_speedup"] = r["steady_megapixels_per_s"] / base[r["side"]]["steady_megapixels_per_s"]
  if args.json:
    print(json.dumps(rows, indent=2))
    return
  print(f"{'side':>6} {'workers':>7} {'seconds':>8} {'MP/s in':>8} {'speed-up':>8} {'steady MP/s':>11} "
        f"{'speed-up':>8} {'worker peak MiB':>16} {'client peak MiB':>16} {'windows equal':>13}")
  for r in rows:
    print(f"{r['side']:>6} {r['workers']:>7} {r['seconds']:>8.1f} {r['megapixels_per_s']:>8.3f} {r['speedup']:>8.2f} "
          f"{r['steady_megapixels_per_s']:>11.3f} {r['steady_speedup']:>8.2f} {r['worker_peak_rss_mib']:>16.0f} "
          f"{r['client_peak_rss_mib']:>16.0f} {r['windows_checked']:>13}")
  print("seconds: the command from process start (cluster, model load and each worker's kernel compilation "
        "included); steady: from the first chunk written to the last")
  print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak)")


if __name__ == "__main__":
  main()
