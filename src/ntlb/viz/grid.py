"""Grid figures of captioned pictures (images x texts), paged so that large runs stay readable."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from ..explain.explanation import Explanation  # noqa: E402
from ..io import save_figure_atomic  # noqa: E402
from .heatmap import overlay  # noqa: E402

PER_PAGE = 64
MAX_COLUMNS = 8


def picture_grid(cells: list[tuple[Image.Image, str]], columns: int, path: str | Path, title: str = "",
                 per_page: int = PER_PAGE, cell: float = 2.4) -> list[Path]:
    """Save (picture, caption) cells row by row, `columns` per row (at most 8: longer rows wrap). More than
    `per_page` cells go to numbered pages (grid-1.png, grid-2.png, ... beside `path`); returns the files."""
    path = Path(path)
    columns = max(1, min(columns, MAX_COLUMNS))
    rows_per_page = max(1, per_page // columns)
    page_size = rows_per_page * columns
    pages = [cells[i : i + page_size] for i in range(0, len(cells), page_size)]
    written = []
    for number, page in enumerate(pages, start=1):
        rows = -(-len(page) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(cell * columns, (cell + 0.6) * rows + 0.3), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for index, (picture, caption) in enumerate(page):
            ax = axes[index // columns][index % columns]
            ax.imshow(picture)
            lines = [part for line in caption.splitlines() for part in textwrap.wrap(line, int(cell * 13))]
            ax.set_title("\n".join(lines[:4]), fontsize=6.5)
        page_title = title + (f" (page {number} of {len(pages)})" if len(pages) > 1 else "")
        if page_title:
            fig.suptitle("\n".join(textwrap.wrap(page_title, int(cell * columns * 15))), fontsize=8)
        target = path if len(pages) == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        written.append(save_figure_atomic(fig, target))
    return written


def explanation_grid(explanation: Explanation, path: str | Path, texts: list[str] | None = None,
                     note: str = "", per_page: int = PER_PAGE) -> list[Path]:
    """Save an explanation with original pictures as a grid (rows: images, columns: explained texts): each cell
    the overlay with its text, score, probability and top word; `note` goes into the title (random weights)."""
    if explanation.originals is None:
        raise ValueError("the grid needs the original pictures: explain paths or PIL images")
    probabilities = explanation.probabilities()
    cells = []
    for b, t in explanation.pair_indices():
        picture = explanation.originals[b]
        if explanation.has_image_maps():
            picture = overlay(picture, explanation.image[explanation.key(b, t)], explanation.preprocess)
        column = explanation.text_index(b, t)
        label = texts[column] if texts else f"text {column}"
        top = ""
        if explanation.has_text_relevance():
            words = explanation.words(b, t)
            top = f"  top: {max(words, key=lambda item: item[1])[0]}" if words else ""
        cells.append((picture, f"{label}\nlogit {explanation.logit(b, t):.2f}  p {float(probabilities[b, column]):.2f}"
                               f"{top}"))
    columns = explanation.columns.shape[1]
    title = f"{explanation.method} relevance ({explanation.logit_mode} logits)" + (f" - {note}" if note else "")
    return picture_grid(cells, columns, path, title, per_page)
