"""A generated image beside each text's relevance map, with the layout's boxes drawn on both."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from torch import Tensor  # noqa: E402

from ..io import save_figure_atomic  # noqa: E402


def layout_maps_figure(image: Tensor, maps: Tensor, layout, path: str | Path) -> Path:
    """Save a PNG: the generated image (1, 3, H, W) with its boxes, then each text's map (k, H, W) over it."""
    count = len(layout.texts)
    fig, axes = plt.subplots(1, count + 1, figsize=(2.6 * (count + 1), 3.0), squeeze=False)
    picture = image[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    axes[0][0].imshow(picture)
    axes[0][0].set_title("generated", fontsize=8)
    sy, sx = picture.shape[0] / layout.height, picture.shape[1] / layout.width
    for j, text in enumerate(layout.texts):
        ax = axes[0][j + 1]
        ax.imshow(picture)
        ax.imshow(maps[j].detach().cpu().numpy(), cmap="jet", alpha=0.5)
        x0, y0, x1, y1 = layout.boxes[j]
        for target in (ax, axes[0][0]):
            target.add_patch(Rectangle((x0 * sx - 0.5, y0 * sy - 0.5), (x1 - x0) * sx, (y1 - y0) * sy,
                                       fill=False, edgecolor="white", lw=1.5))
        ax.set_title("\n".join(textwrap.wrap(text, 30)[:2]), fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    return save_figure_atomic(fig, path)
