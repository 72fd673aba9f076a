"""Pictures a person can read: heatmap overlays, highlighted words, grids, HTML reports."""

from .compare import method_comparison
from .grid import explanation_grid, picture_grid
from .heatmap import captioned, colorize, legend, overlay, to_pil, view_box
from .words import words_ansi, words_html, words_plain, words_terminal

__all__ = [
    "captioned", "colorize", "explanation_grid", "legend", "method_comparison", "overlay", "picture_grid", "to_pil",
    "view_box", "words_ansi", "words_html", "words_plain", "words_terminal",
]
