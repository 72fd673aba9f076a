"""What the two world trainers write beside their checkpoints: the loss curve they refresh at each checkpoint and
the fp16 safetensors weights that ntlb ships."""

from __future__ import annotations

from pathlib import Path

import torch

from ntlb.io import save_figure_atomic, write_bytes_atomic
from ntlb.models.loading import read_state_dict


def plot_losses(curves: dict[str, list[float]], path: Path, ylabel: str | None = None, steps: bool = False) -> None:
    """Each curve of `curves` (name -> loss per step; "" for a run's one loss) as its running mean over a 50th of
    the run, on a log scale; with `steps`, each step's value faintly behind it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, losses in curves.items():
        if steps:
            ax.plot(losses, lw=0.6, alpha=0.5, label=f"{name} step".strip())
        values = torch.tensor(losses)
        window = max(1, len(values) // 50)
        smooth = values.unfold(0, window, 1).mean(dim=1) if len(values) >= window else values
        ax.plot(range(window - 1, window - 1 + len(smooth)), smooth.tolist(), lw=1.5,
                label=f"{name} (mean of {window})" if name else f"mean of {window}")
    ax.set_xlabel("step")
    if ylabel:
        ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend()
    save_figure_atomic(fig, path)


def write_fp16_weights(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """A model's state dict as an fp16 safetensors file (integer tensors kept), read back to check it is whole and
    finite."""
    from safetensors.torch import save

    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    path = write_bytes_atomic(Path(path), save(half))
    read_state_dict(path)
    return path
