"""Image-folder datasets (one folder per class), the ImageNet layout, K-shot sampling and class subsets."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ...errors import NtlbError
from ...io import load_image

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
SYNSET = re.compile(r"^n\d{8}$")


@dataclass
class ImageFolder:
    """Samples (path, label) of a folder-per-class dataset, with readable class names."""

    root: Path
    folders: list[str]
    classnames: list[str]
    samples: list[tuple[Path, int]]

    def few_shot(self, shots: int, seed: int) -> ImageFolder:
        """K images per class drawn by seed; a one-line error when a class has fewer than K."""
        if shots < 1:
            raise NtlbError(f"--shots {shots}: use at least 1 image per class")
        rng = np.random.default_rng(seed)
        picked = []
        for label in range(len(self.folders)):
            members = [s for s in self.samples if s[1] == label]
            if len(members) < shots:
                raise NtlbError(f"class '{self.folders[label]}' has {len(members)} image(s) but --shots is {shots}: "
                                f"use --shots {len(members)} or fewer, or add images")
            order = rng.permutation(len(members))[:shots]
            picked += [members[i] for i in sorted(order)]
        return ImageFolder(self.root, self.folders, self.classnames, picked)


def _names_file(root: Path, folders: list[str], path: Path | None) -> list[str]:
    """Class names from a names file ("folder name words" per line), ImageNet synsets, or the folder names."""
    path = path or (root / "classnames.txt")
    if path.is_file():
        table = {}
        for line in path.read_text().splitlines():
            if line.strip():
                key, _, name = line.strip().partition(" ")
                table[key] = name.strip() or key.replace("_", " ")
        missing = [f for f in folders if f not in table]
        if missing:
            raise NtlbError(f"{path} has no name for class folder '{missing[0]}': add a line '{missing[0]} <name>'")
        return [table[f] for f in folders]
    if all(SYNSET.match(f) for f in folders):
        if len(folders) != 1000:
            raise NtlbError(f"{root} has {len(folders)} synset folders: add a classnames.txt ('<wnid> <name>' per "
                            "line) for an ImageNet subset; only the full 1000 classes are named automatically")
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)  # sorted synsets are the standard class order
    return [f.replace("_", " ") for f in folders]


def read_image_folder(root: str | Path, classnames: str | Path | None = None) -> ImageFolder:
    """An image-folder dataset; one-line errors for a missing folder or one without classes or images."""
    root = Path(root)
    if not root.is_dir():
        raise NtlbError(f"dataset folder not found: {root}: give a folder with one sub-folder per class")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise NtlbError(f"{root} has no class folders: put each class's images in a sub-folder named after it")
    names = _names_file(root, folders, Path(classnames) if classnames else None)
    samples = [(path, label) for label, folder in enumerate(folders)
               for path in sorted((root / folder).iterdir()) if path.suffix.lower() in EXTENSIONS]
    if not samples:
        raise NtlbError(f"{root} has class folders but no images (PNG/JPEG/...) in them")
    return ImageFolder(root, folders, names, samples)


def class_subset(train_names: list[str], eval_names: list[str]) -> list[int]:
    """Index in the training classes of each evaluation class (ImageNet-A/-R style subsets)."""
    index = {name: i for i, name in enumerate(train_names)}
    missing = [n for n in eval_names if n not in index]
    if missing:
        raise NtlbError(f"evaluation class '{missing[0]}' is not among the {len(train_names)} training classes: "
                        "evaluate on a dataset whose classes are a subset of the prompts' classes")
    return [index[n] for n in eval_names]


class FolderDataset(Dataset):
    """(transformed image, label) of a list of samples."""

    def __init__(self, samples: list[tuple[Path, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(load_image(path)), label
