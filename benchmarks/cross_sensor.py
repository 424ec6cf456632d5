"""Cross-sensor super-resolution on the OLI2MSI pair (Landsat-8 OLI at 40 m to Sentinel-2 MSI at 10 m, x4), with a
model trained on other satellite data: Sentinel-2's own 10 m visible bands.

  .venv/bin/python benchmarks/cross_sensor.py            # train (about 5 minutes here), then score; --json
  .venv/bin/python benchmarks/cross_sensor.py --steps 200 --out /tmp/xs   # a quick look

1. Training data: the visible 10 m bands (B04, B03, B02) of ../shared/datasets/satellite/sentinel2_l1c_T33UUU as
   reflectance, stored as 16-bit PNG (reflectance x 65535, so the dtype mapping gives the model reflectance, as the
   OLI2MSI floats are), cut into 384x384 tiles: the left three quarters train, the right quarter validates.
2. `supertiny train` of ESPCN x4 on RGB from those tiles (MATLAB-bicubic x4 degradation: Wald's protocol, the
   sensor's own 10 m as the truth and 40 m made from it).
3. `supertiny eval --metric cpsnr --space rgb` (and on Y) on the OLI2MSI pair with its given LR: nearest, bicubic,
   the photograph-trained espcn_x4_y that ships, and the Sentinel-2-trained network.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supertiny.data.images import write_image  # noqa: E402
from supertiny.data.sentinel2 import read_scene  # noqa: E402

SATELLITE = ROOT.parent / "shared" / "datasets" / "satellite"
TILE = 384


def write_tiles(scene_folder: Path, out: Path) -> tuple[Path, Path]:
  """The scene's visible 10 m bands as 16-bit RGB tiles: (training folder, validation folder)."""
  scene = read_scene(scene_folder, radiometry="s2")
  rgb = np.stack([scene.reflectance(b) for b in ("B04", "B03", "B02")], axis=-1)
  stored = np.clip(np.round(rgb.astype(np.float64) * 65535), 0, 65535).astype(np.uint16)
  rows, cols = stored.shape[0] // TILE, stored.shape[1] // TILE
  train, val = out / "train", out / "val"
  for folder in (train, val):
    folder.mkdir(parents=True, exist_ok=True)
  for r in range(rows):
    for c in range(cols):
      target = val if c == cols - 1 else train  # the right quarter is held back
      write_image(target / f"s2_{r}_{c}.png", stored[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE])
  return train, val


def supertiny(*args: str) -> str:
  done = subprocess.run([sys.executable, "-m", "supertiny", *args], capture_output=True, text=True, cwd=ROOT)
  if done.returncode != 0:
    sys.exit(f"supertiny {' '.join(args)} failed:\n{done.stderr}")
  return done.stdout


def score(model: str, pair: Path, space: str) -> dict[str, float]:
  doc = json.loads(supertiny("eval", "--metric", "cpsnr", "--space", space, "--scale", "4", "--model", model,
                             "--lr-dir", str(pair / "lr"), "--json", str(pair / "hr")))
  (entry,) = doc["datasets"].values()
  return {"cpsnr": entry["psnr"], "cssim": entry["ssim"]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=Path, default=ROOT / "runs" / "cross_sensor",
                      help="work folder [runs/cross_sensor]")
  parser.add_argument("--steps", type=int, default=6000)
  parser.add_argument("--json", action="store_true")
  args = parser.parse_args()
  if not (SATELLITE / "oli2msi_pair").is_dir():
    sys.exit(f"{SATELLITE}: the satellite samples are needed (../shared/datasets/satellite)")
  train, val = write_tiles(SATELLITE / "sentinel2_l1c_T33UUU", args.out / "tiles")
  run = args.out / "espcn_x4_rgb_s2"
  if not (run / "last.safetensors").exists():
    supertiny("train", "--model", "espcn", "--scale", "4", "--channels", "rgb", "--train", str(train),
              "--val", str(val),
              "--steps", str(args.steps), "--batch", "16", "--patch", "24", "--learning-rate", "1e-3",
              "--schedule", "cosine", "--loss", "l1", "--val-every", str(max(1, args.steps // 6)),
              "--save-every", "500", "--no-cache", "--out", str(run))
  with tempfile.TemporaryDirectory() as tmp:
    pair = Path(tmp)
    for role, name in (("hr", "HR.TIF"), ("lr", "LR.TIF")):
      (pair / role).mkdir()
      (pair / role / "pair.tif").write_bytes((SATELLITE / "oli2msi_pair" / name).read_bytes())
    models = {"nearest": "nearest", "bicubic": "bicubic", "espcn_x4_y (photographs, shipped)": "espcn_x4_y",
              "ESPCN x4 RGB trained on Sentinel-2 10 m": str(run / "best.safetensors")}
    rows = {label: {space: score(model, pair, space) for space in ("rgb", "y")} for label, model in models.items()}
  if args.json:
    print(json.dumps(rows, indent=2))
    return
  print("| model | cPSNR / cSSIM, all three bands | on Y |\n|---|---|---|")
  for label, row in rows.items():
    print(f"| {label} | {row['rgb']['cpsnr']:.2f} / {row['rgb']['cssim']:.4f} | "
          f"{row['y']['cpsnr']:.2f} / {row['y']['cssim']:.4f} |")


if __name__ == "__main__":
  main()
