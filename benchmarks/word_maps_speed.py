"""The cost of each word's region: what a word adds to the score (`word_contribution_maps`, shift-averaged) against
one explanation of the caption and against the token x patch interactions' word maps, measured in one run.

    python benchmarks/word_maps_speed.py [--model ViT-B-32] [--images 1] [--device cpu] [--repeats 2]

An open_clip architecture with random weights, or the bundled ntlb-world (`--model ntlb-world`), at the model's
input size; the caption "a red circle and a blue square" (four semantic words). Each
figure is the best of `--repeats` calls after one warm-up; the ratios divide figures of this run. Prints a markdown
table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import ntlb
from ntlb.explain import create, word_contribution_maps, word_score_drops
from ntlb.explain.shifts import SHIFTS

TEXT = "a red circle and a blue square"
WORDS = ["red", "circle", "blue", "square"]


def best_seconds(call, repeats: int) -> float:
    """The fastest of `repeats` calls after one warm-up call."""
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="an open_clip architecture (random weights) or ntlb-world")
    parser.add_argument("--images", type=int, default=1, help="images, each with the caption")
    parser.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per row after a warm-up (the best counts)")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ntlb.load_model(args.model, device=args.device)
    pixels = torch.randn(args.images, 3, *adapter.preprocess_config.size,
                         generator=torch.Generator().manual_seed(0)).to(args.device, adapter.dtype)
    texts, words = [TEXT] * args.images, [WORDS] * args.images
    explainer = create("chefer2021")
    interactions = create("interactions")

    def caption():
        with torch.no_grad():
            explainer(adapter, pixels, [TEXT])

    def maps(shifts: int):
        return lambda: word_contribution_maps(explainer, adapter, pixels, texts, words, shifts=shifts)

    def interaction_maps():
        with torch.no_grad():
            explanation = interactions(adapter, pixels, [TEXT])
        return [explanation.word_maps(b, 0) for b in range(args.images)]

    rows = {
        "one chefer2021 explanation of the caption": best_seconds(caption, args.repeats),
        "score drops of the 4 words (`word_score_drops`)": best_seconds(
            lambda: word_score_drops(adapter, pixels, texts, words), args.repeats),
        "4 word maps on the patch grid (`shifts=1`)": best_seconds(maps(1), args.repeats),
        f"4 word maps shift-averaged (`shifts={SHIFTS}`, the default)": best_seconds(maps(SHIFTS), args.repeats),
        "interactions' word maps (default options)": best_seconds(interaction_maps, args.repeats),
    }
    base = rows["one chefer2021 explanation of the caption"]
    weights = "bundled weights" if adapter.name == "ntlb-world" else "random weights"
    print(f"\n{args.model}, {weights}, {args.device}, {args.images} image(s) x the caption, "
          f"best of {args.repeats}\n")
    print("| what | seconds per image | x one explanation |")
    print("|---|---:|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds / args.images:.3f} | {seconds / base:.1f} |")


if __name__ == "__main__":
    main()
