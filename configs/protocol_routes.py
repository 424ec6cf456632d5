"""A Y-channel model's score by the protocol beside the two shortcuts of the published MATLAB test code (SRCNN's,
FSRCNN's): scoring the model's Y output itself instead of the RGB image it makes with bicubic chroma, and degrading
the HR image's Y plane in double precision (never rounded) instead of the RGB image to 8 bits. Bicubic is scored
both ways of degrading. Reports only: a gate is scored by the protocol (supertiny eval), never by these.

  .venv/bin/python configs/protocol_routes.py fsrcnn_x3_y 3 tests/assets/Set5 tests/assets/Set14
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supertiny.checkpoint import model_from_checkpoint  # noqa: E402
from supertiny.data.images import list_images, to_float  # noqa: E402
from supertiny.evaluate import load_pair, score  # noqa: E402
from supertiny.infer import upscale_tiled  # noqa: E402
from supertiny.metrics import psnr, to_metric_space  # noqa: E402
from supertiny.ops import imresize, rgb_to_y  # noqa: E402
from supertiny.pretrained import WEIGHTS  # noqa: E402


def luma(image: np.ndarray) -> np.ndarray:
  """Y in [0, 1] of an 8-bit image (gray images as they are), unrounded."""
  planes = image.astype(np.float64) / 255
  return rgb_to_y(planes) if planes.ndim == 3 and planes.shape[2] == 3 else planes.reshape(planes.shape[:2])


def y_of_model(model, y: np.ndarray) -> np.ndarray:
  """The model's Y output for a float Y plane in [0, 1], as 8-bit values (the published code's uint8(im_h * 255))."""
  out = upscale_tiled(model, y.astype(np.float32), value_range=(0.0, 1.0))[..., 0]
  return np.round(np.clip(out, 0.0, 1.0) * 255)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("stem", help="a shipped Y-channel file, e.g. fsrcnn_x3_y")
  parser.add_argument("scale", type=int)
  parser.add_argument("folders", nargs="+", type=Path)
  args = parser.parse_args()
  model, meta = model_from_checkpoint(WEIGHTS / f"{args.stem}.safetensors")
  if meta["channels"] != 1 or meta["scale"] != args.scale:
    sys.exit(f"{args.stem}: needs a Y-channel file at x{args.scale}")
  s = args.scale
  columns = ("protocol", "Y output", "Y degraded", "bicubic", "bicubic Y degraded")
  for folder in args.folders:
    rows = []
    for path in list_images(folder):
      lr, hr = load_pair(path, s)
      hr_y = to_metric_space(to_float(hr))  # the protocol's 8-bit Y, as MATLAB's uint8 rgb2ycbcr
      lr_y8 = luma(lr)  # Y of the protocol's 8-bit RGB LR
      lr_y = imresize(hr_y / 255, 1.0 / s)  # double precision, as the published code degrades
      rows.append((score(upscale_tiled(model, lr), hr, s)[0],
                   psnr(y_of_model(model, lr_y8), hr_y, s),
                   psnr(y_of_model(model, lr_y), hr_y, s),
                   psnr(np.round(np.clip(imresize(lr_y8, float(s)), 0, 1) * 255), hr_y, s),
                   psnr(np.round(np.clip(imresize(lr_y, float(s)), 0, 1) * 255), hr_y, s)))
    means = np.mean(rows, axis=0)
    print(f"{folder.name} ({len(rows)} images), {args.stem}: "
          + ", ".join(f"{name} {value:.3f}" for name, value in zip(columns, means, strict=True)))


if __name__ == "__main__":
  main()
