"""Fill device_data/ for configs/gpu_train.sh: the training images and the committed runs it resumes or starts from,
small enough for the 64 MiB a lent machine is sent (BSDS200 as lossless WebP, checked pixel for pixel).

  .venv/bin/python configs/device_data.py training/paper/paper/srcnn training/espcn_x3_291_interior ...
"""
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from supertiny.data.images import atomic_output

DATASETS = Path("../shared/datasets")
OUT = Path("device_data")


def main(runs: list[str]) -> None:
  shutil.copytree(DATASETS / "T91", OUT / "T91", dirs_exist_ok=True)
  (OUT / "BSDS200").mkdir(parents=True, exist_ok=True)
  for png in sorted((DATASETS / "BSDS200").glob("*.png")):
    webp = OUT / "BSDS200" / f"{png.stem}.webp"
    if webp.exists():
      continue
    image = Image.open(png)
    with atomic_output(webp) as partial:  # a stop leaves no half file to be skipped next time
      image.save(partial, "WEBP", lossless=True, quality=100, method=3)
      if not np.array_equal(np.asarray(image), np.asarray(Image.open(partial).convert(image.mode))):
        sys.exit(f"{webp}: lossless WebP decoded to other pixels than {png}")
  for run in map(Path, runs):  # training/NAME/... -> device_data/training/NAME/...
    shutil.copytree(run, OUT / run, dirs_exist_ok=True)


if __name__ == "__main__":
  main(sys.argv[1:])
