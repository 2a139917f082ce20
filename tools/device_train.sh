#!/usr/bin/env bash
# One remote run of the GPU step (cxr_cascade/device): install the carried wheels, then size,
# train, and shard the pack's trainings into OUT.
#
#   bash tools/device_train.sh PACK [OUT]      (OUT defaults to $OUT, the device tool's folder)
#
# The two runs (`make train-device` packs them; README "Training on the GPU machine"):
#   run a  U-Net (lung-masks, 256 px) + stage 1 (Kermany, 224 px): pack ~54 MiB + code tree;
#          back: U-Net model.keras (float32) + stage 1 as float16 weights, ~61 MiB in 4 shards
#   run b  stage 2 (ieee8023, 224 px) + run a's U-Net carried up: pack ~15 MiB + code tree;
#          back: stage 2 model.keras (float32), ~55 MiB in 4 shards
# Each run: `cxr-cascade train EXPERIMENT --backend jax` with the release experiment files,
# bfloat16, augment.placement=model (classifiers), epochs sized on the remote from a measured
# step to fit the plan's time limit (500 s of the 9-minute run), capped at the paper rows' counts.
# Device command (the lead's): run(command="bash tools/device_train.sh build/device/a",
#   carry=["build/device/a"], timeout_s=560); then `make train-device-rebuild FROM=<files_at>`.
set -euo pipefail
PACK=${1:?usage: tools/device_train.sh PACK [OUT]}
DEST=${2:-${OUT:?set OUT or pass it as the second argument}}
PYTHON=${PYTHON:-python3}
mkdir -p "$DEST"
PACK=$(cd "$PACK" && pwd)
DEST=$(cd "$DEST" && pwd)
if compgen -G "$PACK/wheels/*.whl" >/dev/null; then
    SITE=${DEVICE_SITE:-/tmp/cxr-cascade-site}
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "$PACK"/wheels/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
exec "$PYTHON" -m cxr_cascade.device remote "$PACK" --out "$DEST"
