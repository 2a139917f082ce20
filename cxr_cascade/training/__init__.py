"""Training: configs in, run directories out (see `runner.train`).

Modules: `runner` (the epoch loop, resume, evaluation), `data` (config + paths -> tf.data),
`callbacks` (divergence guard, ETA, CSV log, curves PNG), `checkpoint` (the one checkpoint
writer), `environment` (versions and devices of a run), `strategy` (tf.distribute, mixed
precision, XLA, determinism), `backend` (TensorFlow or one device on JAX / PyTorch), `arrays`
(in-memory Pillow + NumPy data off TF). The run folder's layout and the verification of its
checkpoints live in `cxr_cascade.artifacts`.
"""
