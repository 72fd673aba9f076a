"""The automatic lambda's cost: the 8-value sweep (one batched optimisation) against one editing run, measured in
one invocation (docs/benchmarks.md; target: the sweep costs <= 3x one run on CPU).

    python benchmarks/edit_speed.py [--steps 30] [--threads 2] [--generator world-render]

The bundled world model and --generator (world-render, the default, or world-vqgan), a held-out one-object scene,
"a purple circle". One run is
`--expl-weight 0` (a single latent; the word term is still computed, times 0); the sweep is `--expl-weight auto`
(lambda = 0, 0.5, ..., 3.5 as a batch of 8 latents). Best of 2 repeats each.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from PIL import Image

import ntlb
from ntlb.generators import create_generator
from ntlb.tasks.guidance.editing import EditConfig, edit
from ntlb.world import random_scene, render
from ntlb.world.datasets import scene_seed


def seconds(adapter, picture, steps: int, weight: float | None, name: str) -> float:
    best = float("inf")
    for _ in range(2):
        generator = create_generator(name, (64, 64))
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            edit(adapter, generator, picture, "a purple circle", folder,
                 EditConfig(steps=steps, expl_weight=weight, snapshot_every=steps), progress=False)
            best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generator", default="world-render")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adapter = ntlb.load_model()
    picture = Image.fromarray(render(random_scene(scene_seed("test", 5), 1), 64)[0])
    one = seconds(adapter, picture, args.steps, 0.0, args.generator)
    sweep = seconds(adapter, picture, args.steps, None, args.generator)
    print("| run | s | s / step | x one run |\n|---|---:|---:|---:|")
    print(f"| one run (lambda = 0) | {one:.2f} | {one / args.steps:.3f} | 1.00 |")
    print(f"| sweep of 8 lambdas, batched | {sweep:.2f} | {sweep / args.steps:.3f} | {sweep / one:.2f} |")
    print(f"| 8 separate runs (8 x one run) | {8 * one:.2f} | {8 * one / args.steps:.3f} | 8.00 |")


if __name__ == "__main__":
    main()
