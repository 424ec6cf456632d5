#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run, on a CUDA machine with PyTorch installed:
#   bash benchmarks/gpu_check.sh [OUT_DIR] [SECONDS]
# tinygrad is installed from .whl/ when that folder holds its wheel (a machine with no package index), else it
# must be importable already. Steps run in order of importance, each under its own time limit, and a step that
# would not fit in the remaining SECONDS [460] is skipped; every step's output is kept in OUT_DIR [gpu-results].
set -u
out=${1:-gpu-results}
budget=${2:-460}
mkdir -p "$out"
began=$SECONDS
source benchmarks/cuda_env.sh

step() {  # step NAME LIMIT_SECONDS COMMAND...: run COMMAND if LIMIT fits in what is left of the budget
  local name=$1 limit=$2
  shift 2
  local left=$((budget - (SECONDS - began)))
  if [ "$left" -lt "$limit" ]; then
    echo "== $name: skipped ($left s left, needs $limit)"
    return
  fi
  echo "== $name ($((SECONDS - began)) s in)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]}"
}

nvidia-smi -L
step sanity 60 $py -c "
from tinygrad import Device, Tensor
import torch
print('tinygrad', Device.DEFAULT, (Tensor([1.0, 2.0]) * 2).tolist(), '| torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA', 'cudnn.allow_tf32', torch.backends.cudnn.allow_tf32)"
grep -q "\[2.0, 4.0\]" "$out/sanity.log" || { echo "tinygrad does not run on CUDA here"; exit 1; }

speed="$py benchmarks/speed.py --quick"
step fp32 170 $speed
step tf32 80 env ALLOW_TF32=1 $speed --frameworks tinygrad
step half 120 $speed --half
step psnr 90 bash -c "for env in BENCH=fp32 ALLOW_TF32=1 DEFAULT_FLOAT=HALF; do echo \$env;
  env \$env $py -m supertiny eval tests/assets/Set5 tests/assets/Set14 --model espcn_x4_y --scale 4 --json; done"
step kernels 60 env DEBUG=2 NO_COLOR=1 $py -c "
from tinygrad import Device, Tensor
from tinygrad.nn.optim import Adam
from supertiny.models import create_model
from supertiny.train import make_train_step, training
model = create_model('espcn', scale=4, channels=1)
x = Tensor.rand(1, 1, 270, 480).realize()
for i in range(2):
  print('--- espcn x4 inference 480x270, call', i)
  model(x).realize()
step = make_train_step(model, Adam(model.parameters(), lr=1e-4), 'l1')
lr, hr = Tensor.rand(16, 1, 48, 48).realize(), Tensor.rand(16, 1, 192, 192).realize()
for i in range(2):
  print('--- espcn x4 training step, call', i)
  with training():
    step(lr, hr)
Device[Device.DEFAULT].synchronize()"
step batch8 60 $speed --models espcn --modes infer --infer-batch 8
step fuse_optim 80 env FUSE_OPTIM=1 $speed --frameworks tinygrad --modes train
step beam 150 env BEAM=2 $speed --models espcn --modes infer --frameworks tinygrad
step zoo 90 $py -m pytest -q -x -p no:cacheprovider tests/models/test_zoo.py -k matches_pytorch
echo "== done in $((SECONDS - began)) s"
