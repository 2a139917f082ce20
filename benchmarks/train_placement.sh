#!/usr/bin/env bash
# Epoch time of `cxr-cascade train` with the augmentation on the host (augment.placement=pipeline)
# and in the model (augment.placement=model), same experiment and data, one after the other.
# Run on the H200 (2026-11-30, JAX, no TensorFlow there) as
#   KERAS_BACKEND=jax N=800 S=512 E=3 T=150 bash benchmarks/train_placement.sh
# results: benchmarks/results/h200/train-placement/ (log, each run's state.json with per-epoch seconds).
# N phantoms of S px (kermany layout), E epochs of demo_stage1 (SEME-ResNet50) at S px, batch 32,
# rotation +-30 degrees; T: time limit of each training in seconds.
set -u
N=${N:-600}; S=${S:-256}; E=${E:-2}
python3 -m cxr_cascade data phantoms --out /tmp/ph --n $N --size $S --formats kermany > /tmp/ph.log 2>&1 || { tail -5 /tmp/ph.log; exit 1; }
for P in pipeline model; do
  timeout ${T:-150} python3 -m cxr_cascade train demo_stage1 --backend jax --data /tmp/ph/chest_xray --run-dir /tmp/run_$P --quiet \
    --set image_size=$S --set epochs=$E --set batch_size=32 --set dedup=off --set augment.rotation_degrees=30 --set augment.placement=$P > /tmp/train_$P.log 2>&1
  echo "placement=$P rc=$?"; tail -3 /tmp/train_$P.log
  python3 -c "import json,sys; s=json.load(open('/tmp/run_$P/state.json')); print('$P', [(h['epoch'], h['seconds'], round(h.get('val_accuracy',0),3)) for h in s['history']])"
done
