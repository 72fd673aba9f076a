"""Words highlighted by their relevance: HTML for reports, 24-bit ANSI colour for the terminal."""

from __future__ import annotations

import html


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
