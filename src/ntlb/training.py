"""What every long run shares: one loop (`TrainingRun.loop`) that owns the cadence of checkpoints, the time
limit, the progress bar, the one-line messages on Ctrl-C and on resuming; one checkpoint reader with one
finiteness check (`read_checkpoint`); the optimiser step (`descend`); the warm-up + cosine schedule.

Prompt learning, latent optimisation (layout generation, editing, generation, blending) and the world trainers
hand the loop their step, so a run stopped at any point (crash, Ctrl-C, time limit) continues from its last
checkpoint when the same command is run again, and a new task writes its step, not its loop.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from .errors import Interrupted, NtlbError
from .io import write_bytes_atomic

T = TypeVar("T")
Step = Callable[[int, Any], "dict[str, float] | None"]


def backward(loss: torch.Tensor) -> None:
    """Backpropagate `loss` into the parameters' gradients: with `descend`, the one place outside explain/ where a
    gradient is taken (the optimiser steps of the long runs; tests/test_architecture.py checks who calls them)."""
    loss.backward()


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on `loss`: clear the gradients, backpropagate, step."""
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer.step()


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
    """The key of the first floating tensor with NaN or Inf inside a (nested) state."""
    if isinstance(value, torch.Tensor):
        return prefix if value.is_floating_point() and not bool(torch.isfinite(value).all()) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{prefix}.{key}" if prefix else str(key))
            if found is not None:
                return found
    return None


def check_finite(state: Any, source: str, fix: str = "use another checkpoint") -> None:
    """The one finiteness check of saved state: a one-line error naming the first tensor with NaN or Inf."""
    bad = _non_finite(state)
    if bad is not None:
        raise NtlbError(f"{source} has NaN/Inf values in '{bad}': the file is corrupt or its training diverged; {fix}")


def _reader_problem(path: Path, error: Exception, fix: str) -> str:
    """A short account of why a file could not be read, with the fix."""
    import zipfile

    text = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
    with path.open("rb") as file:
        head = file.read(8)
    if "incomplete metadata" in text or (head.startswith(b"PK") and not zipfile.is_zipfile(path)):
        return f"the file is truncated (an interrupted download or copy?): {fix}"
    return f"{text}: is it a PyTorch or safetensors file? {fix}"


def read_checkpoint(path: str | Path, kind: str | None = None, map_location: Any = "cpu", fix: str | None = None,
                    finished: bool = False, what: str | None = None, trusted: bool = False) -> dict:
    """The one reader of saved state, with one finiteness check and one-line errors for a missing, foreign,
    truncated or non-finite file (ending with `fix`, never a suggestion to delete a file that may be the user's).

    With `kind`, a checkpoint that `TrainingRun.save` wrote (its format is checked; with `finished`, a run that is
    not done yet is refused too: it is not a result). Without, any file of tensors: a .safetensors file, or a
    PyTorch file read with torch's weights-only unpickler (unless `trusted`: a Lightning checkpoint holds more).
    `what` names the file in messages (default: "<kind> file", or "checkpoint").
    """
    path = Path(path)
    what = what or (f"{kind} file" if kind else "checkpoint")
    if not path.is_file():
        partial = partial_path(path)
        if kind and finished and partial.is_file():
            _refuse_unfinished(partial, read_checkpoint(partial, kind, map_location, fix))
        raise NtlbError(f"{what} not found: {path}: {fix or 'check the path'}")
    fix = fix or ("give a file that ntlb wrote" if kind else "get it again")
    if kind:
        with open(path, "rb") as file:
            if file.read(4) != b"PK\x03\x04":  # torch.save's format
                raise NtlbError(f"{path} is not an ntlb {kind} file: {fix}")
    try:
        if path.suffix == ".safetensors" and not kind:
            from safetensors.torch import load_file

            state = load_file(str(path), device=str(map_location))
        else:
            state = torch.load(path, map_location=map_location, weights_only=not trusted)
    except Exception as err:  # noqa: BLE001  (every reader error becomes one line)
        raise NtlbError(f"cannot read {what} {path}: {_reader_problem(path, err, fix)}") from None
    if kind and (not isinstance(state, dict) or state.get("format") != f"ntlb-{kind}/2"):
        raise NtlbError(f"{path} is not an ntlb {kind} file: {fix}")
    check_finite(state, f"{what} {path}", "rerun with a lower learning rate and a new output path" if kind else
                 "use another checkpoint")
    if kind and finished and int(state["done"]) < int(state["total"]):
        _refuse_unfinished(path, state)
    return state


def partial_path(path: str | Path) -> Path:
    """Where a run whose result goes to `path` keeps its checkpoint until the last unit is saved."""
    return Path(f"{path}.partial")


def _refuse_unfinished(path: Path, state: dict) -> None:
    raise NtlbError(f"{path} is an unfinished run ({state['done']}/{state['total']} {state.get('unit', 'step')}s "
                    "done): rerun the command that wrote it to finish it, then use its result")


def _done(count: int, unit: str) -> str:
    """'nothing saved yet', '1 epoch done', '2 epochs done'."""
    return "nothing saved yet" if count == 0 else f"{count} {unit}{'s' if count != 1 else ''} done"


def resuming_line(desc: str, unit: str, done: int, total: int, source: str | Path) -> str:
    """What every long run says when it continues: 'resuming prompt learning at epoch 3/6 (2 epochs done) from
    p.pt.partial' (the unit it starts is the one after those saved)."""
    return f"resuming {desc} at {unit} {done + 1}/{total} ({_done(done, unit)}) from {source}"


def interrupted_line(where: str, done: int, unit: str, kept: str = "") -> str:
    """What every long run says on Ctrl-C: where it stopped, what was saved (`done` units, and `kept`: part of the
    next), and whether a rerun resumes or starts again."""
    saved = ", ".join(part for part in (_done(done, unit) if done or not kept else "", kept) if part)
    again = "resume" if done or kept else "start again"
    return f"interrupted {where} ({saved}): rerun the same command to {again}"


def refuse_other_settings(held: dict, wanted: dict, holder: str, new: str) -> None:
    """Refuse in one line, naming the settings that differ, to go on with a run (`holder`: "<path> holds a ... run")
    made with other settings than `wanted`: a rerun never silently mixes two configurations (`new`: where else to
    write, e.g. "a new output path")."""
    if held != wanted:
        changed = sorted(k for k in {*held, *wanted} if held.get(k) != wanted.get(k))
        raise NtlbError(f"{holder} with other settings ({', '.join(changed)}): use {new}, or the same options to "
                        "resume")


class TrainingRun:
    """One long run: its loop (`loop`), checkpoint, progress bar, and resume and interruption lines.

    `settings` are what define the run: a checkpoint made with other settings is refused (naming them), so a
    rerun never silently mixes two configurations. `total` counts `unit`s (steps or epochs). With `result`, the
    checkpoint is kept apart (`partial_path(result)`) until the last unit is saved, which goes to `result`: an
    interrupted run never leaves a file that looks finished.
    """

    def __init__(self, path: str | Path | None, kind: str, settings: dict, total: int, unit: str = "step",
                 desc: str | None = None, progress: bool = True, result: str | Path | None = None,
                 writes: bool = True):
        self.result = Path(result) if result is not None else None
        path = partial_path(self.result) if path is None and self.result is not None else path
        self.path, self.kind, self.settings = Path(path), kind, settings
        self.total, self.unit, self.desc, self.progress = total, unit, desc or kind, progress
        self.writes = writes  # False in torchrun's other processes: the first one writes the checkpoints
        self.saved = 0  # units done in the last checkpoint
        self.current = 0  # unit in progress (0-based)
        self._bar: tqdm | None = None

    def resume(self, map_location: Any = "cpu") -> dict | None:
        """The last checkpoint's state, or None for a fresh run; says on stderr that the run resumed."""
        source = self.path if self.path.is_file() else self.result
        if source is None or not source.is_file():
            return None
        state = read_checkpoint(source, self.kind, map_location, fix="use a new output path")
        refuse_other_settings(state["settings"], self.settings, f"{source} holds a {self.kind} run",
                              "a new output path")
        self.saved = self.current = int(state["done"])
        if self.progress:
            if self.saved >= self.total:
                print(f"{self.desc} already finished ({self.total}/{self.total} {self.unit}s done) in {source}",
                      file=sys.stderr)
            else:
                print(resuming_line(self.desc, self.unit, self.saved, self.total, source), file=sys.stderr)
        return state

    def save(self, done: int, **state: Any) -> None:
        """Write the checkpoint after `done` units, atomically (the last one to `result`, when there is one)."""
        if not self.writes:
            self.saved = done
            return
        buffer = io.BytesIO()
        torch.save({"format": f"ntlb-{self.kind}/2", "settings": self.settings, "done": done, "total": self.total,
                    "unit": self.unit, **state}, buffer)
        last = self.result is not None and done >= self.total
        write_bytes_atomic(self.result if last else self.path, buffer.getvalue())
        if last:
            self.path.unlink(missing_ok=True)
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

    def loop(self, step: Step, state: Callable[[], dict], every: int = 1, max_minutes: float | None = None,
             data: Iterable | None = None, before_save: Callable[[int], None] | None = None) -> int:
        """Run the units still to do (after the last checkpoint) and return how many are done.

        `step(unit, batch)` does one unit's work and returns the terms to show beside the progress bar (or None);
        `batch` is the next item of `data` (a loader holding exactly the units still to run), else None. The loop
        checkpoints `state()` (the tensors and history a resume needs) every `every` units, after the last one and
        when `max_minutes` have passed, then stops with a line saying how to resume (a time limit is for one-process
        runs: torchrun's processes would not stop at the same unit). `before_save(done)` writes what
        goes with a checkpoint (snapshots, a loss plot). Ctrl-C ends the run with a line saying what was saved.
        """
        began = time.monotonic()
        units = self.batches(data) if data is not None else ((unit, None) for unit in self.steps())
        with self:
            try:
                for unit, batch in units:
                    shown = step(unit, batch)
                    if shown:
                        self.report(shown)
                    done = unit + 1
                    out_of_time = max_minutes is not None and time.monotonic() - began > 60 * max_minutes
                    if done % every == 0 or done == self.total or out_of_time:
                        if before_save is not None:
                            before_save(done)
                        self.save(done, **state())
                    if out_of_time and done < self.total:
                        if self.writes:  # said once, by the process that wrote the checkpoint
                            print(f"{self.desc} stopped after {max_minutes:g} minutes at {self.unit} {done}/"
                                  f"{self.total} ({_done(self.saved, self.unit)}): rerun the same command to resume",
                                  file=sys.stderr)
                        break
            finally:
                units.close()  # the loader's workers stop with the loop, not at a later garbage collection
        return self.saved

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
            where = (f"after {self.unit} {self.saved}/{self.total}" if self.saved > self.current else
                     f"during {self.unit} {self.current + 1}/{self.total}")
            raise Interrupted(interrupted_line(where, self.saved, self.unit)) from None
