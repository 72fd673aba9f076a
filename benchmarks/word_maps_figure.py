"""A figure of which region each word matches on held-out two-object world scenes (docs/word-maps-examples.png):
per scene, each colour and shape word's map of what it adds to the score (chefer2021), on the patch grid and
shift-averaged (`ntlb.explain.word_contribution_maps`); the green outline is the word's own object.

    python benchmarks/word_maps_figure.py [--offset 7000000] [--scenes 3] [--out docs/word-maps-examples.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ntlb
from ntlb.explain import create, word_contribution_maps
from ntlb.explain.shifts import SHIFTS
from ntlb.viz import overlay, picture_grid
from ntlb.world import random_scene, relate, render
from ntlb.world.datasets import scene_seed

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROLES = ("colour", "shape")


def outlined(picture: Image.Image, mask: np.ndarray) -> Image.Image:
    """The picture with the mask's border drawn in green (the mask scaled to the picture)."""
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    border = Image.fromarray(edge.astype(np.uint8) * 255).resize(picture.size, Image.NEAREST)
    out = np.asarray(picture).copy()
    out[np.asarray(border) > 0] = (0, 255, 0)
    return Image.fromarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offset", type=int, default=7 * 10**6, help="first scene of the 'multi-test' seed space")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--out", default=str(DOCS / "word-maps-examples.png"))
    args = parser.parse_args()
    world = ntlb.load_model()
    scenes = [random_scene(scene_seed("multi-test", args.offset + i), 2) for i in range(args.scenes)]
    rendered = [render(scene, 64) for scene in scenes]
    pictures = [Image.fromarray(image).resize((192, 192), Image.NEAREST) for image, _ in rendered]
    captions = [relate(scene, 0, 1, "and") for scene in scenes]
    words = [[w for w in caption.words if w.role in ROLES] for caption in captions]
    explainer = create("chefer2021")
    with torch.no_grad():
        maps = {shifts: word_contribution_maps(explainer, world, [Image.fromarray(image) for image, _ in rendered],
                                             [c.text for c in captions], [[w.text for w in ws] for ws in words],
                                             shifts=shifts) for shifts in (1, SHIFTS)}
    cells = []
    for i, caption in enumerate(captions):
        for shifts, label in ((1, "patch grid"), (SHIFTS, "shift-averaged")):
            cells.append((pictures[i], caption.text if shifts == 1 else ""))
            for k, word in enumerate(words[i]):
                picture = overlay(pictures[i], maps[shifts][i][k].clamp(min=0))
                cells.append((outlined(picture, rendered[i][1][word.obj].astype(bool)), f'"{word.text}", {label}'))
    written = picture_grid(cells, 5, args.out, "What each word adds to the score, mapped by chefer2021 "
                                               "(green: the word's own object)")
    print("wrote", ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
