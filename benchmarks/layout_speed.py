"""Steps per second of layout generation with the bundled world VQGAN against the weights-free Fourier generator,
measured in one run (docs/benchmarks.md).

    python benchmarks/layout_speed.py [--steps 40] [--views 2 4] [--threads 2]

The bundled world model, world layout seed 3, ntlb's loss (one batched chefer2021 call per step); each generator
timed over the same steps after one warm-up step, best of 2 repeats.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import ntlb
from ntlb.generators import create_generator
from ntlb.tasks.layouts.generation import LayoutConfig, generate
from ntlb.tasks.layouts.layout import random_world_layout


def steps_per_second(adapter, generator_name: str, options: dict, steps: int, views: int) -> float:
    layout = random_world_layout(3)
    best = float("inf")
    for repeat in range(2):
        generator = create_generator(generator_name, (64, 64), seed=repeat, **options)
        with tempfile.TemporaryDirectory() as folder:
            generate(adapter, layout, generator, folder, LayoutConfig(steps=1, views=views), progress=False)
        generator = create_generator(generator_name, (64, 64), seed=repeat, **options)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            generate(adapter, layout, generator, folder, LayoutConfig(steps=steps, views=views, snapshot_every=steps),
                     progress=False)
            best = min(best, time.perf_counter() - started)
    return steps / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--views", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    adapter = ntlb.load_model()
    print("| views | world-vqgan steps/s | pixels steps/s | pixels / world-vqgan | 300 steps with world-vqgan (s) |\n"
          "|---:|---:|---:|---:|---:|")
    for views in args.views:
        vqgan = steps_per_second(adapter, "world-vqgan", {}, args.steps, views)
        pixels = steps_per_second(adapter, "pixels", {"decay": 1.5}, args.steps, views)
        print(f"| {views} | {vqgan:.2f} | {pixels:.2f} | {pixels / vqgan:.2f} | {300 / vqgan:.0f} |", flush=True)


if __name__ == "__main__":
    main()
