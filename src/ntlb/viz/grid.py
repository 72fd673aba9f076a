"""A grid figure of B images x T texts: each cell the overlay, its score and its highlighted words."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..explain.explanation import Explanation  # noqa: E402
from ..io import save_figure_atomic  # noqa: E402
from .heatmap import overlay  # noqa: E402


def explanation_grid(explanation: Explanation, path: str | Path, texts: list[str] | None = None,
                     cell: float = 2.6) -> Path:
    """Save a PNG grid (rows: images, columns: texts) of an explanation with original pictures."""
    if explanation.originals is None:
        raise ValueError("the grid needs the original pictures: explain paths or PIL images")
    pairs = explanation.pair_indices()
    n_images = len(explanation.originals)
    n_cols = 1 if explanation.pairs == "diagonal" else explanation.text.shape[1]
    probs = explanation.probabilities()
    fig, axes = plt.subplots(n_images, n_cols, figsize=(cell * n_cols, cell * n_images + 0.6), squeeze=False)
    for b, t in pairs:
        ax = axes[b][0 if explanation.pairs == "diagonal" else t]
        if explanation.has_image_maps():
            patch = explanation.image[(b,) if explanation.pairs == "diagonal" else (b, t)]
            ax.imshow(overlay(explanation.originals[b], patch, explanation.preprocess))
        else:
            ax.imshow(explanation.originals[b])
        words = explanation.words(b, None if explanation.pairs == "diagonal" else t)
        top = max(words, key=lambda item: item[1])[0] if words else ""
        label = texts[t] if texts else " ".join(w for w, _ in words)
        ax.set_title(
            "\n".join(textwrap.wrap(label, 28)[:2])
            + f"\nlogit {float(explanation.logits[b, t]):.2f}  p {float(probs[b, t]):.2f}  top: {top}",
            fontsize=7,
        )
        ax.axis("off")
    fig.suptitle(f"{explanation.method} relevance ({explanation.logit_mode} logits)", fontsize=9)
    fig.tight_layout()
    return save_figure_atomic(fig, path)
