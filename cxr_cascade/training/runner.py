"""The training loop: one config + data in, one run directory out; killed at any moment, resumable.

Resume contract (checked by tests/test_resume.py): a run killed at any instant and restarted with
`resume=True` ends with the same weights and metrics as a run that was never interrupted, when ops
are deterministic (`config.deterministic`, the default). That holds because everything epoch `e`
depends on is either in the checkpoint or a pure function of `(seed, e)`:

- model weights and optimizer state (slots, iteration count, hence the learning-rate schedule's
  position) are in `checkpoints/epoch-NNNN.weights.h5`;
- the training data order and augmentation come from a dataset rebuilt each epoch from
  `seeds.epoch_seed(seed, e)` (never from an iterator that has history);
- in-model randomness (MoEx pairing, dropout) comes from Keras seed generators whose states are
  reset to a function of `(seed, epoch)` at the start of each epoch, and the global seeds likewise;
- the history, best metric and the name of the last checkpoint are in `state.json`, written after
  the checkpoint it names, so a kill between the two leaves the previous consistent pair.

Inside an epoch the same holds at step granularity (`time_budget`, SIGTERM, `save_every`): a
partial checkpoint (`checkpoint.Checkpointer.save_partial`) also records the seed generators'
states and the epoch's running metric sums, and the resumed epoch skips the batches already
trained on (the epoch's data set is a pure function of `(seed, e)`, so `skip(k)` yields exactly
the batches the interrupted run had not reached).
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import keras

from cxr_cascade.artifacts.checkpoints import latest_good_checkpoint, rewind_state, weights_file_problem
from cxr_cascade.artifacts.layout import RunDir
from cxr_cascade.artifacts.stage import write_model
from cxr_cascade.config import ExperimentConfig, from_dict
# The one metrics module: the same numbers `cxr-cascade evaluate` reports.
from cxr_cascade.evaluation.metrics import classification_metrics
from cxr_cascade.models import BalancedAccuracy, DiceBCELoss, mean_iou
from cxr_cascade.models.build import build_model
from cxr_cascade.selection import parse_data_arg
from cxr_cascade.training import callbacks as cb
from cxr_cascade.training import data as data_mod
from cxr_cascade.training.budget import BudgetStop, SigtermFlag, StepBudget, budget_spent
from cxr_cascade.training.checkpoint import Checkpointer
from cxr_cascade.training.environment import capture_environment
from cxr_cascade.training.seeds import reset_model_seeds, seed_host_rngs
from pipelines.atomic import atomic_write_json
# TensorFlow's strategies on the TF backend, one device on JAX / PyTorch (training.backend).
from cxr_cascade.training.backend import process_settings, setup_runtime

STATE_VERSION = 1
ModelFn = Callable[[ExperimentConfig], keras.Model]


class ResumeError(ValueError):
    """A run directory cannot be resumed (or would be overwritten): one clear line."""


# ---------------------------------------------------------------------------- model

def make_optimizer(config: ExperimentConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """SGD/Adam with a constant rate or one cosine-annealing cycle over the whole run.

    Cosine annealing (Loshchilov & Hutter 2017), as the paper uses for stage 2 (0.1 -> 1e-8) and the
    U-Net: `lr_t = lr_min + (lr_max - lr_min) (1 + cos(pi t / T)) / 2`, t counted in steps.
    """
    if config.lr_schedule == "cosine":
        rate: Any = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate,
            decay_steps=max(1, config.epochs * steps_per_epoch),
            alpha=config.lr_min / config.learning_rate,
        )
    else:
        rate = config.learning_rate
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=config.momentum)
    return keras.optimizers.Adam(learning_rate=rate)


def compile_model(model: keras.Model, config: ExperimentConfig, steps_per_epoch: int,
                  jit_compile: bool) -> None:
    optimizer = make_optimizer(config, steps_per_epoch)
    if config.task == "unet":
        loss: Any = DiceBCELoss()
        metrics: list[Any] = [mean_iou()]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if config.monitor == "val_balanced_accuracy":  # model selection a majority class cannot game
            metrics.append(BalancedAccuracy(len(config.classes)))
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit_compile)


def _current_lr(model: keras.Model) -> float:
    optimizer = model.optimizer
    rate = optimizer.learning_rate
    try:
        return float(keras.ops.convert_to_numpy(rate))
    except Exception:  # a schedule object on some Keras versions
        return float(keras.ops.convert_to_numpy(rate(optimizer.iterations)))


def _resume_checkpoint(rd: RunDir, config: ExperimentConfig) -> Path:
    """The newest intact checkpoint of the run (`latest_good_checkpoint`); damaged ones passed
    over get one line each on stderr; none left is one `ResumeError` line."""
    checkpoint, notes = latest_good_checkpoint(rd.root)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    if checkpoint is None:
        raise ResumeError(
            f"--resume {rd.root}: no intact checkpoint left"
            + (f" ({notes[-1]})" if notes else "")
            + "; start a new run with another --run-dir"
        )
    return checkpoint


def _weights_finite(model: keras.Model) -> bool:
    return all(
        np.isfinite(keras.ops.convert_to_numpy(v)).all() for v in model.trainable_variables
    )


# ---------------------------------------------------------------------------- state
def _fresh_state(config: ExperimentConfig) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "experiment": config.name,
        "epochs_completed": 0,
        "checkpoint": None,
        "best": {"epoch": None, "value": None, "monitor": config.monitor},
        "history": [],
        "wall_seconds": 0.0,
        "data_order": "dataset rebuilt per epoch from seed + epoch",
        "finished": False,
        "stopped": None,
    }


def _is_better(value: float, best: Optional[float], mode: str) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if mode == "max" else value < best


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    state: dict[str, Any]
    results: Optional[dict[str, Any]]
    # Why the run stopped before its last epoch ("time budget", "SIGTERM", ...), resumably; None
    # when it finished or stopped after `stop_after_epochs`.
    stopped: Optional[str] = None


class _RestoreMetrics(keras.callbacks.Callback):
    """Puts a partial checkpoint's running metric sums back after `fit` resets them."""

    def __init__(self, partial: dict[str, Any]):
        super().__init__()
        self.partial = partial

    def on_epoch_begin(self, epoch, logs=None):
        Checkpointer.restore_metrics(self.model, self.partial)


def _build_compiled_metrics(model: keras.Model, dataset) -> None:
    """Creates the compiled loss and metrics' variables now, from one batch of `dataset` (which
    must not be the epoch's training set: iterating it twice reshuffles it). TensorFlow defers
    that to the first step's trace, after the callbacks that put a partial checkpoint's running
    sums back."""
    batch = dataset[0] if isinstance(dataset, keras.utils.PyDataset) else next(iter(dataset))
    # Keras has no public call for this; `_symbolic_build` is what `fit` itself uses on JAX.
    model._symbolic_build(data_batch=batch)


def _skip_batches(dataset, count: int):
    """The epoch's data set without its first `count` batches (tf.data or `ArrayDataset`)."""
    return dataset.skip(count) if count else dataset


def prepare_run_dir(config: ExperimentConfig, run_dir: Path, resume: bool,
                    writer: bool = True) -> tuple[ExperimentConfig, dict]:
    """Validates the run directory against `resume` and returns (config, state).

    `writer` is False on non-chief workers: they never write, so a directory the chief has just
    created is not "another run" for them.
    """
    rd = RunDir(run_dir)
    if not writer and not resume:
        return config, _fresh_state(config)
    if resume:
        if not rd.config.is_file():
            raise ResumeError(f"--resume: {run_dir} is not a run directory (no config.json)")
        saved = json.loads(rd.config.read_text())
        stored = from_dict(saved)
        # Runtime-only fields may change on resume (another machine, more GPUs); nothing else.
        runtime_fields = {"strategy", "mixed_precision", "jit_compile", "epochs"}
        wanted = config.to_dict()
        changed = [k for k, v in stored.to_dict().items() if k not in runtime_fields and wanted.get(k) != v]
        if changed:
            raise ResumeError(
                f"--resume: the config differs from the one {run_dir} was started with in "
                f"{', '.join(changed)} (stored: {', '.join(f'{k}={saved.get(k)!r}' for k in changed)})"
            )
        state = rd.read_state() or _fresh_state(config)
        return config, state
    if rd.exists() or rd.config.is_file():
        raise ResumeError(
            f"run directory {run_dir} already holds a run; pass --resume to continue it, "
            "or choose another --run-dir"
        )
    return config, _fresh_state(config)


def train(config: ExperimentConfig, run_dir: str | Path, **kwargs: Any) -> "TrainResult":
    """Trains `config` into `run_dir`; see `_train` for the arguments.

    Global settings changed for the run (dtype policy, op determinism) are restored afterwards.
    """
    with process_settings():
        return _train(config, run_dir, **kwargs)


def _train(
    config: ExperimentConfig,
    run_dir: str | Path,
    *,
    data_paths: Optional[list[str]] = None,
    unet_weights: Optional[str] = None,
    resume: bool = False,
    data=None,
    model_fn: Optional[ModelFn] = None,
    verbose: int | str = "auto",
    argv: Optional[list[str]] = None,
    stop_after_epochs: Optional[int] = None,
    stop_after_steps: Optional[int] = None,
    time_budget: Optional[float] = None,
    save_every: Optional[float] = None,
    skip_bad: bool = False,
    cache_dir: Optional[str] = None,
) -> TrainResult:
    """Trains `config` into `run_dir` (see the module docstring for the resume contract).

    Args:
        config: the validated experiment.
        run_dir: the run directory; created if absent.
        data_paths: data set folders / manifests (`training.data.prepare_data`).
        unet_weights: trained U-Net for stage 2's segmented copies.
        resume: continue the run in `run_dir` from its last completed epoch.
        data: a prepared `DataBundle` (overrides `data_paths`; tests use it for tiny data).
        model_fn: builds the uncompiled model from the config (default: the paper's builders).
        verbose: Keras progress-bar verbosity (bars with ETA on a terminal).
        argv: the command line, recorded in `command.txt` and `results.json`.
        stop_after_epochs: stop (resumably) after this many epochs of this call; for tests.
        stop_after_steps: stop (resumably, step-exact) after this many training steps of this
            call; for tests.
        time_budget: seconds from the call's start after which training stops at the next step
            with a step-exact checkpoint (`--time-budget`); SIGTERM does the same at any time.
            Evaluation of a finished run is not counted in.
        save_every: seconds between step-exact checkpoints inside an epoch (`--save-every`), so
            that a SIGKILL loses at most that much training; None: only at epoch ends.
        skip_bad: leave out unusable images with a warning instead of refusing (`--skip-bad`).
        cache_dir: cache decoded images in keyed files under this directory (`--cache`).

    Returns:
        `TrainResult` with the final state, the test results (None on non-chief workers or when
        the run stopped early) and why it stopped early.

    Raises:
        cb.TrainingDiverged: NaN/inf or divergent loss; the last good checkpoint is kept.
        ResumeError, ValueError, FileNotFoundError: bad run directory, data or config.
    """
    run_dir = Path(run_dir)
    rd = RunDir(run_dir)
    runtime = setup_runtime(config)
    config, state = prepare_run_dir(config, run_dir, resume, writer=runtime.is_chief)
    # Non-chief workers write nothing into the shared run directory.
    out = rd if runtime.is_chief else None
    started = time.monotonic()
    if data is None:
        data = _prepare_data(config, run_dir, runtime, data_paths or [], unet_weights, resume,
                             skip_bad, cache_dir)
    _check_data_classes(config, data)
    if out is not None:
        _write_run_metadata(out, config, runtime, data, resume, argv or sys.argv, data_paths, unet_weights)

    model_fn = model_fn or build_model
    checkpointer = Checkpointer(rd)
    model, state, partial = _restore_model(config, rd, state, runtime, data.steps_per_epoch,
                                           model_fn, checkpointer, resume)
    first = int(state["epochs_completed"])
    _announce(config, run_dir, state, partial, data.steps_per_epoch, resume)
    with SigtermFlag() as sigterm:
        loop = _Loop(
            model=model, config=config, data=data, state=state, rd=rd, out=out,
            checkpointer=checkpointer, guard=cb.DivergenceGuard(), timer=cb.EpochTimer(config.epochs, first),
            metric="mean_iou" if config.task == "unet" else "accuracy", verbose=verbose,
            scalars=cb.ScalarLog(rd.tensorboard) if out is not None else None,
            deadline=started + time_budget if time_budget is not None else None,
            sigterm=sigterm, save_every=save_every, stop_after_steps=stop_after_steps,
        )
        stopped = _run_epochs(loop, first, partial, stop_after_epochs)

    if stopped is not None:
        return _stop_early(config, rd, out, state, stopped, data.steps_per_epoch)
    results = None
    if state["epochs_completed"] >= config.epochs:
        state["finished"] = True
        state["stopped"] = None
        if out is not None:
            results = evaluate_run(config, run_dir, data, model_fn, state, argv or sys.argv)
            state["results"] = str(rd.results.relative_to(run_dir))
            rd.write_state(state)
    return TrainResult(run_dir=run_dir, state=state, results=results)


# ---------------------------------------------------------------------------- the sections of _train
def _prepare_data(config: ExperimentConfig, run_dir: Path, runtime, data_paths: list[str],
                  unet_weights: Optional[str], resume: bool, skip_bad: bool, cache_dir: Optional[str]):
    """The run's `DataBundle` from `data_paths` (`training.data.prepare_data`)."""
    return data_mod.prepare_data(
        config,
        data_paths,
        run_dir=run_dir if runtime.is_chief else None,
        resume=resume,
        unet_weights=unet_weights,
        num_replicas=runtime.replicas,
        skip_bad=skip_bad,
        # One writer per cache file: TensorFlow refuses a second concurrent cache writer.
        cache_dir=cache_dir if runtime.is_chief else None,
    )


def _check_data_classes(config: ExperimentConfig, data) -> None:
    if config.is_classifier and tuple(data.class_names) != tuple(config.classes):
        raise ValueError(
            f"experiment {config.name!r}: the data's classes {list(data.class_names)} differ from the "
            f"config's `classes` {list(config.classes)}"
        )


def _write_run_metadata(rd: RunDir, config: ExperimentConfig, runtime, data, resume: bool,
                        argv: list[str], data_paths: Optional[list[str]],
                        unet_weights: Optional[str]) -> None:
    """config.json (kept on resume), environment.json, command.txt, inputs.json (first call
    only) and the split manifest: what the run was, before any epoch of it."""
    rd.root.mkdir(parents=True, exist_ok=True)
    if not resume or not rd.config.is_file():
        atomic_write_json(rd.config, config.to_dict())
    env = capture_environment()
    env.update(
        strategy=runtime.name,
        replicas=runtime.replicas,
        precision_policy=runtime.precision_policy,
        jit_compile=runtime.jit_compile,
        deterministic=config.deterministic,
    )
    atomic_write_json(rd.environment, env)
    rd.append_command(argv)
    inputs = rd.inputs
    if not inputs.is_file() and (data_paths or unet_weights):
        atomic_write_json(inputs, {
            "data": [_absolute_data_arg(p) for p in data_paths or []],
            "unet": str(Path(unet_weights).resolve()) if unet_weights else None,
        })
    if data.records:
        data_mod.write_split_manifest(rd, data.records, resume=resume)


def _restore_model(config: ExperimentConfig, rd: RunDir, state: dict[str, Any], runtime,
                   steps: int, model_fn: ModelFn, checkpointer: Checkpointer,
                   resume: bool) -> tuple[keras.Model, dict[str, Any], Optional[dict[str, Any]]]:
    """The compiled model under the runtime's strategy, with the run's last intact epoch
    checkpoint and (on resume) its partial checkpoint loaded; returns (model, state rewound to
    that checkpoint, the partial checkpoint's record or None)."""
    partial = None
    with runtime.strategy.scope():
        model = model_fn(config)
        compile_model(model, config, steps, runtime.jit_compile)
        if state["checkpoint"] or state.get("partial"):
            model.optimizer.build(model.trainable_variables)
        if state["checkpoint"]:
            checkpoint = _resume_checkpoint(rd, config)
            state = rewind_state(state, rd.root, checkpoint, config.monitor_mode)
            model.load_weights(checkpoint)
        if resume:
            partial = checkpointer.load_partial(model, state)
    return model, state, partial


def _announce(config: ExperimentConfig, run_dir: Path, state: dict[str, Any],
              partial: Optional[dict[str, Any]], steps: int, resume: bool) -> None:
    first = int(state["epochs_completed"])
    if resume:
        inside = f", step {partial['step']}/{steps} of epoch {first + 1}" if partial else ""
        print(f"resuming {config.name} from epoch {first}/{config.epochs}{inside} in {run_dir}",
              flush=True)
    if state.get("finished") and first >= config.epochs:
        print(f"{run_dir}: run already finished ({first} epochs)", flush=True)


def _run_epochs(loop: "_Loop", first: int, partial: Optional[dict[str, Any]],
                stop_after_epochs: Optional[int]) -> Optional[str]:
    """Epochs `first` .. `config.epochs - 1` (the first one continued after `partial`); returns
    None, or why the run stopped early (then resumable)."""
    run_epochs = 0
    for epoch in range(first, loop.config.epochs):
        if stop_after_epochs is not None and run_epochs >= stop_after_epochs:
            return None
        stopped = loop.boundary_stop() or _train_epoch(loop, epoch, partial)
        partial = None
        if stopped is not None:
            return stopped
        run_epochs += 1
    return None


def _stop_early(config: ExperimentConfig, rd: RunDir, out: Optional[RunDir], state: dict[str, Any],
                stopped: str, steps: int) -> TrainResult:
    """Records why and where the run stopped in `state.json` and says how to continue it."""
    where = state.get("partial")
    at = (f"epoch {where['epoch']}, step {where['step']}/{steps}" if where
          else f"after epoch {state['epochs_completed']}")
    state["stopped"] = f"{stopped}: {at}"
    if out is not None:
        rd.write_state(state)
    print(f"{config.name}: stopped ({stopped}) at {at} of {config.epochs} epochs; continue with "
          f"`cxr-cascade train --resume {rd.root}`", flush=True)
    return TrainResult(run_dir=rd.root, state=state, results=None, stopped=stopped)


@dataclasses.dataclass
class _Loop:
    """What every epoch of one `_train` call shares (`out` is None on non-chief workers)."""

    model: keras.Model
    config: ExperimentConfig
    data: Any
    state: dict[str, Any]
    rd: RunDir
    out: Optional[RunDir]
    checkpointer: Checkpointer
    guard: cb.DivergenceGuard
    timer: cb.EpochTimer
    scalars: Optional[cb.ScalarLog]
    metric: str
    verbose: int | str
    deadline: Optional[float]
    sigterm: SigtermFlag
    save_every: Optional[float]
    stop_after_steps: Optional[int]
    steps_done: int = 0  # training steps of this call

    def boundary_stop(self) -> Optional[str]:
        """Why to stop before the next epoch starts, or None."""
        return budget_spent(self.sigterm, self.deadline)


def _train_epoch(loop: _Loop, epoch: int, partial: Optional[dict[str, Any]]) -> Optional[str]:
    """Epoch `epoch` (0-based), or the rest of it after `partial`: fit, divergence checks,
    checkpoint, history. Returns None, or why it stopped between two steps (the time budget,
    SIGTERM, `stop_after_steps`), a partial checkpoint then written."""
    model, config, data, state, rd = loop.model, loop.config, loop.data, loop.state, loop.rd
    run_dir = rd.root
    seed_host_rngs(config.seed, epoch)
    reset_model_seeds(model, config.seed, epoch)
    steps = data.steps_per_epoch
    train_ds = data.make_train(epoch)
    callbacks: list[keras.callbacks.Callback] = [loop.guard, cb.RunProgress(config.epochs)]
    first_step, carried_seconds = 0, 0.0
    if partial is not None:
        first_step, carried_seconds = int(partial["step"]), float(partial["seconds"])
        train_ds = _skip_batches(train_ds, first_step)
        # From the validation set: a second iteration of `train_ds` would be shuffled afresh.
        _build_compiled_metrics(model, data.val)
        # After the build, which may draw from the model's seed generators.
        Checkpointer.restore_seed_states(model, partial)
        callbacks.append(_RestoreMetrics(partial))
    fit_started = time.monotonic()

    def save_partial(step: int) -> None:
        if loop.out is not None:
            loop.checkpointer.save_partial(model, state, epoch + 1, step,
                                           carried_seconds + time.monotonic() - fit_started)

    budget = StepBudget(first_step=first_step, epoch_steps=steps, deadline=loop.deadline,
                        stop_after_steps=loop.stop_after_steps, steps_done=loop.steps_done,
                        sigterm=loop.sigterm, save_every=loop.save_every, on_save=save_partial)
    callbacks.append(budget)
    loop.timer.start_epoch()
    try:
        history = model.fit(
            train_ds,
            validation_data=data.val,
            initial_epoch=epoch,
            epochs=epoch + 1,
            callbacks=callbacks,
            verbose=loop.verbose,
            shuffle=False,  # the data set is already shuffled per epoch from (seed, epoch)
        )
    except BudgetStop as stop:
        save_partial(stop.step)
        return stop.reason
    finally:
        loop.steps_done = budget.steps_done
    logs = {k: float(v[-1]) for k, v in history.history.items() if v}
    problem = loop.guard.problem or cb.check_epoch_divergence(
        logs, state["history"], config.divergence_factor
    )
    if not problem and not _weights_finite(model):
        # A clipped loss (cross-entropy clips probabilities) can stay finite over NaN weights.
        problem = f"weights became NaN/inf during epoch {epoch + 1}"
    if problem:
        last = state["checkpoint"] or "none (no epoch completed)"
        state["stopped"] = f"diverged: {problem}"
        if loop.out is not None:
            rd.write_state(state)
        raise cb.TrainingDiverged(
            f"training stopped: {problem}. Last good checkpoint: {last} in {run_dir}. "
            "Try a lower learning_rate (--set learning_rate=...)"
        )
    seconds, line = loop.timer.end_epoch(epoch)
    seconds += carried_seconds
    row = {"epoch": epoch + 1, **logs, "lr": _current_lr(model), "seconds": round(seconds, 3)}
    state["history"].append(row)
    state["epochs_completed"] = epoch + 1
    state["wall_seconds"] = float(state.get("wall_seconds", 0.0)) + seconds
    monitored = logs.get(config.monitor)
    improved = _is_better(monitored, state["best"]["value"], config.monitor_mode)
    if improved:
        state["best"] = {"epoch": epoch + 1, "value": monitored, "monitor": config.monitor}
    if loop.out is not None:
        loop.checkpointer.save_epoch(model, state, epoch + 1, improved)
        cb.write_history_csv(rd.history_csv, state["history"])
        loop.scalars.write(epoch + 1, {k: v for k, v in row.items() if k not in ("epoch", "seconds")})
        cb.plot_curves(rd.curves, state["history"], title=config.name, metric=loop.metric)
    best = state["best"]
    print(f"{line}; best {config.monitor}={best['value']:.4f} (epoch {best['epoch']})"
          if best["value"] is not None else line, flush=True)
    return None


def _absolute_data_arg(text: str) -> str:
    fmt, path = parse_data_arg(text)
    path = str(Path(path).resolve())
    return f"{fmt}={path}" if fmt else path


# ---------------------------------------------------------------------------- evaluation
def write_run_model(config: ExperimentConfig, model_fn: ModelFn, trained: keras.Model,
                    run_dir: Path) -> Path:
    """The run's `model.keras` (`cxr_cascade.artifacts.load` reads it): a fresh, uncompiled
    copy of the network with `trained`'s weights (the best epoch's), no optimizer state."""
    model = model_fn(config)
    model.set_weights(trained.get_weights())
    return write_model(model, run_dir)


def evaluate_run(config: ExperimentConfig, run_dir: Path, data, model_fn: ModelFn,
                 state: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """Best checkpoint on the held-out test split (validation when there is none) -> results.json,
    and the best checkpoint as the run's `model.keras` (`write_run_model`)."""
    rd = RunDir(run_dir)
    # A single-device copy: evaluation is the same whatever strategy trained the weights.
    model = model_fn(config)
    compile_model(model, config, data.steps_per_epoch, jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    weights = rd.best_weights
    problem = weights_file_problem(weights, (state.get("checksums") or {}).get(weights.name))
    if problem:
        weights = _resume_checkpoint(rd, config)
        print(f"warning: {rd.best_weights}: {problem}; evaluating {weights.name} instead",
              file=sys.stderr, flush=True)
    model.load_weights(weights)
    write_run_model(config, model_fn, model, run_dir)
    split, dataset = ("test", data.test) if data.test is not None else ("val", data.val)
    results: dict[str, Any] = {
        "experiment": config.name,
        "paper": config.paper,
        "evaluated_split": split,
        "weights": str(Path(weights).relative_to(run_dir)),
        "best_epoch": state["best"]["epoch"],
        "best_" + config.monitor: state["best"]["value"],
        "epochs": state["epochs_completed"],
        "wall_seconds": round(float(state.get("wall_seconds", 0.0)), 1),
        "command": " ".join(argv),
        "image_size": config.image_size,
        "split_counts": data.split_counts(),
    }
    if config.is_classifier:
        y_true, y_prob = [], []
        for images, labels in dataset:
            y_prob.append(np.asarray(model(images, training=False), dtype=np.float64))
            y_true.append(np.asarray(labels).reshape(-1))
        y_true_arr = np.concatenate(y_true).astype(int)
        probs = np.concatenate(y_prob)
        if y_true_arr.ndim == 1 and probs.shape[0] != y_true_arr.shape[0]:
            raise ValueError("labels and predictions differ in length")
        results.update(classification_metrics(y_true_arr, probs, config.classes))
    else:
        scores = model.evaluate(dataset, verbose=0, return_dict=True)
        results.update({k: float(v) for k, v in scores.items()})
    atomic_write_json(rd.results, results)
    summary = ", ".join(
        f"{k}={results[k]:.4f}" for k in ("accuracy", "macro_f1", "mean_iou", "loss") if k in results
    )
    print(f"{config.name}: {split} {summary} (best epoch {state['best']['epoch']}) -> {rd.results}",
          flush=True)
    return results
