"""Figures of docs/results-explainers.md: every explainer on held-out world scenes, and its speed at 224 px.

    python benchmarks/explainers.py [--count 100] [--device cpu]

Part 1 runs `ntlb benchmark explainers` on the bundled world model (pointing game, energy in the mask, Otsu
IoU, perturbation areas on patches and tokens, top-word accuracy, time per pair; 1- and 2-object scenes; a
random map as control) and draws the same scenes under every explainer. Part 2 times every explainer on
random-weight ViT-B/32 and RN50 at 224 px (1 image x 8 texts; ratios to chefer2021 measured in this run).
Writes docs/results-explainers.json and docs/explainers-examples.png; prints the markdown tables.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import ntlb
from ntlb.io import write_json_atomic
from ntlb_research.explainer_benchmark import (
    SETTING_TITLES,
    benchmark_explainers,
    comparison_figure,
    markdown_table,
    time_explainers,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100, help="world scenes per setting (1 and 2 objects)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(DOCS))
    args = parser.parse_args()
    methods = ntlb.explainers.available()
    world = ntlb.load_model(device=args.device)
    results = benchmark_explainers(world, methods, count=args.count)
    results["model"] = world.name
    comparison_figure(world, methods, Path(args.out) / "explainers-examples.png")
    speed = {}
    for name in ("ViT-B-32", "RN50"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adapter = ntlb.load_model(name, device=args.device)
        speed[name] = time_explainers(adapter, methods)
    results["seconds_per_pair_224px"] = speed
    results["device"] = args.device
    write_json_atomic(Path(args.out) / "results-explainers.json", results)
    for setting, title in SETTING_TITLES.items():
        print(f"\n### {title}\n\n{markdown_table(results, setting)}")
    print("\n### time per image-text pair at 224 px (1 image x 8 texts, random weights)\n")
    print("| explainer | " + " | ".join(f"{n} ms | x chefer2021" for n in speed) + " |")
    print("|---|" + "---:|---:|" * len(speed))
    for method in methods:
        cells = []
        for times in speed.values():
            if method in times:
                cells += [f"{1000 * times[method]:.1f}", f"{times[method] / times['chefer2021']:.2f}"]
            else:
                cells += ["n/a", "n/a"]
        print(f"| {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
