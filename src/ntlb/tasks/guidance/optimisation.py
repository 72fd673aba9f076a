"""Optimising a generator's latent against a loss (layout generation, text-guided editing, multi-word generation,
essence transfer): the step that `TrainingRun.loop` runs -- Adam, an optional learning-rate schedule, seeded
randomness per step (so a resumed run draws what an uninterrupted one would) -- and its snapshots."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from ...io import save_image_atomic
from ...training import TrainingRun, descend

Loss = Callable[[Tensor, int], tuple[Tensor, dict]]


def default_generator(adapter, size: tuple[int, int]) -> str:
    """world-render for the bundled world model at 64 pixels (the world's own renderer), else pixels."""
    from ...models.loading import DEFAULT_MODEL

    bundled = adapter.name == DEFAULT_MODEL and not adapter.random_weights
    return "world-render" if bundled and tuple(size) == (64, 64) else "pixels"


def generator_for(adapter, name: str | None = None, size: tuple[int, int] | None = None, seed: int = 0,
                  options_of: Callable[[str], dict] | None = None, **options) -> tuple[str, nn.Module]:
    """(name, generator) on the model's device: `name` (default: `default_generator`) at `size` (default: 64 x 64
    with the bundled world model, else the model's input size), with `options_of(name)` (the chosen generator's
    options: `GeneratorChoice.options`) and `options` -- what the editing, generation and blending commands and the
    app build."""
    from ...generators import create_generator
    from ...models.loading import DEFAULT_MODEL

    size = tuple(size) if size else (64, 64) if adapter.name == DEFAULT_MODEL else tuple(adapter.preprocess_config.size)
    name = name or default_generator(adapter, size)
    options = {**(options_of(name) if options_of else {}), **options}
    return name, create_generator(name, size, seed=seed, **options).to(adapter.device)


def to_picture(images: Tensor) -> Image.Image:
    """Images (N, 3, H, W) in [0, 1] as one PIL picture, side by side."""
    row = torch.cat(list(images.detach().clamp(0, 1)), dim=-1)
    array = (row.permute(1, 2, 0).float().cpu().numpy() * 255).round().astype("uint8")
    return Image.fromarray(array)


def styleclip_lr(step: int, total: int, peak: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """StyleCLIP's learning rate: a cosine ramp up over the first `rampup` share of the run and down over the last
    `rampdown` share."""
    t = step / total
    ramp = min(1.0, (1 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return peak * ramp * min(1.0, t / rampup)


def trainable_state(module: nn.Module) -> dict[str, Tensor]:
    """The parameters being optimised (the latent), not the frozen generator: what a checkpoint needs."""
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def surrogate(generator: nn.Module, value: Tensor) -> tuple[Tensor, float]:
    """(what the step differentiates, the loss to record) of a loss value: a scalar as it is, per-picture values
    (N,) summed; for a generator that samples (it exposes `log_prob` (N,) of its last `samples` pictures per latent)
    the mean over each latent's samples plus the score-function (REINFORCE) term, each sample's loss less the mean
    of the latent's other samples (a leave-one-out baseline) times its log-probability, summed over latents."""
    log_prob = getattr(generator, "log_prob", None)
    if log_prob is None:
        return value.sum(), float(value.detach().sum())
    if value.ndim != 1 or value.numel() != log_prob.numel():
        from ...errors import NtlbError

        raise NtlbError(f"a sampling generator needs the loss of each of its {log_prob.numel()} pictures, got shape "
                        f"{tuple(value.shape)}")
    values = value.reshape(-1, generator.samples)
    baseline = (values.sum(dim=1, keepdim=True) - values) / (values.shape[1] - 1)
    score = (values - baseline).detach() * log_prob.reshape(values.shape)
    return (values + score).mean(dim=1).sum(), float(values.detach().mean(dim=1).sum())


def optimise(generator: nn.Module, loss: Loss, out: str | Path, kind: str, settings: dict, steps: int, lr: float,
             seed: int, snapshot_every: int, schedule: Callable[[int], float] | None = None, desc: str | None = None,
             progress: bool = True) -> tuple[Tensor, list[dict]]:
    """Minimise `loss(generator(), step)` -> (value, parts) over the generator's trainable parameters; resumes
    from out/checkpoint.pt (refusing other settings). `value` is a scalar, or one loss per picture (what a sampling
    generator needs: `surrogate`). A generator with discrete choices and `refine` passes ends with its
    `refine_discrete` on the same loss (world-render: a coordinate search over colours, shapes and presence, seeded
    so a resumed run ends where an uninterrupted one does). Returns the final images and the per-step history."""
    out = Path(out)
    device = next(generator.parameters()).device
    optimizer = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=lr)
    run = TrainingRun(out / "checkpoint.pt", kind, settings, steps, desc=desc or kind, progress=progress)
    state = run.resume(map_location=device)
    history: list[dict] = []
    if state is not None:
        generator.load_state_dict(state["generator"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        history = state["history"]

    def step(number: int, _) -> dict:
        torch.manual_seed(seed * 100003 + number)  # the randomness of step s does not depend on a resume
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule(number)
        value, parts = loss(generator(), number)
        objective, recorded = surrogate(generator, value)
        descend(optimizer, objective)
        history.append({"loss": recorded, **parts})
        return history[-1]

    def snapshot(done: int) -> None:
        with torch.no_grad():
            save_image_atomic(out / "snapshots" / f"step_{done:05d}.png", to_picture(generator()))

    with torch.random.fork_rng(devices=[]):
        run.loop(step, lambda: {"generator": trainable_state(generator), "optimizer": optimizer.state_dict(),
                                "history": history}, every=snapshot_every, before_save=snapshot)
    if getattr(generator, "refine", 0):  # the last stage: a discrete generator's search on the same loss (seeded)
        generator.refine_discrete(lambda images: loss(images, steps)[0], seed * 100003 + steps)
    with torch.no_grad():
        images = generator()
    return images, history
