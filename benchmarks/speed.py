"""tinygrad against PyTorch on the same machine: a training step (forward, L1 loss, backward, Adam) and inference
for the zoo's models, each measured in its own process so its peak memory is its own.

  .venv/bin/python benchmarks/speed.py --quick                   # ESPCN x4 and EDSR-baseline x4, small sizes
  .venv/bin/python benchmarks/speed.py                            # every learned model, more sizes
  DEV=CUDA python benchmarks/speed.py --quick                     # on a GPU (PyTorch then uses CUDA too)
  DEV=CUDA python benchmarks/speed.py --quick --half              # both frameworks in float16
  DEV=CUDA ALLOW_TF32=1 python benchmarks/speed.py --quick --frameworks tinygrad

Figures: median milliseconds per call after five warm-up calls (TinyJit captures on the second), images/s,
peak resident memory of the process (CPU) or peak device memory (CUDA), and the tinygrad/PyTorch time ratio
(above 1: tinygrad is slower), and the first call's seconds (compilation included). On a GPU the cases are
REFERENCE.md's: a training step on 16 LR patches of 48x48 and inference from 480x270 to 1920x1080 (x4), whose
frames/s is the images/s column. tinygrad's own switches (ALLOW_TF32, BEAM, FUSE_OPTIM, WINO, DEFAULT_FLOAT)
pass to its child processes from the environment; `--half` runs both frameworks in float16. On the CPU PyTorch
runs twice: with all cores (the ratio) and with one thread (`ratio 1t`). tinygrad 0.14 runs every CPU kernel on
the thread that launches it, so tinygrad uses the cores through supertiny.runtime (training: a copy of the model
per core and CPU device, each a share of the batch; inference: the product's Runner, which `supertiny upscale`
uses, tiles or bands of rows on a thread per core, HxWxC images in and out); `--cores 1` measures one core, which
`ratio 1t` then compares kernel for kernel. `SUPERTINY_CONV=tinygrad` measures tinygrad's generic convolution
instead of supertiny.runtime.conv's kernels. PyTorch runs the reference implementations in
tests/models/torch_reference.py, which the tests check equal to SuperTiny's models.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# benchmark name: zoo model, scale, channels, tinygrad options, PyTorch reference constructor (evaluated in the child)
MODELS = {
  "espcn": ("espcn", 4, 1, {}, "ref.ESPCN(4, 1)"),
  "edsr-baseline": ("edsr-baseline", 4, 3, {}, "ref.EDSR(4)"),
  "srcnn": ("srcnn", 3, 1, {}, "ref.SRCNN(3, 1)"),
  "fsrcnn": ("fsrcnn", 3, 1, {}, "ref.FSRCNN(3, 1)"),
  "vdsr": ("vdsr", 2, 1, {}, "ref.VDSR(2, 1)"),
  "swinir-light": ("swinir-light", 4, 3, {}, "ref.SwinIRLight(4)"),
  "conv-transformer": ("conv-transformer", 4, 3, {}, "ref.ConvTransformer(4, 3)"),
  # the paper study's multi-layer model (docs/paper.md): SRCNN 5-5-3 on RGB, x4, in HR space
  "srcnn-5-5-3": ("srcnn", 4, 3, {"variant": "paper"}, "ref.SRCNN(4, 3, kernels=(5, 5, 3))"),
}

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, sys.argv[1])  # the checkout this script belongs to, ahead of the working directory
sys.path.insert(0, os.path.join(sys.argv[1], "tests", "models"))
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
from timing import median_ms
import numpy as np
framework, name, mode, batch, height, width, iters = sys.argv[2], sys.argv[3], sys.argv[4], *map(int, sys.argv[5:9])
half = os.environ.get("BENCH_HALF") == "1"
model_name, scale, channels, options, reference = json.loads(sys.argv[9])
rng = np.random.default_rng(0)
lr = rng.random((batch, channels, height, width), dtype=np.float32)
hr = rng.random((batch, channels, height * scale, width * scale), dtype=np.float32)

if framework == "tinygrad":
  from tinygrad import Device, GlobalCounters, Tensor, TinyJit, dtypes
  from tinygrad.nn.optim import Adam
  from supertiny.runtime.cores import SplitTrainStep, core_devices
  from supertiny.runtime.runner import Runner
  from supertiny.models import create_model
  from supertiny.train import LOSSES, make_train_step, training
  device = Device.DEFAULT
  cores = core_devices(int(os.environ["BENCH_CORES"]) if os.environ.get("BENCH_CORES") else None)
  model = create_model(model_name, scale=scale, channels=channels, **options)
  if mode == "train" and len(cores) > 1:  # one thread and CPU device per core, a share of the batch each
    step = SplitTrainStep(model, Adam(model.parameters(), lr=1e-4), LOSSES["l1"], cores)
    def call():
      with training():
        step(lr, hr)
  elif mode == "train":
    step = make_train_step(model, Adam(model.parameters(), lr=1e-4), "l1")
    x, y = Tensor(lr, dtype=dtypes.default_float).realize(), Tensor(hr, dtype=dtypes.default_float).realize()
    def call():
      with training():
        step(x, y)
  elif len(cores) > 1:  # the product path: supertiny's Runner, a thread per core, numpy in and out
    runner = Runner(model, cores=len(cores))
    images = [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in lr]
    def call():
      for image in images:
        runner(image)
  else:
    forward = TinyJit(lambda t: model(t).realize())
    x = Tensor(lr, dtype=dtypes.default_float).realize()
    def call():
      forward(x)
  def sync():
    Device[device].synchronize()
  def peak():
    return GlobalCounters.mem_used / 2**20 if device != "CPU" else None
else:
  import torch
  import torch_reference as ref
  if os.environ.get("BENCH_TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
  from speed import on_gpu
  device = "cuda" if torch.cuda.is_available() and on_gpu() else "cpu"
  dtype = torch.float16 if half else torch.float32
  model = eval(reference).to(device, dtype)
  x, y = torch.from_numpy(lr).to(device, dtype), torch.from_numpy(hr).to(device, dtype)
  if mode == "train":
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    def call():
      optimizer.zero_grad(set_to_none=True)
      loss = (model(x) - y).abs().mean()
      loss.backward()
      optimizer.step()
  else:
    model.eval()
    def call():
      with torch.inference_mode():
        model(x)
  def sync():
    if device == "cuda":
      torch.cuda.synchronize()
  def peak():
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None

began = time.perf_counter()
call()
sync()
first_s = time.perf_counter() - began
ms = median_ms(call, iters, sync, warmup=5)  # split steps settle after a few replays (fresh buffers)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"ms": ms, "images_per_s": batch / ms * 1000, "peak_device_mib": peak(), "peak_rss_mib": rss,
                  "first_call_s": first_s, "device": str(device),
                  "cores": len(cores) if framework == "tinygrad" else None}))
"""


def on_gpu() -> bool:
  """Whether DEV names a GPU backend (the cases and, in the child processes, PyTorch's device follow it)."""
  return os.environ.get("DEV", "CPU").upper().split(":")[0] in ("CUDA", "NV", "AMD", "METAL", "CL", "GPU")


def measure(framework: str, name: str, mode: str, batch: int, size: tuple[int, int], iters: int,
            threads: int | None = None, half: bool = False, cores: int | None = None) -> dict | None:
  spec = json.dumps(MODELS[name])
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
  if half:
    env.update(BENCH_HALF="1", DEFAULT_FLOAT="HALF")
  if threads:
    env["BENCH_TORCH_THREADS"] = str(threads)
  if cores:
    env["BENCH_CORES"] = str(cores)
  done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), framework, name, mode, str(batch), str(size[0]),
                         str(size[1]), str(iters), spec], capture_output=True, text=True, env=env)
  if done.returncode != 0:
    if framework == "torch" and "No module named 'torch'" in done.stderr:
      return None
    sys.exit(f"{framework} {name} {mode} failed:\n{done.stderr[-3000:]}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def cases(quick: bool, names: list[str], gpu: bool = False,
          infer_batch: int = 1) -> list[tuple[str, str, int, tuple[int, int], int]]:
  """(model, mode, batch, LR size, iterations)."""
  out = []
  for name in names:
    if gpu:  # REFERENCE.md's GPU anchors
      out.append((name, "train", 16, (48, 48), 10 if quick else 30))
      out.append((name, "infer", infer_batch, (270, 480), 20 if quick else 50))
      continue
    heavy = name in ("edsr-baseline", "vdsr", "swinir-light", "conv-transformer", "srcnn-5-5-3")
    # light models get more calls: on this shared 2-core machine a median of three ESPCN steps moved by 50%
    out.append((name, "train", 16, (24, 24) if not heavy or quick else (48, 48), 3 if heavy and quick else 10))
    out.append((name, "infer", 1, (64, 64), 5 if heavy and quick else 20))
    if not quick:
      out.append((name, "infer", 1, (256, 256), 3 if heavy else 10))
      if name == "espcn":
        out.append((name, "infer", 1, (270, 480), 10))  # x4 to 1920x1080
      if name in ("conv-transformer", "srcnn-5-5-3"):
        out.append((name, "train", 16, (80, 80), 3))  # the paper study's step (docs/paper.md)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="ESPCN and EDSR-baseline only, small sizes, few calls")
  parser.add_argument("--models", help=f"comma-separated subset of {','.join(MODELS)}")
  parser.add_argument("--json", action="store_true", help="print one JSON document")
  parser.add_argument("--frameworks", default="tinygrad,torch", help="which to run [tinygrad,torch]")
  parser.add_argument("--half", action="store_true", help="float16 weights and data in both frameworks")
  parser.add_argument("--modes", default="train,infer", help="which to run [train,infer]")
  parser.add_argument("--cores", type=int, help="CPU cores tinygrad uses, one thread and CPU device each "
                      "(supertiny.runtime.cores) [all; SUPERTINY_CORES]")
  parser.add_argument("--infer-batch", dest="infer_batch", type=int, default=1,
                      help="frames per inference call on a GPU [1]")
  args = parser.parse_args()
  frameworks, modes = args.frameworks.split(","), args.modes.split(",")
  names = args.models.split(",") if args.models else (["espcn", "edsr-baseline"] if args.quick else list(MODELS))
  unknown = [n for n in names if n not in MODELS]
  if unknown:
    sys.exit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
  rows = []
  if not args.json:
    print(f"{'model':<14} {'mode':<6} {'batch x LR size':<16} {'tinygrad ms':>12} {'torch ms':>10} {'ratio':>6} "
          f"{'torch 1t ms':>11} {'ratio 1t':>8} {'tg img/s':>9} {'tg MiB':>8} {'torch MiB':>9} {'tg 1st s':>8}")
  nan = float("nan")
  for name, mode, batch, size, iters in cases(args.quick, names, on_gpu(), args.infer_batch):
    if mode not in modes:
      continue
    tiny = (measure("tinygrad", name, mode, batch, size, iters, half=args.half, cores=args.cores)
            if "tinygrad" in frameworks else None)
    torch = measure("torch", name, mode, batch, size, iters, half=args.half) if "torch" in frameworks else None
    on_cpu = torch is not None and torch["device"] == "cpu"
    single = measure("torch", name, mode, batch, size, iters, threads=1, half=args.half) if on_cpu else None
    row = {"model": name, "mode": mode, "batch": batch, "lr_size": list(size), "tinygrad": tiny, "torch": torch,
           "torch_1_thread": single, "ratio": tiny["ms"] / torch["ms"] if tiny and torch else None,
           "ratio_1_thread": tiny["ms"] / single["ms"] if tiny and single else None}
    rows.append(row)
    if not args.json:
      def get(r: dict | None, key: str) -> float:
        return nan if r is None or r[key] is None else r[key]

      def memory(r: dict | None) -> str:
        if r is None:
          return "-"
        return f"{r['peak_device_mib'] if r['peak_device_mib'] is not None else r['peak_rss_mib']:.0f}"
      print(f"{name:<14} {mode:<6} {f'{batch} x {size[0]}x{size[1]}':<16} {get(tiny, 'ms'):12.2f} "
            f"{get(torch, 'ms'):10.2f} {get(row, 'ratio'):6.2f} {get(single, 'ms'):11.2f} "
            f"{get(row, 'ratio_1_thread'):8.2f} {get(tiny, 'images_per_s'):9.1f} {memory(tiny):>8} "
            f"{memory(torch):>9} {get(tiny, 'first_call_s'):8.1f}", flush=True)
  if args.json:
    first = rows[0]["tinygrad"] or rows[0]["torch"] if rows else None
    print(json.dumps({"device": first["device"] if first else None, "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
