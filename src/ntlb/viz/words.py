"""Words highlighted by their relevance: HTML for reports, 24-bit ANSI colour for the terminal."""

from __future__ import annotations

import html
from pathlib import Path

from PIL import Image


def _strength(value: float, top: float) -> float:
    return 0.0 if top <= 0 else max(0.0, min(1.0, value / top))


def words_html(words: list[tuple[str, float]]) -> str:
    """Each word on a red background whose opacity is its relevance relative to the top word."""
    top = max((v for _, v in words), default=0.0)
    spans = [
        f'<span class="w" title="{value:.3f}" style="background: rgba(220, 30, 30, {_strength(value, top):.2f})">'
        f"{html.escape(word)}</span>"
        for word, value in words
    ]
    return " ".join(spans)


def words_ansi(words: list[tuple[str, float]]) -> str:
    """The same highlighting for a terminal that shows 24-bit colour."""
    top = max((v for _, v in words), default=0.0)
    parts = []
    for word, value in words:
        s = _strength(value, top)
        red, other = 255, int(255 * (1 - s))
        parts.append(f"\x1b[48;2;{red};{other};{other}m\x1b[38;2;0;0;0m{word}\x1b[0m")
    return " ".join(parts)


def words_plain(words: list[tuple[str, float]]) -> str:
    """The words with their relevance in brackets, for logs and pipes."""
    return " ".join(f"{word}({value:.2f})" for word, value in words)


def words_terminal(words: list[tuple[str, float]], stream=None) -> str:
    """Colours for a terminal, plain text when the output goes to a file or a pipe."""
    import sys

    stream = stream or sys.stdout
    return words_ansi(words) if getattr(stream, "isatty", lambda: False)() else words_plain(words)


def words_picture(words: list[tuple[str, float]], width: int, font_size: int = 13) -> Image.Image:
    """The words on red backgrounds whose strength is each word's relevance relative to the top word, wrapped to
    `width` pixels: the highlighted words of a report, as a picture for figures."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default(size=font_size)
    top = max((v for _, v in words), default=0.0)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    placed, x, y, line = [], 4, 4, font_size + 8
    for word, value in words:
        text_width = int(measure.textlength(word, font=font)) + 6
        if x + text_width > width - 4 and x > 4:
            x, y = 4, y + line
        placed.append((x, y, text_width, word, _strength(value, top)))
        x += text_width + 4
    picture = Image.new("RGB", (width, y + line + 4), "white")
    draw = ImageDraw.Draw(picture)
    for x, y, text_width, word, strength in placed:
        shade = int(255 * (1 - strength))
        draw.rectangle((x, y, x + text_width, y + line - 4), fill=(255, shade, shade))
        draw.text((x + 3, y + 2), word, fill="black", font=font)
    return picture


def words_panel(panels: list[tuple[Image.Image, str, list[tuple[str, float]]]], path: str | Path,
                side: int = 192) -> Path:
    """Pictures side by side, each with its title above its highlighted words; saved atomically to `path`."""
    from ..io import save_image_atomic
    from .heatmap import captioned

    columns = []
    for picture, title, words in panels:
        top = captioned(picture, title, min_side=side)
        strip = words_picture(words, top.width)
        column = Image.new("RGB", (top.width, top.height + strip.height), "white")
        column.paste(top, (0, 0))
        column.paste(strip, (0, top.height))
        columns.append(column)
    out = Image.new("RGB", (sum(c.width for c in columns) + 8 * (len(columns) - 1),
                            max(c.height for c in columns)), "white")
    x = 0
    for column in columns:
        out.paste(column, (x, 0))
        x += column.width + 8
    return save_image_atomic(path, out)
