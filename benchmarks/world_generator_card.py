"""Model-card figures of the bundled world VQGAN (docs/world-model.md, "The world generator").

    python benchmarks/world_generator_card.py [--count 300] [--config YAML --weights FILE]

On `count` held-out scenes (test seed space, 1-4 objects at 64 px): L1 of the reconstructions, and the share of
objects the exact world detector finds with the right colour and shape and box IoU >= 0.5 on the original renders
and on the reconstructions (overall, small and large objects); the target is >= 90% of the originals' share.
Draws originals above their reconstructions, and decodes of random latents. Writes docs/world-generator.json and
docs/world-generator-examples.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ntlb.generators import create_generator
from ntlb.generators.vqgan import BUNDLED, load_vqgan
from ntlb.io import save_figure_atomic, write_json_atomic
from ntlb.world import random_scene, render
from ntlb.world.datasets import scene_seed
from ntlb_research.vqgan_training import reconstruction_report

DOCS = Path(__file__).resolve().parents[1] / "docs"


def figure(model, config: Path, weights: Path, path: Path, count: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenes = [render(random_scene(scene_seed("test", i)), 64)[0] for i in range(count)]
    images = torch.from_numpy(np.stack(scenes)).permute(0, 3, 1, 2).float() / 255
    generator = create_generator("vqgan", (64, 64), config=config, checkpoint=weights)
    with torch.no_grad():
        rebuilt = model.decode(model.snap(model.encode(images))).clamp(0, 1)
        random = torch.cat([generator.image_of(generator.random_latent(seed)) for seed in range(count)])
    rows = [("original", images), ("reconstruction", rebuilt), ("random latent", random)]
    fig, axes = plt.subplots(len(rows), count, figsize=(1.3 * count, 1.45 * len(rows)), squeeze=False)
    for row, (title, pictures) in enumerate(rows):
        for column in range(count):
            axes[row][column].imshow(pictures[column].permute(1, 2, 0).numpy())
            axes[row][column].axis("off")
        axes[row][0].set_title(title, fontsize=8, loc="left")
    save_figure_atomic(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="held-out scenes")
    parser.add_argument("--config", default=str(BUNDLED["world-vqgan"][0]))
    parser.add_argument("--weights", default=str(BUNDLED["world-vqgan"][1]))
    parser.add_argument("--out", default=str(DOCS / "world-generator.json"))
    parser.add_argument("--figure", default=str(DOCS / "world-generator-examples.png"))
    args = parser.parse_args()
    model = load_vqgan(args.config, args.weights)
    began = time.perf_counter()
    report = reconstruction_report(model, args.count)
    report["seconds"] = time.perf_counter() - began
    report["parameters"] = sum(p.numel() for p in model.parameters())
    report["weights_bytes"] = Path(args.weights).stat().st_size
    report["count"] = args.count
    write_json_atomic(args.out, report)
    figure(model, Path(args.config), Path(args.weights), Path(args.figure))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
