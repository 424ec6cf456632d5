#!/usr/bin/env bash
# Training runs side by side on one lent CUDA machine, all stopped at one deadline with SIGINT (each saves a
# checkpoint that resumes here or on the CPU), their folders packed into OUT_DIR in at most 8 files:
#   bash configs/gpu_train.sh OUT_DIR [SECONDS] [ONLY]
# SECONDS [480]: the whole script's budget; ONLY: a regular expression choosing jobs by name (all when empty).
# Expects device_data/{T91,BSDS200} (the training images, used as ../shared/datasets when that is absent) and
# device_data/training/RUN/ (the committed runs to resume or start from, as in training/): configs/device_data.py.
set -u
out=${1:?usage: configs/gpu_train.sh OUT_DIR [SECONDS] [ONLY]}
budget=${2:-480}
only=${3:-}
began=$SECONDS
mkdir -p "$out" logs
source benchmarks/cuda_env.sh

for set in T91 BSDS200; do
  if [ ! -e "../shared/datasets/$set" ]; then
    mkdir -p ../shared/datasets && ln -s "$PWD/device_data/$set" "../shared/datasets/$set"
  fi
done
mkdir -p training runs && cp -rn device_data/training/. training/

timeout 120 $py -c "from tinygrad import Device, Tensor; print(Device.DEFAULT, (Tensor([1.0, 2.0]) * 2).tolist())
from tinygrad.nn.state import safe_save, safe_load; safe_save({'w': Tensor([3.0])}, '/tmp/w.st'); print('file round trip', safe_load('/tmp/w.st')['w'].numpy())" \
  2>&1 | tee logs/sanity.log
grep -q "\[2.0, 4.0\]" logs/sanity.log || { echo "tinygrad does not run here"; exit 1; }

# jobs stop at the deadline with SIGINT, leaving time to save their checkpoints and pack the folders
deadline=$((began + budget - 50))
train() {  # train NAME CONFIG [--resume]: runs/NAME, resumed from training/NAME when asked
  local name=$1 config=$2
  shift 2
  [ "${1:-}" = --resume ] && cp -r "training/$name" "runs/$name"
  timeout -s INT -k 30 $((deadline - SECONDS)) $py -m supertiny train --config "$config" --out "runs/$name" "$@"
}
paper() {  # paper NAME METHOD SETTING: one run of the paper study, resumed from training/paper/SETTING/METHOD
  local name=$1 method=$2 setting=$3
  mkdir -p "runs/$name/runs/$setting" && cp -r "training/paper/$setting/$method" "runs/$name/runs/$setting/"
  timeout -s INT -k 30 $((deadline - SECONDS)) $py -m supertiny paper --out "runs/$name" --resume \
    --methods "$method" --settings "$setting"
}
fsrcnn_x3_centred() {  # the L2 stage of the from-scratch centred FSRCNN x3 (finished; its best is committed)
  train fsrcnn_x3_291_centred_l2 configs/fsrcnn_x3_291_centred_l2.toml
}
job() {  # job NAME COMMAND...: in the background, logged to logs/NAME.log, unless ONLY leaves it out
  local name=$1
  shift
  [[ -n "$only" && ! "$name" =~ $only ]] && return
  echo "== $name started at $((SECONDS - began)) s"
  ( "$@" > "logs/$name.log" 2>&1; echo "== exit $? at $((SECONDS - began)) s" >> "logs/$name.log" ) &
}

job paper_srcnn paper paper_srcnn srcnn paper
job paper_tc paper paper_tc transposed-conv paper+batchnorm
job fsrcnn_x3_centred fsrcnn_x3_centred
job fsrcnn_x3_long train fsrcnn_x3_291_interior_long configs/fsrcnn_x3_291_interior_long.toml
job espcn_x3_long train espcn_x3_291_interior_long configs/espcn_x3_291_interior_long.toml
job fsrcnn_x2_interior train fsrcnn_x2_291_interior configs/fsrcnn_x2_291_interior.toml --resume
job tc_x2 train transposed_conv_x2_t91 configs/transposed_conv_x2_t91.toml
job tc_x3 train transposed_conv_x3_t91 configs/transposed_conv_x3_t91.toml
job vdsr train vdsr_x3_291 configs/vdsr_x3_291.toml
job edsr train edsr_baseline_x4_291 configs/edsr_baseline_x4_291.toml
job conv_transformer train conv_transformer_x4_291 configs/conv_transformer_x4_291.toml
nvidia-smi -L 2>/dev/null
wait
echo "== all jobs ended at $((SECONDS - began)) s"

# at most 8 files of at most 16 MiB come back: the small runs in one, each heavy run's last checkpoint in parts
heavy="vdsr_x3_291 edsr_baseline_x4_291 conv_transformer_x4_291"
small=$(cd runs && ls -d */ | tr -d / | grep -vxF -f <(tr ' ' '\n' <<< "$heavy"))
tar -cf "$out/small.tar" --exclude=data --exclude='events.*' --exclude='*.png' logs $(printf 'runs/%s ' $small)
for run in $heavy; do
  [ -d "runs/$run" ] || continue
  [ -f "runs/$run/last.safetensors" ] && split -b 15M "runs/$run/last.safetensors" "$out/${run}_last.part-"
  tar -cf "$out/${run}_rest.tar" --exclude=last.safetensors --exclude='events.*' "runs/$run"
done
ls -la "$out"
echo "== done in $((SECONDS - began)) s"
