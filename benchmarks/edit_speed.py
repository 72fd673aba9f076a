"""The automatic lambda's cost: the 8-value sweep (one batched optimisation) against one editing run, measured in
one invocation (docs/benchmarks.md; target: the sweep costs <= 3x one run on CPU).

    python benchmarks/edit_speed.py [--steps 30] [--threads 2] [--generator world-render]

The bundled world model and --generator (world-render, the default, or world-vqgan), a held-out one-object scene,
"a purple circle". One run is `--expl-weight 0` (a single latent); the sweep is `--expl-weight auto` (lambda = 0,
0.5, ..., 3.5 as a batch of 8 latents), as configured (world-render: `EditConfig.sweep_samples` pictures per lambda
and step) and in full (`sweep_samples=0`: the generator's own 8, the paper's rule unchanged). Best of 2 repeats each,
wall-clock and this process's CPU seconds (the CPU figure moves less with other work on the machine).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from PIL import Image

import ntlb
from ntlb.generators import create_generator
from ntlb.tasks.guidance.editing import EditConfig, edit
from ntlb.world import random_scene, render
from ntlb.world.datasets import scene_seed


def seconds(adapter, picture, steps: int, weight: float | None, name: str, **options) -> tuple[float, float]:
    """(wall, CPU) seconds of the faster of two runs."""
    best = (float("inf"), float("inf"))
    for _ in range(2):
        generator = create_generator(name, (64, 64))
        with tempfile.TemporaryDirectory() as folder:
            started, cpu = time.perf_counter(), time.process_time()
            edit(adapter, generator, picture, "a purple circle", folder,
                 EditConfig(steps=steps, expl_weight=weight, snapshot_every=steps, **options), progress=False)
            best = min(best, (time.perf_counter() - started, time.process_time() - cpu))
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
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    one = seconds(adapter, picture, args.steps, 0.0, args.generator)
    sweep = seconds(adapter, picture, args.steps, None, args.generator)
    full = seconds(adapter, picture, args.steps, None, args.generator, sweep_samples=0)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("| run | s | s / step | x one run | CPU s | x one run (CPU) |\n|---|---:|---:|---:|---:|---:|")
    for label, (wall, cpu) in (("one run (lambda = 0)", one), ("sweep of 8 lambdas, batched (default)", sweep),
                               ("full sweep of 8 lambdas (sweep_samples 0)", full)):
        print(f"| {label} | {wall:.2f} | {wall / args.steps:.3f} | {wall / one[0]:.2f} | {cpu:.2f} | "
              f"{cpu / one[1]:.2f} |")
    print(f"| 8 separate runs (8 x one run) | {8 * one[0]:.2f} | {8 * one[0] / args.steps:.3f} | 8.00 | "
          f"{8 * one[1]:.2f} | 8.00 |")


if __name__ == "__main__":
    main()
