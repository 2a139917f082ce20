"""Stopping a training at a time budget or on SIGTERM, between two steps, resumably.

A 2-core machine gives a stage-1 epoch at 224 px about 25 minutes, and a working session ends
after three hours without warning, so a run must be able to stop anywhere inside an epoch and be
continued later to the same weights. `StepBudget` watches every training step; when the budget is
spent, SIGTERM arrived, or (for tests) a step count is reached, it brings the backend's state back
into the model's variables and raises `BudgetStop`, which the runner turns into a step-exact
checkpoint (`checkpoint.Checkpointer.save_partial`). It can also ask for a checkpoint every
`save_every` seconds without stopping, so that a SIGKILL loses at most that much work.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Callable, Optional

import keras

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int, name: str = "time_budget") -> float:
    """`"150m"`, `"2.5h"`, `"90s"` or a number of seconds -> seconds (> 0).

    Raises:
        ValueError: anything else, naming `name`.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*", str(text))
        if not match:
            raise ValueError(
                f"`{name}` must be a duration such as 150m, 2.5h, 90s or a number of seconds. "
                f"Received: {name}={text!r}"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not seconds > 0:
        raise ValueError(f"`{name}` must be positive. Received: {name}={text!r}")
    return seconds


class BudgetStop(Exception):
    """Raised between two training steps; `step` steps of the epoch are done (1-based count)."""

    def __init__(self, step: int, reason: str):
        super().__init__(reason)
        self.step = step
        self.reason = reason


class SigtermFlag:
    """Turns the first SIGTERM into a request to stop at the next step (a second one kills).

    Used as a context manager around the epoch loop; the previous handler is restored on exit.
    Only the main thread can install signal handlers; elsewhere this does nothing.
    """

    def __init__(self):
        self.received = False
        self._previous = None

    def _handle(self, signum, frame):
        self.received = True
        signal.signal(signal.SIGTERM, self._previous or signal.SIG_DFL)

    def __enter__(self) -> "SigtermFlag":
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def budget_spent(sigterm: Optional[SigtermFlag], deadline: Optional[float]) -> Optional[str]:
    """"SIGTERM" or "time budget" when the run must stop now, else None (between steps and
    between epochs alike)."""
    if sigterm is not None and sigterm.received:
        return "SIGTERM"
    if deadline is not None and time.monotonic() >= deadline:
        return "time budget"
    return None


class StepBudget(keras.callbacks.Callback):
    """Stops `fit` between two steps (`BudgetStop`) and asks for periodic checkpoints.

    Args:
        first_step: steps of this epoch already done before this `fit` (a resumed epoch).
        epoch_steps: steps in the whole epoch; the epoch's last step never stops or saves (the
            epoch-end checkpoint follows at once, and a resumed epoch is never empty).
        deadline: `time.monotonic()` value after which the run stops, or None.
        stop_after_steps: stop after this many steps of this process (tests), or None.
        sigterm: a `SigtermFlag`, or None.
        save_every: seconds between checkpoints inside an epoch (None: only at epoch ends).
        on_save: called with the epoch's step count when a periodic checkpoint is due.
        steps_done: training steps of this process before this `fit` (for `stop_after_steps`).
    """

    def __init__(self, *, first_step: int = 0, epoch_steps: int, deadline: Optional[float] = None,
                 stop_after_steps: Optional[int] = None, sigterm: Optional[SigtermFlag] = None,
                 save_every: Optional[float] = None,
                 on_save: Optional[Callable[[int], None]] = None, steps_done: int = 0):
        super().__init__()
        self.step = first_step
        self.epoch_steps = epoch_steps
        self.deadline = deadline
        self.stop_after_steps = stop_after_steps
        self.steps_done = steps_done
        self.sigterm = sigterm
        self.save_every = save_every
        self.on_save = on_save
        self._last_save = time.monotonic()

    def stop_reason(self) -> Optional[str]:
        reason = budget_spent(self.sigterm, self.deadline)
        if reason is None and self.stop_after_steps is not None and self.steps_done >= self.stop_after_steps:
            return "step limit"
        return reason

    def _sync(self) -> None:
        # On JAX the trained state lives outside the model's variables during `fit`.
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        self.steps_done += 1
        if self.step >= self.epoch_steps:
            return
        reason = self.stop_reason()
        if reason is not None:
            self._sync()
            raise BudgetStop(self.step, reason)
        if self.save_every is not None and self.on_save is not None and (
                time.monotonic() - self._last_save >= self.save_every):
            self._sync()
            self.on_save(self.step)
            self._last_save = time.monotonic()
