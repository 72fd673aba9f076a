"""A self-contained HTML page (pictures embedded): every image beside its overlays, scores and highlighted words,
with a colour legend and what the numbers mean."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from PIL import Image

from ..io import image_bytes, write_text_atomic
from .heatmap import legend
from .words import words_html

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; margin-bottom: 1.5em; }
.pair { width: 260px; }
.pair img, .original img { width: 256px; border: 1px solid #ccc; image-rendering: pixelated; }
.w { padding: 1px 3px; border-radius: 3px; }
.meta { color: #666; font-size: 0.85em; }
.note { background: #fff3cd; padding: 0.5em 1em; }
.legend img { width: 256px; height: 12px; vertical-align: middle; }
"""


def embedded(picture: Image.Image) -> str:
    """A PNG data URI of a picture, so the page needs no other file."""
    return "data:image/png;base64," + base64.b64encode(image_bytes(picture)).decode("ascii")


def _word_picker(record: dict, pictures: dict[str, Image.Image]) -> str:
    """A menu that shows, in the pair's picture, the region each word of the text matches."""
    options = [f"<option value='{embedded(pictures[record['overlay']])}'>the whole text</option>"] if record.get(
        "overlay") in pictures else []
    options += [f"<option value='{embedded(pictures[entry['overlay']])}'>{html.escape(entry['word'])}"
                + (f" ({entry['interaction']:+.3g})" if "interaction" in entry else "")
                + (f" (adds {entry['cosine_drop']:+.3f} to the cosine)" if "cosine_drop" in entry else "") + "</option>"
                for entry in record["word_maps"] if entry["overlay"] in pictures]
    return ("<p class='meta'>region of word: <select onchange=\"this.closest('.pair').querySelector('img').src="
            f"this.value\">{''.join(options)}</select></p>")


def write_report(path: str | Path, title: str, records: list[dict], notes: list[str] = (),
                 pictures: dict[str, Image.Image] | None = None, originals: dict[str, Image.Image] | None = None,
                 label: str = "text") -> Path:
    """records: dicts with image, text (or `label` key), logit, probability, words [(w, r)] or None, overlay (a
    key of `pictures`) or None. `originals` maps each record's image to the picture shown beside its overlays."""
    pictures, originals = pictures or {}, originals or {}
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='note'>{html.escape(note)}</p>" for note in notes]
    parts.append(f"<p class='legend'>map colours: low <img src='{embedded(legend())}' alt='colour bar'> high "
                 "relevance; words: the redder, the more the score rests on the word. "
                 "<b>p</b>: the probability of the text among the texts given (softmax of the scaled scores); "
                 "<b>logit</b>: CLIP's score.</p>")
    current = None
    for record in records:
        if record["image"] != current:
            if current is not None:
                parts.append("</div>")
            current = record["image"]
            parts.append(f"<h2>{html.escape(str(current))}</h2><div class='row'>")
            if current in originals:
                parts.append(f"<div class='pair original'><img src='{embedded(originals[current])}'>"
                             "<p class='meta'>original</p></div>")
        picture = (f"<img src='{embedded(pictures[record['overlay']])}'>"
                   if record.get("overlay") in pictures else "")
        if record.get("word_maps"):
            picture += _word_picker(record, pictures)
        words = f"<p>{words_html(record['words'])}</p>" if record.get("words") else ""
        parts.append(
            f"<div class='pair'>{picture}{words}"
            f"<p class='meta'>{html.escape(str(record[label]))}<br>logit {record['logit']:.3f}, "
            f"p {record['probability']:.3f}</p></div>"
        )
    if current is not None:
        parts.append("</div>")
    return write_text_atomic(path, "\n".join(parts) + "\n")
