"""Training: configs in, run directories out (see `runner.train`).

Modules: `runner` (the epoch loop, resume, evaluation), `data` (config + paths -> tf.data),
`callbacks` (divergence guard, ETA, CSV log, curves PNG), `run_dir` (layout, atomic writes,
environment capture), `strategy` (tf.distribute, mixed precision, XLA, determinism), `backend`
(TensorFlow or one device on JAX / PyTorch), `arrays` (in-memory Pillow + NumPy data off TF).
"""
