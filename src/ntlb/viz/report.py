"""A self-contained HTML page: every pair's overlay, score and highlighted words."""

from __future__ import annotations

import html
from pathlib import Path

from ..io import write_text_atomic
from .words import words_html

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.pair { display: inline-block; vertical-align: top; margin: 0 1em 1.5em 0; width: 260px; }
.pair img { width: 256px; border: 1px solid #ccc; }
.w { padding: 1px 3px; border-radius: 3px; }
.meta { color: #666; font-size: 0.85em; }
.note { background: #fff3cd; padding: 0.5em 1em; }
"""


def write_report(path: str | Path, title: str, records: list[dict], notes: list[str] = ()) -> Path:
    """records: dicts with image, text, logit, probability, words [(w, r)], overlay (relative path or None)."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in notes]
    current = None
    for record in records:
        if record["image"] != current:
            current = record["image"]
            parts.append(f"<h2>{html.escape(str(current))}</h2>")
        picture = f"<img src='{html.escape(record['overlay'])}'>" if record.get("overlay") else ""
        parts.append(
            "<div class='pair'>" + picture
            + f"<p>{words_html(record['words'])}</p>"
            + f"<p class='meta'>{html.escape(record['text'])}<br>logit {record['logit']:.3f}, "
            f"p {record['probability']:.3f}</p></div>"
        )
    return write_text_atomic(path, "\n".join(parts) + "\n")
