"""Fuzzing every reader of untrusted files (issue #22): seeded mutations of valid .pth, .safetensors, PNG (8- and
16-bit), JPEG and TIFF (integer, float, a page per band) files (truncation, bit flips, huge numbers written over
the bytes, bytes inserted or repeated; for .pth also inside the zipped pickle). Every case must end in a clean load
or one SuperTinyError, within 5 s, and the whole run within 1 GiB more memory than it started with.

The cases run in a fresh process (this file run as a script), so its peak memory is the readers' alone. A few
hundred cases in the default suite; thousands with --slow.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

MIB = 1 << 20
PIXEL_LIMIT = 50_000_000  # the fuzzed run's --max-pixels: a decoder's memory is bounded by it, not by the file


def make_seeds(folder: Path) -> None:
  """Small valid files of every kind the readers take."""
  import tifffile
  import torch
  from tinygrad import Tensor
  from tinygrad.nn.state import safe_save

  from supertiny.data.images import write_image

  folder.mkdir(parents=True, exist_ok=True)
  torch.manual_seed(0)
  torch.save({"conv.weight": torch.randn(4, 1, 3, 3), "conv.bias": torch.zeros(4),
              "nested": {"x": torch.ones(2, dtype=torch.float16)}}, folder / "seed.pth")
  safe_save({"a": Tensor(np.arange(12, dtype=np.float32).reshape(3, 4)), "b": Tensor(np.arange(3, dtype=np.int32))},
            str(folder / "seed.safetensors"), metadata={"supertiny": json.dumps({"format": "x"})})
  rng = np.random.default_rng(0)
  write_image(folder / "seed8.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
  write_image(folder / "seed16.png", rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16))
  write_image(folder / "seed.jpg", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
  tifffile.imwrite(folder / "seed.tif", rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16), compression="zlib")
  tifffile.imwrite(folder / "seedf.tif", rng.random((12, 10), dtype=np.float32))
  tifffile.imwrite(folder / "seedms.tif", rng.integers(0, 4096, (4, 12, 10), dtype=np.uint16),
                   photometric="minisblack")  # a page per band


def _readers():
  from supertiny.data.images import read_image
  from supertiny.data.raster import read_raster
  from supertiny.models.weights import read_safetensors, read_torch_state_dict

  return {"seed.pth": read_torch_state_dict, "seed.safetensors": read_safetensors, "seed8.png": read_image,
          "seed16.png": read_image, "seed.jpg": read_image, "seed.tif": read_image, "seedf.tif": read_raster,
          "seedms.tif": read_image}


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
  """One random damage to `data`, and its name."""
  kind = int(rng.integers(5))
  buf = bytearray(data)
  at = int(rng.integers(len(buf)))
  if kind == 0:
    return bytes(buf[:at]), f"truncated at {at}"
  if kind == 1:
    for _ in range(int(rng.integers(1, 9))):
      i = int(rng.integers(len(buf)))
      buf[i] ^= 1 << int(rng.integers(8))
    return bytes(buf), "bits flipped"
  if kind == 2:
    width = (2, 4, 8)[int(rng.integers(3))]
    value = (0, 1 << (8 * width - 1), (1 << (8 * width)) - 1, 1 << min(40, 8 * width - 2))[int(rng.integers(4))]
    buf[at:at + width] = value.to_bytes(width, ("little", "big")[int(rng.integers(2))])
    return bytes(buf[:len(data)]), f"{width}-byte number {value} at {at}"
  if kind == 3:
    buf[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
    return bytes(buf), f"bytes inserted at {at}"
  end = min(len(buf), at + int(rng.integers(1, 256)))
  buf[at:at] = buf[at:end] * int(rng.integers(2, 50))
  return bytes(buf), f"bytes {at}..{end} repeated"


def mutate_pickle(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
  """A valid zip whose data.pkl is damaged: reaches the unpickler instead of the zip's checksums."""
  source = zipfile.ZipFile(io.BytesIO(data))
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w") as target:
    for name in source.namelist():
      member = source.read(name)
      if name.endswith("data.pkl"):
        member, what = mutate(member, rng)
      target.writestr(name, member)
  return out.getvalue(), f"data.pkl {what}"


def run_cases(folder: Path, count: int, seed: int) -> dict:
  """`count` mutated files through their readers; what went wrong, the slowest case, and the memory used."""
  import os

  os.environ["SUPERTINY_MAX_PIXELS"] = str(PIXEL_LIMIT)
  from supertiny.errors import SuperTinyError

  readers = _readers()
  seeds = {name: (folder / name).read_bytes() for name in readers}
  rng = np.random.default_rng(seed)
  start_rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB \
    if Path("/proc/self/statm").exists() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  failures, slowest, outcomes = [], (0.0, ""), {"loaded": 0, "refused": 0}
  case_file = folder / "case"
  for i in range(count):
    name = list(readers)[i % len(readers)]
    data, what = (mutate_pickle if name.endswith(".pth") and rng.random() < 0.5 else mutate)(seeds[name], rng)
    case_file = case_file.with_name(f"case{Path(name).suffix}")
    case_file.write_bytes(data)
    began = time.perf_counter()
    try:
      readers[name](case_file)
      outcomes["loaded"] += 1
    except SuperTinyError as exc:
      outcomes["refused"] += 1
      if "\n" in str(exc):
        failures.append(f"{name}, {what}: a message of several lines")
    except BaseException as exc:  # noqa: BLE001 (what the test looks for)
      failures.append(f"{name}, {what}: {type(exc).__name__}: {str(exc)[:200]}")
    took = time.perf_counter() - began
    if took > slowest[0]:
      slowest = (took, f"{name}, {what}")
      (folder / f"slowest{Path(name).suffix}").write_bytes(data)  # to replay it
  peak = _peak_rss_mib()
  return {"cases": count, "failures": failures, "slowest_s": slowest[0], "slowest": slowest[1],
          "extra_mib": peak - start_rss, **outcomes}


def _peak_rss_mib() -> float:
  """This process's peak resident memory since it started. Not ru_maxrss on Linux: exec keeps the high-water mark of
  the process it replaced, so a child forked from a large pytest worker would report the worker's size."""
  status = Path("/proc/self/status")
  if status.exists():
    for line in status.read_text().splitlines():
      if line.startswith("VmHWM:"):
        return int(line.split()[1]) / 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fuzz(tmp_path: Path, count: int, seed: int) -> None:
  make_seeds(tmp_path)
  done = subprocess.run([sys.executable, __file__, str(tmp_path), str(count), str(seed)], capture_output=True,
                        text=True, timeout=60 + count * 5)
  assert done.returncode == 0, done.stderr[-3000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  assert report["failures"] == [], "\n".join(report["failures"][:20])
  assert report["slowest_s"] < 5, report
  assert report["extra_mib"] < 1024, report
  assert report["refused"] > count // 2  # the mutations do damage the files


def test_fuzz_the_readers(tmp_path):
  _fuzz(tmp_path, 500, seed=1)


@pytest.mark.slow
def test_fuzz_the_readers_thoroughly(tmp_path):
  _fuzz(tmp_path, 20000, seed=2)


if __name__ == "__main__":
  print(json.dumps(run_cases(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
