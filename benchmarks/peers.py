"""SuperTiny's product paths beside what users would run instead, in one run on this machine.

  .venv/bin/pip install -e ".[test,bench]"      # PyTorch (test extra) and OpenCV with dnn_superres (bench extra)
  .venv/bin/python benchmarks/peers.py           # --json for one JSON document; --quick skips the 1080p input

Cases (RGB uint8 frames made from the bundled Set14 images, x4, `espcn_x4_y`):
- `supertiny.upscale(frame, model=m)` with the model loaded once, warm (median of --repeats calls), beside OpenCV's
  dnn_superres ESPCN x4 (its own YCrCb conversion and bicubic chroma; model file from ../shared/peers, not shipped)
  with two threads, and the PyTorch forward of the same ESPCN-Y network on the Y plane alone: for 480x270 and
  1920x1080 frames.
- The first call of a fresh process (`supertiny.upscale` after import and model load, tinygrad's on-disk kernel
  cache warm: one run fills the cache, then the median, fastest and slowest of --repeats fresh processes).
- `supertiny upscale` on a folder of 20 PNG frames of 480x270 (process start included) against a Python loop that
  reads, upscales and writes the same files with OpenCV, also timed as its own process; both write PNG at zlib
  level 6 (Pillow's default, which `supertiny upscale` uses).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers" / "opencv_espcn"
FRAMES = 20
PNG_LEVEL = 6  # Pillow's default zlib level, which supertiny's PNG writer keeps


def frame(width: int, height: int, index: int = 0) -> np.ndarray:
  """An RGB uint8 frame of width x height: a Set14 image resized with area averaging (a real photo's statistics)."""
  import cv2
  from PIL import Image

  sources = sorted((ROOT / "tests" / "assets" / "Set14").glob("*.png"))
  image = np.asarray(Image.open(sources[index % len(sources)]).convert("RGB"))
  return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def median_seconds(call, repeats: int) -> float:
  call()  # warm: compiled, captured
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def opencv_model(peers: Path):
  import cv2

  cv2.setNumThreads(2)
  sr = cv2.dnn_superres.DnnSuperResImpl_create()
  sr.readModel(str(peers / "ESPCN_x4.pb"))
  sr.setModel("espcn", 4)
  return sr


def torch_espcn():
  """PyTorch's ESPCN-Y (tests/models/torch_reference.py) with the shipped espcn_x4_y weights."""
  import torch
  from tinygrad.nn.state import get_state_dict

  from supertiny.pretrained import load_model

  sys.path.insert(0, str(ROOT / "tests" / "models"))
  import torch_reference as ref

  net = ref.ESPCN(4, 1).eval()
  ours = get_state_dict(load_model("espcn_x4_y"))
  net.load_state_dict({k: torch.from_numpy(ours[k].numpy()) for k in net.state_dict()})
  return net


def warm_cases(peers: Path, sizes: list[tuple[int, int]], repeats: int) -> list[dict]:
  import cv2
  import torch

  import supertiny
  from supertiny.ops import rgb_to_y
  from supertiny.pretrained import load_model

  torch.set_num_threads(2)
  model = load_model("espcn_x4_y")
  sr = opencv_model(peers)
  net = torch_espcn()
  rows = []
  for width, height in sizes:
    rgb = frame(width, height)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    y = torch.from_numpy((rgb_to_y(rgb.astype(np.float32) / 255))[None, None].astype(np.float32))
    ours = median_seconds(lambda rgb=rgb: supertiny.upscale(rgb, model=model), repeats)
    theirs = median_seconds(lambda bgr=bgr: sr.upsample(bgr), repeats)
    with torch.no_grad():
      forward = median_seconds(lambda y=y: net(y), repeats)
    out = supertiny.upscale(rgb, model=model)
    assert out.shape == (height * 4, width * 4, 3) and cv2 is not None
    rows.append({"case": f"supertiny.upscale {width}x{height} x4", "supertiny_s": ours, "opencv_s": theirs,
                 "pytorch_forward_s": forward, "ratio_to_opencv": ours / theirs})
  return rows


FIRST_CALL = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
frame = np.load(sys.argv[2])
import supertiny
from supertiny.pretrained import load_model
model = load_model("espcn_x4_y")
start = time.perf_counter()
supertiny.upscale(frame, model=model)
print(time.perf_counter() - start)
"""

OPENCV_LOOP = r"""
import sys, pathlib, cv2
cv2.setNumThreads(2)
sr = cv2.dnn_superres.DnnSuperResImpl_create()
sr.readModel(sys.argv[1])
sr.setModel("espcn", 4)
out = pathlib.Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
for path in sorted(pathlib.Path(sys.argv[2]).glob("*.png")):
  cv2.imwrite(str(out / path.name), sr.upsample(cv2.imread(str(path))), [cv2.IMWRITE_PNG_COMPRESSION, int(sys.argv[4])])
"""


def first_call(tmp: Path, repeats: int) -> dict:
  np.save(tmp / "frame.npy", frame(480, 270))
  runs = []
  for _ in range(1 + repeats):  # the first run may fill tinygrad's kernel cache; the others are what users see
    done = subprocess.run([sys.executable, "-c", FIRST_CALL, str(ROOT), str(tmp / "frame.npy")], check=True,
                          capture_output=True, text=True)
    runs.append(float(done.stdout.split()[-1]))
  warm_cache = sorted(runs[1:])
  return {"case": "first supertiny.upscale call, 480x270 x4, fresh process",
          "supertiny_s": float(np.median(warm_cache)), "fastest_s": warm_cache[0], "slowest_s": warm_cache[-1],
          "first_run_s": runs[0]}


def folder_case(peers: Path, tmp: Path) -> dict:
  from PIL import Image

  frames = tmp / "frames"
  frames.mkdir()
  for i in range(FRAMES):
    Image.fromarray(frame(480, 270, i)).save(frames / f"frame{i:02d}.png")
  cli = Path(sys.executable).with_name("supertiny")
  command = [str(cli)] if cli.exists() else [sys.executable, "-m", "supertiny"]

  def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - start

  ours = timed([*command, "upscale", str(frames), "-o", str(tmp / "ours"), "--model", "espcn_x4_y"])
  theirs = timed([sys.executable, "-c", OPENCV_LOOP, str(peers / "ESPCN_x4.pb"), str(frames), str(tmp / "cv"),
                  str(PNG_LEVEL)])
  return {"case": f"supertiny upscale, folder of {FRAMES} PNG 480x270 x4, process start included",
          "supertiny_s": ours, "opencv_s": theirs, "ratio_to_opencv": ours / theirs}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--peers", type=Path, default=PEERS, help="folder with OpenCV's ESPCN_x4.pb")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--quick", action="store_true", help="480x270 only")
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  if not (args.peers / "ESPCN_x4.pb").is_file():
    sys.exit(f"peers.py: {args.peers / 'ESPCN_x4.pb'} not found (see ../shared/peers/SOURCES.md)")
  sizes = [(480, 270)] if args.quick else [(480, 270), (1920, 1080)]
  os.environ.setdefault("OMP_NUM_THREADS", "2")
  with tempfile.TemporaryDirectory() as name:
    tmp = Path(name)
    rows = [*warm_cases(args.peers, sizes, args.repeats), first_call(tmp, args.repeats), folder_case(args.peers, tmp)]
  if args.json:
    print(json.dumps({"cpu_cores": os.cpu_count(), "cases": rows}))
    return
  for row in rows:
    figures = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "case")
    print(f"{row['case']}: {figures}")


if __name__ == "__main__":
  main()
