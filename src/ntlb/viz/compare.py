"""The same pairs under several explainers, side by side: rows are image-text pairs, columns are methods."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..explain.explanation import Explanation  # noqa: E402
from ..io import save_figure_atomic  # noqa: E402
from .heatmap import overlay  # noqa: E402


def _top_words(explanation: Explanation, b: int, t: int | None, count: int = 2) -> str:
    if not explanation.has_text_relevance():
        return "(no text relevance)"
    words = sorted(explanation.words(b, t), key=lambda item: -item[1])[:count]
    return ", ".join(f"{w} {r:.2f}" for w, r in words)


def method_comparison(explanations: dict[str, Explanation], path: str | Path, texts: list[str],
                      pairs: list[tuple[int, int]] | None = None, cell: float = 2.0) -> Path:
    """Save a PNG: for each (image, text) pair a row with the picture and every method's overlay and top words.

    All explanations must cover the same images and texts (any targets alike).
    """
    first = next(iter(explanations.values()))
    if first.originals is None:
        raise ValueError("the comparison needs the original pictures: explain paths or PIL images")
    pairs = pairs or first.pair_indices()
    names = list(explanations)
    fig, axes = plt.subplots(len(pairs), len(names) + 1, squeeze=False,
                             figsize=(cell * (len(names) + 1), cell * len(pairs) + 0.4))
    for row, (b, t) in enumerate(pairs):
        axes[row][0].imshow(first.originals[b])
        axes[row][0].set_title("\n".join(textwrap.wrap(texts[first.text_index(b, t)], 24)[:3]), fontsize=7)
        for column, name in enumerate(names, start=1):
            explanation = explanations[name]
            ax = axes[row][column]
            if explanation.has_image_maps():
                patch = explanation.image[explanation.key(b, t)].detach()
                ax.imshow(overlay(explanation.originals[b], patch, explanation.preprocess))
            else:
                ax.imshow(explanation.originals[b])
            ax.set_title(f"{name}\n{_top_words(explanation, b, t)}", fontsize=6.5)
    for ax in axes.flat:
        ax.axis("off")
    return save_figure_atomic(fig, path)
