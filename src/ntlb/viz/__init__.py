"""Pictures a person can read: heatmap overlays, highlighted words, grids, HTML reports."""

from .compare import method_comparison
from .grid import explanation_grid
from .heatmap import colorize, overlay, to_pil, view_box
from .words import words_ansi, words_html

__all__ = [
    "colorize", "explanation_grid", "method_comparison", "overlay", "to_pil", "view_box", "words_ansi", "words_html",
]
