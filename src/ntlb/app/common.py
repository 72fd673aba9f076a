"""What every tab of the app shares: gradio (an extra), the loaded model and its workspace, the inputs of a page,
one-line errors in the page, and the world scenes the page offers as examples."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from ..errors import NtlbError
from ..models.adapter import ClipAdapter
from ..world import describe, random_scene, render

EXAMPLE_SEEDS = (7, 11, 23)


def gradio_module():
    """gradio, or a one-line error naming the extra that installs it."""
    try:
        import gradio
    except ImportError:
        raise NtlbError("the app needs gradio: pip install 'ntlb[app]'") from None
    return gradio


def example_scenes(folder: Path) -> list[tuple[str, str]]:
    """World scenes to start from: (picture path, its captions one per line)."""
    examples = []
    for seed in EXAMPLE_SEEDS:
        scene = random_scene(seed, 2)
        path = folder / f"world-scene-{seed}.png"
        if not path.is_file():
            Image.fromarray(render(scene, 256)[0]).save(path)
        examples.append((str(path), "\n".join(describe(scene, i).text for i in range(len(scene.objects)))))
    return examples


class Session:
    """One loaded model and the folder its requests write to; each handler runs a library runner under it."""

    def __init__(self, adapter: ClipAdapter, workspace: Path):
        self.adapter = adapter
        self.workspace = workspace

    def folder(self) -> Path:
        """A new folder for one request's files."""
        return Path(tempfile.mkdtemp(dir=self.workspace))

    def fail(self, error: Exception):
        """The page's one-line message for an error (no stack trace)."""
        return gradio_module().Error(str(error), print_exception=False)

    def inputs(self, image, texts: str) -> tuple[str, list[str]]:
        """The picture saved in a new request folder, and the non-empty lines of the texts."""
        if image is None:
            raise NtlbError("no image: upload one or pick an example below")
        lines = [line.strip() for line in (texts or "").splitlines() if line.strip()]
        if not lines:
            raise NtlbError("no texts: write one text per line")
        path = self.folder() / "image.png"
        (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB").save(path)
        return str(path), lines
