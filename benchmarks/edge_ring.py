"""How much a shipped model gains over bicubic near the image edges and inside, on validation and on Set5.

For each image the HR pixels within `ring` LR pixels of an edge (times the scale; the protocol's shave of `scale`
pixels left out) form the ring, the rest the interior; squared Y errors (8-bit, rounded output) are pooled over
the images of a set, so each PSNR is of pooled MSE, not the protocol's mean of per-image PSNRs.

  .venv/bin/python benchmarks/edge_ring.py fsrcnn 3     # about a minute; the validation images need ../shared
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supertiny.data.images import list_images, to_float  # noqa: E402
from supertiny.evaluate import load_pair  # noqa: E402
from supertiny.infer import upscale_tiled  # noqa: E402
from supertiny.models import create_model  # noqa: E402
from supertiny.ops import rgb_to_y  # noqa: E402
from supertiny.pretrained import load_model  # noqa: E402

SETS = {"validation (last 10 of BSDS200)": (ROOT.parent / "shared" / "datasets" / "BSDS200", 10),
        "Set5": (ROOT / "tests" / "assets" / "Set5", 0)}


def y255(image: np.ndarray) -> np.ndarray:
  image = to_float(image).astype(np.float64)
  return (rgb_to_y(image) if image.shape[2] == 3 else image[..., 0]) * 255


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model", help="a shipped model name, e.g. fsrcnn")
  parser.add_argument("scale", type=int)
  parser.add_argument("--ring", type=int, default=8, help="LR pixels from the edge that count as the ring [8]")
  args = parser.parse_args()
  models = {"model": load_model(args.model, args.scale, 1), "bicubic": create_model("bicubic", scale=args.scale,
                                                                                  channels=None)}
  for name, (folder, last) in SETS.items():
    if not folder.is_dir():
      print(f"{name}: {folder} not found, skipped")
      continue
    sums = {(m, part): [0.0, 0] for m in models for part in ("ring", "interior")}
    for path in list_images(folder)[-last:] if last else list_images(folder):
      lr, hr = load_pair(path, args.scale)
      target = y255(hr)
      inner, scored = np.zeros(target.shape, bool), np.zeros(target.shape, bool)
      r, s = args.ring * args.scale, args.scale
      inner[r:-r, r:-r], scored[s:-s, s:-s] = True, True
      for m, model in models.items():
        error = (np.round(y255(upscale_tiled(model, lr))) - target) ** 2
        for part, mask in (("ring", scored & ~inner), ("interior", inner)):
          sums[(m, part)][0] += error[mask].sum()
          sums[(m, part)][1] += mask.sum()
    psnr = {key: 10 * np.log10(255 ** 2 / (total / count)) for key, (total, count) in sums.items()}
    share = sums[("model", "ring")][1] / (sums[("model", "ring")][1] + sums[("model", "interior")][1])
    print(f"{name}: ring ({share:.0%} of the scored pixels) {psnr[('model', 'ring')]:.3f} dB, "
          f"bicubic {psnr[('bicubic', 'ring')]:.3f}, gain {psnr[('model', 'ring')] - psnr[('bicubic', 'ring')]:.3f}; "
          f"interior {psnr[('model', 'interior')]:.3f}, bicubic {psnr[('bicubic', 'interior')]:.3f}, "
          f"gain {psnr[('model', 'interior')] - psnr[('bicubic', 'interior')]:.3f}")


if __name__ == "__main__":
  main()
