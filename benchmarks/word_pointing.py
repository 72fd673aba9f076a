"""Which region each word matches, on the bundled world model: per-word maps of token x patch interactions and the
library's maps of what each word adds to the score (`word_contribution_maps`, shift-averaged) against one caption
per object explained by chefer2021, on held-out two-object scenes (docs/results-explainers.md).

    python benchmarks/word_pointing.py [--count 30] [--layers -1 -3] [--device cpu]

Writes docs/results-word-pointing.json and prints the table. The grounding check (does a word score rank a scene above
the same scene with one word made false?) is benchmarks/word_grounding.py, for every explainer and word score.
Why the word maps miss (references, read-outs, layers, where the mass sits) and the maps of what each word adds to
the score, by any image explainer: benchmarks/word_pointing_variants.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ntlb
from ntlb.io import write_json_atomic
from ntlb_research.explainer_benchmark import word_pointing, word_pointing_table

DOCS = Path(__file__).resolve().parents[1] / "docs"
VARIANT_KEYS = ("variants", "binding", "per_object_captions", "contribution")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30, help="two-object scenes (2 colour and 2 shape words each)")
    parser.add_argument("--layers", type=int, nargs="+", default=[-1, -3],
                        help="start layers of both towers for the interactions (-1: the released code's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(DOCS / "results-word-pointing.json"))
    args = parser.parse_args()
    world = ntlb.load_model(device=args.device)
    results = word_pointing(world, count=args.count, layers=tuple(args.layers))
    print(word_pointing_table(results), flush=True)
    results["model"] = world.name
    out = Path(args.out)
    kept = json.loads(out.read_text()) if out.exists() else {}  # word_pointing_variants.py's entries stay
    results |= {key: kept[key] for key in VARIANT_KEYS if key in kept}
    write_json_atomic(out, results)


if __name__ == "__main__":
    main()
