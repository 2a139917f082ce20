"""The GPU step: train the release's three models on the remote accelerator in two prepared runs.

`pack` (here) -> `tools/device_train.sh` running `remote` (there) -> `rebuild` (here); the plan,
the sizes and why are in `cxr_cascade.device.plan`, each half's contract in its module.
"""
