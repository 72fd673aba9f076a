"""What every long run shares: one checkpoint file that is written atomically and resumed from, a progress
bar, a one-line message on Ctrl-C, and the warm-up + cosine learning-rate schedule.

Prompt learning, layout generation and world training all go through `TrainingRun`, so a run stopped at any
point (crash, Ctrl-C, time limit) continues from its last checkpoint when the same command is run again.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from .errors import Interrupted, NtlbError
from .io import write_bytes_atomic

T = TypeVar("T")


def warmup_cosine(step: int, total: int, peak: float, warmup: int = 0, warmup_lr: float | None = None) -> float:
    """Learning rate at `step` of `total`: cosine decay from `peak` to 0 after `warmup` steps.

    During the warm-up it is `warmup_lr` (constant, CoOp's schedule) or, when None, a linear ramp to `peak`
    (CLIP training).
    """
    if step < warmup:
        return warmup_lr if warmup_lr is not None else peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * peak * (1 + math.cos(math.pi * progress))


def _non_finite(value: Any, prefix: str = "") -> str | None:
    """The key of the first floating tensor with NaN or Inf inside a (nested) checkpoint state."""
    if isinstance(value, torch.Tensor):
        return prefix if value.is_floating_point() and not bool(torch.isfinite(value).all()) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    return None


def read_checkpoint(path: str | Path, kind: str, map_location: Any = "cpu") -> dict:
    """A checkpoint written by `TrainingRun.save`; one-line errors for a missing, foreign, truncated or
    non-finite file."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"{kind} file not found: {path}: check the path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001  (a truncated or foreign file: the same one-line answer)
        raise NtlbError(f"cannot read {path}: {type(err).__name__}: the file is truncated or not an ntlb {kind} "
                        "file: remove it and run again") from None
    if not isinstance(state, dict) or state.get("format") != f"ntlb-{kind}/2":
        raise NtlbError(f"{path} is not an ntlb {kind} file: use a new output path")
    bad = _non_finite(state)
    if bad is not None:
        raise NtlbError(f"{path} has NaN or infinite values in '{bad}': the run diverged; remove the file and rerun "
                        "with a lower learning rate")
    return state


class TrainingRun:
    """The checkpoint, progress bar and interruption message of one long run.

    `settings` are what define the run: a checkpoint made with other settings is refused (naming them), so a
    rerun never silently mixes two configurations. `total` counts `unit`s (steps or epochs).
    """

    def __init__(self, path: str | Path, kind: str, settings: dict, total: int, unit: str = "step",
                 desc: str | None = None, progress: bool = True):
        self.path, self.kind, self.settings = Path(path), kind, settings
        self.total, self.unit, self.desc, self.progress = total, unit, desc or kind, progress
        self.saved = 0  # units done in the last checkpoint
        self.current = 0  # unit in progress (0-based)
        self._bar: tqdm | None = None

    def resume(self, map_location: Any = "cpu") -> dict | None:
        """The last checkpoint's state, or None for a fresh run; says on stderr that the run resumed."""
        if not self.path.is_file():
            return None
        state = read_checkpoint(self.path, self.kind, map_location)
        if state["settings"] != self.settings:
            changed = sorted(k for k in {*state["settings"], *self.settings}
                             if state["settings"].get(k) != self.settings.get(k))
            raise NtlbError(f"{self.path} holds a {self.kind} run with other settings ({', '.join(changed)}): use a "
                            "new output path, or the same options to resume")
        self.saved = int(state["done"])
        if self.progress:
            print(f"resuming {self.desc} at {self.unit} {self.saved}/{self.total} from {self.path}", file=sys.stderr)
        return state

    def save(self, done: int, **state: Any) -> None:
        """Write the checkpoint after `done` units, atomically."""
        buffer = io.BytesIO()
        torch.save({"format": f"ntlb-{self.kind}/2", "settings": self.settings, "done": done, "total": self.total,
                    **state}, buffer)
        write_bytes_atomic(self.path, buffer.getvalue())
        self.saved = done

    def steps(self, start: int | None = None) -> Iterator[int]:
        """The units still to run (from the last checkpoint), with a progress bar."""
        start = self.saved if start is None else start
        self._bar = tqdm(range(start, self.total), initial=start, total=self.total, desc=self.desc, unit=self.unit,
                         disable=not self.progress)
        for unit in self._bar:
            self.current = unit
            yield unit

    def batches(self, loader: Iterable[T]) -> Iterator[tuple[int, T]]:
        """The steps still to run, each with its batch (a loader holding exactly those batches). The step is drawn
        first, so the loader is never asked for a batch too many, and its workers stop as the loop ends (last step,
        time limit, error) rather than at a later garbage collection, which would stall whatever runs then."""
        yield from zip(self.steps(), loader)

    def report(self, values: dict[str, float]) -> None:
        """Show the latest loss terms beside the progress bar."""
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()})

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self._bar is not None:
            self._bar.close()
        if kind is not None and issubclass(kind, KeyboardInterrupt) and not isinstance(error, Interrupted):
            raise Interrupted(f"interrupted during {self.unit} {self.current + 1}/{self.total} (saved: {self.unit} "
                              f"{self.saved}): rerun the same command to resume") from None
