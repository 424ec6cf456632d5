"""What clang makes of supertiny.runtime.conv's forward kernel: the instruction mix of its innermost loop.

  .venv/bin/python benchmarks/kernel_asm.py                       # EDSR's 64->64 body convolution at 64x64
  .venv/bin/python benchmarks/kernel_asm.py --layer 1,64,3,256,256,3

Timings on this shared machine move by 1.5x from one minute to the next; the loop's instructions do not. The
kernel's C source is taken from tinygrad's `DEBUG=4` output (in a child process), compiled to assembly with the
flags tinygrad's CPU backend uses, and the last loop before the first backward jump (the reduction over input
channels) is counted: 256-bit and 128-bit FMAs, broadcasts, vector loads, register spills and reloads, shuffles.
Needs clang, as tinygrad's CPU backend does.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])  # the checkout this script belongs to
from tinygrad import Tensor
from supertiny.runtime.conv import conv2d
batch, cin, cout, height, width, kernel = map(int, sys.argv[2].split(","))
conv2d(Tensor.rand(batch, cin, height, width), Tensor.rand(cout, cin, kernel, kernel), padding=kernel // 2).realize()
"""
VECTOR_TYPES = "typedef float float4 __attribute__((aligned(16),ext_vector_type(4)));\n" \
               "typedef float float2 __attribute__((aligned(8),ext_vector_type(2)));\n"
CLANG = ["clang", "-S", "-x", "c", "-O2", "-fPIC", "-ffreestanding", "-fno-math-errno", "-nostdlib", "-march=native"]
COUNTS = {"ymm FMAs": r"vfmadd\S*\s.*ymm", "xmm FMAs": r"vfmadd\S*\s.*xmm", "broadcasts": r"vbroadcast",
          "vector loads": r"vmovu", "spills/reloads": r"Spill|Reload", "shuffles": r"blend|perm|shuf|insert|extract"}


def kernel_source(layer: str) -> str:
  env = dict(os.environ, DEBUG="4", DEV="CPU")
  out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), layer], capture_output=True, text=True, env=env,
                       check=True).stdout
  out = re.sub(r"\x1b\[[0-9;]*m", "", out)
  start = re.search(r"void conv_\d+_\d+_\d+x\d+\(", out)
  if start is None:
    raise SystemExit("kernel_asm: no supertiny.runtime.conv kernel in tinygrad's DEBUG=4 output")
  return VECTOR_TYPES + out[start.start():out.index("\n}\n", start.start()) + 3]


def inner_loop(assembly: str) -> list[str]:
  lines = assembly.splitlines()
  jump = next(i for i, line in enumerate(lines) if re.match(r"\s+j(ne|b|l)\s+\.LBB", line))
  label = lines[jump].split()[-1] + ":"
  start = next(i for i, line in enumerate(lines) if line.startswith(label))
  return [line for line in lines[start + 1:jump + 1] if line.strip() and not line.strip().startswith("#")]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--layer", default="1,64,64,64,64,3", help="batch,in,out,height,width,kernel")
  args = parser.parse_args()
  source = kernel_source(args.layer)
  assembly = subprocess.run(CLANG + ["-", "-o", "-"], input=source, capture_output=True, text=True, check=True).stdout
  loop = inner_loop(assembly)
  name = re.search(r"void (\w+)\(", source).group(1)
  counts = ", ".join(f"{label} {sum(1 for line in loop if re.search(pattern, line))}"
                     for label, pattern in COUNTS.items())
  print(f"{name} ({args.layer}): inner loop {len(loop)} instructions: {counts}")


if __name__ == "__main__":
  main()
