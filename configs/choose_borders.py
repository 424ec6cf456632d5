"""Choose how each shipped model extends images past their edges (`border`, models.base.SRNet) by validation
alone: the last 10 images of BSDS200, as the training recipes validate, never Set5 or Set14.

Every shipped file is scored with the layers' zero padding and with the image mirrored ("symmetric"); with
`--apply` a file whose validation PSNR rises by at least MIN_GAIN with the mirror is re-exported with that option
(its weights and training metadata unchanged: `supertiny export --border`). The mirror costs compute (each tile
grows by the model's reach on every side), so a gain below MIN_GAIN, within validation's noise, keeps zeros.

  .venv/bin/python configs/choose_borders.py [--apply] [FILE_STEM ...]   # about 10 min for all of them
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from supertiny.checkpoint import export_weights, model_from_checkpoint, read_checkpoint  # noqa: E402
from supertiny.evaluate import evaluate_folder  # noqa: E402
from supertiny.pretrained import WEIGHTS  # noqa: E402

VALIDATION = ROOT.parent / "shared" / "datasets" / "BSDS200"
MIN_GAIN = 0.001  # dB


def validation_psnr(path: Path, border: str) -> float:
  model, meta = model_from_checkpoint(path, border)
  return evaluate_folder(model, VALIDATION, meta["scale"], last=10).psnr


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("stems", nargs="*", help="shipped files to check (default: all), e.g. fsrcnn_x3_y")
  parser.add_argument("--apply", action="store_true", help="re-export the files whose validation prefers the mirror")
  args = parser.parse_args()
  if not VALIDATION.is_dir():
    sys.exit(f"{VALIDATION}: not found (the validation images live in ../shared/datasets)")
  files = [WEIGHTS / f"{stem}.safetensors" for stem in args.stems] or sorted(WEIGHTS.glob("*.safetensors"))
  print(f"{'file':<24} {'zeros':>9} {'symmetric':>9}  chosen")
  for path in files:
    zeros, mirrored = validation_psnr(path, "zeros"), validation_psnr(path, "symmetric")
    chosen = "symmetric" if mirrored >= zeros + MIN_GAIN else "zeros"
    print(f"{path.stem:<24} {zeros:9.4f} {mirrored:9.4f}  {chosen}", flush=True)
    if args.apply and chosen != read_checkpoint(path)[0].get("options", {}).get("border", "zeros"):
      export_weights(path, path, chosen)


if __name__ == "__main__":
  main()
