# Sourced by the scripts run on a lent CUDA machine (benchmarks/gpu_check.sh, configs/gpu_train.sh): installs the
# wheels in .whl/ where the machine has no package index, and points tinygrad at libnvrtc and libcuda.
py=${PYTHON:-python3}
export DEV=${DEV:-CUDA} PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/tinygrad-*.whl >/dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
# tinygrad looks for libnvrtc and libcuda in the usual folders; point it at them where they live elsewhere
for lib in nvrtc cuda; do
  var=$(echo "$lib" | tr a-z A-Z)_PATH
  if [ -z "${!var:-}" ] && ! ldconfig -p | grep -q "lib$lib\.so"; then
    found=$(find /usr/local /opt -name "lib$lib.so*" -type f 2>/dev/null | sort | head -1)
    [ -n "$found" ] && export "$var=$found" && echo "$var=$found"
  fi
done
# the CPU device (which tinygrad opens to copy to and from files) compiles small helpers with $CC as clang; where
# there is no clang, gcc does it through a wrapper that drops clang's --target and writes the object to stdout
if ! command -v clang >/dev/null; then
  cat > /tmp/gcc_as_clang <<'WRAPPER'
#!/usr/bin/env bash
args=() prev= obj=$(mktemp)
trap 'rm -f "$obj"' EXIT
for a in "$@"; do
  if [[ $prev == -o && $a == - ]]; then args+=("$obj"); elif [[ $a != --target=* ]]; then args+=("$a"); fi
  prev=$a
done
"$TINYGRAD_GCC" "${args[@]}" && cat "$obj"
WRAPPER
  chmod +x /tmp/gcc_as_clang
  export TINYGRAD_GCC=${CC:-gcc}
  export CC=/tmp/gcc_as_clang
else
  export CC=clang
fi
