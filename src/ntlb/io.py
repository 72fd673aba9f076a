"""Reading images with clear errors, and writing outputs atomically (a crash never leaves half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .errors import NtlbError


def load_image(path: str | Path) -> Image.Image:
    """An RGB PIL image; a one-line error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise NtlbError(f"image not found: {path}: check the path")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise NtlbError(f"cannot read image {path}: {type(err).__name__}: is it a PNG/JPEG file?") from None


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def save_image_atomic(path: str | Path, image: Image.Image) -> Path:
    """Save a PIL image (format from the suffix) atomically."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions().get(Path(path).suffix.lower(), "PNG"))
    return write_bytes_atomic(path, buffer.getvalue())


def save_figure_atomic(figure, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return write_bytes_atomic(path, buffer.getvalue())
