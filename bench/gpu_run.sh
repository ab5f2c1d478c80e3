#!/usr/bin/env bash
# Run ON THE GPU MACHINE, in one `run` call: `bash bench/gpu_run.sh`, carry [".whl"] (made by bench/gpu_wheels.sh
# here), timeout_s 540. It installs the carried wheels, records what it runs on, then runs bench/gpu_bench.py twice:
# eager (at most 170 s) and compiled (at most 330 s: a cold torch.compile of the SD-sized UNet takes minutes). The
# runs are independent: a failed agreement check or a killed compile still leaves the other run's figures. Logs go
# to $OUT (the device tool's returned folder), or to /tmp/gpu_bench elsewhere. Extra arguments go to both runs.
# Locally, `COMPILE=0 bash bench/gpu_run.sh --smoke` tries the plumbing on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}   # the GPU image's python3 holds its torch
out=${OUT:-/tmp/gpu_bench}; mkdir -p "$out"
if compgen -G '.whl/*.whl' >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_run: installing the carried wheels failed"; exit 2; }
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | tee "$out/machine.txt"
"$py" -c 'import torch, diffusers, transformers, fastcore, discffusion.scoring as s
print("python3", __import__("sys").version.split()[0], "torch", torch.__version__, "diffusers", diffusers.__version__,
      "transformers", transformers.__version__, "cuda", torch.cuda.is_available(), "from", s.__file__)' \
  2>&1 | tee -a "$out/machine.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "gpu_run: imports failed (were the wheels carried? bench/gpu_wheels.sh)"; exit 3; }
timeout 170 "$py" bench/gpu_bench.py --repeats 5 "$@" 2>&1 | tee "$out/eager.log"; rc=${PIPESTATUS[0]}
if [ "${COMPILE:-1}" != 0 ]; then
  timeout 330 "$py" bench/gpu_bench.py --repeats 5 --compile "$@" 2>&1 | tee "$out/compiled.log"
  rc=$(( rc ? rc : PIPESTATUS[0] ))
fi
exit "$rc"
