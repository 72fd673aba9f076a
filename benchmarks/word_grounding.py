"""The word-grounding test on the bundled world model (docs/results-explainers.md): does a word score rank a
two-object scene above the same scene with its caption made false one way (colour wrong, shape wrong, object
missing, colours swapped)? Every explainer with text relevance x logit mode x normalisation x word score, beside
CLIP's own score and the changed words' own share.

    python benchmarks/word_grounding.py [--per-kind 40] [--offset 8000000] [--interactions 5] [--device cpu]

The new scores' temperatures were chosen on the selection seeds (--offset 9000000); the results doc reports the
default seeds (8000000). Writes docs/results-word-grounding.json (or --out) and prints the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ntlb
from ntlb.io import write_json_atomic
from ntlb_research.explainer_benchmark import word_grounding, word_grounding_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-kind", type=int, default=40, help="pairs per kind of false word")
    parser.add_argument("--offset", type=int, default=8 * 10**6, help="seed offset (9000000: the selection seeds)")
    parser.add_argument("--explainers", default=None, help="comma-separated (default: every registered one)")
    parser.add_argument("--interactions", type=int, default=5,
                        help="pairs per kind for the interactions explainer (about 100x chefer2021's time per pair)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(DOCS / "results-word-grounding.json"))
    args = parser.parse_args()
    world = ntlb.load_model(device=args.device)
    explainers = args.explainers.split(",") if args.explainers else None
    started = time.perf_counter()
    results = word_grounding(world, explainers, per_kind=args.per_kind, offset=args.offset,
                             counts={"interactions": args.interactions})
    results["model"], results["device"] = world.name, args.device
    results["total_seconds"] = time.perf_counter() - started
    write_json_atomic(args.out, results)
    print(word_grounding_table(results))
    print(f"skipped: {results['skipped']}\nnotes: {results['notes']}\n{results['total_seconds']:.0f} s in all")


if __name__ == "__main__":
    main()
