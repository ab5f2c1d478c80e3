#!/usr/bin/env bash
# Run HERE (where pip reaches the package registry), before lending bench/gpu_run.sh to the GPU machine.
# The lent H200's image has torch, transformers, peft, accelerate, tqdm and safetensors, but not diffusers or
# fastcore, and nothing can be installed there from a registry: this saves the two as wheels in .whl/ (git-ignored),
# at the versions installed here (the ones the tests ran with), for Python 3.12 (the image's python3). Pass the
# folder to the device as `carry: [".whl"]`; bench/gpu_run.sh installs them there.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=$(python3 -c 'import diffusers, fastcore; print(f"diffusers=={diffusers.__version__} fastcore=={fastcore.__version__}")')
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl $pins
ls .whl
