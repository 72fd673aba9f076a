"""Reading images with clear errors, writing outputs atomically (a crash never leaves half a file) with the
usual permissions, and output folders that never mix the files of two runs."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .errors import NtlbError


def load_image(path: str | Path) -> Image.Image:
    """An RGB PIL image; a one-line error for a missing, truncated or unreadable file, or a folder."""
    path = Path(path)
    if path.is_dir():
        raise NtlbError(f"{path} is a folder: give image files (PNG, JPEG, ...)")
    if not path.is_file():
        raise NtlbError(f"image not found: {path}: check the path")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        if "truncated" in str(err):
            raise NtlbError(f"image {path} is truncated: the file is incomplete; copy or export it again") from None
        if isinstance(err, UnidentifiedImageError):
            raise NtlbError(f"{path} is not a picture ntlb can read: give a PNG, JPEG or WebP file") from None
        raise NtlbError(f"cannot read image {path}: {err.strerror or 'the file cannot be decoded'}: give a PNG, "
                        "JPEG or WebP file you can open") from None


def check_output(path: str | Path, kind: str = "folder", flag: str = "--out") -> Path:
    """Check, before any work, that an output `kind` ("folder" or "file") can be written at `path`: not an
    existing file where a folder goes (or the reverse), no file among its parents, a writable nearest existing
    folder. A one-line error names the path and the fix."""
    path = Path(path)
    if kind == "folder" and path.exists() and not path.is_dir():
        raise NtlbError(f"{flag} {path} is a file, and this command writes a folder there: give a folder path "
                        "(new or existing)")
    if kind == "file" and path.is_dir():
        raise NtlbError(f"{flag} {path} is a folder, and this command writes a file there: give a file path, "
                        f"e.g. {path / 'prompts.pt'}")
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
    if kind == "file" and existing == path:
        existing = path.parent
    if not existing.is_dir():
        raise NtlbError(f"{flag} {path}: {existing} is a file, not a folder: give a path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NtlbError(f"{flag} {path}: cannot write in {existing} (permission denied): give a path you can write to")
    return path


def _file_mode() -> int:
    """rw for everyone the umask allows (0644 under the usual umask 022), as open() would create."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, _file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def ntlb_version() -> str:
    """The installed ntlb's version (its package metadata), or "unknown" when run from a source tree alone."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ntlb")
    except PackageNotFoundError:
        return "unknown"


HEADER = ("model", "pretrained", "random_weights", "ntlb_version", "settings")


def write_record(path: str | Path, data: dict, adapter: Any = None, settings: Any = None) -> dict:
    """Write a runner's JSON result atomically, with the one provenance header every record carries (`HEADER`):
    the model and its pretrained weights (None for a run without a model), whether they are random, the ntlb
    version, and the settings that define the result (a dataclass or a dict). Returns the record written."""
    from dataclasses import asdict, is_dataclass

    clash = sorted(set(HEADER) & set(data))
    if clash:
        raise ValueError(f"the header keys {clash} come from adapter= and settings=, not from the data")
    header = {"model": getattr(adapter, "name", None), "pretrained": getattr(adapter, "pretrained", None),
              "random_weights": getattr(adapter, "random_weights", None), "ntlb_version": ntlb_version(),
              "settings": asdict(settings) if is_dataclass(settings) else settings}
    record = {**header, **data}
    write_text_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
    return record


def image_bytes(image: Image.Image, suffix: str = ".png") -> bytes:
    """A PIL image encoded in the format its suffix names."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=Image.registered_extensions().get(suffix.lower(), "PNG"))
    return buffer.getvalue()


def save_image_atomic(path: str | Path, image: Image.Image) -> Path:
    """Save a PIL image (format from the suffix) atomically."""
    return write_bytes_atomic(path, image_bytes(image, Path(path).suffix))


class OutputFolder:
    """A folder that a command writes its results into. The files an earlier run of ntlb wrote there (listed in
    `.ntlb-outputs.json`) are removed first, so a rerun never leaves old and new results side by side; files
    ntlb did not write are left alone."""

    MANIFEST = ".ntlb-outputs.json"

    def __init__(self, path: str | Path):
        self.root = Path(path)
        self.written: list[str] = []
        manifest = self.root / self.MANIFEST
        if manifest.is_file():
            try:
                previous = json.loads(manifest.read_text())
            except json.JSONDecodeError:
                previous = []
            for name in previous:
                (self.root / name).unlink(missing_ok=True)
            manifest.unlink()

    def __truediv__(self, name: str) -> Path:
        """The path of an output file, recorded as written by this run."""
        return self.record([self.root / name])[0]

    def record(self, paths: list[Path]) -> list[Path]:
        """Record files (inside the folder) as written by this run; returns them."""
        names = [str(Path(path).relative_to(self.root)) for path in paths]
        new = [name for name in names if name not in self.written]
        if new:
            self.written += new
            write_json_atomic(self.root / self.MANIFEST, self.written)
        return [Path(path) for path in paths]


def save_figure_atomic(figure, path: str | Path, dpi: int = 110, tight: bool = True) -> Path:
    """Lay out and save a matplotlib figure as PNG atomically, then close it. Glyphs the font lacks (emoji,
    some scripts in a caption) are drawn as boxes without a warning per glyph."""
    import io
    import warnings

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        warnings.filterwarnings("ignore", message="Matplotlib currently does not support")
        if tight:
            figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return write_bytes_atomic(path, buffer.getvalue())
