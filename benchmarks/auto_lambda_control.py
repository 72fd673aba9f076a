"""The control of the automatic lambda: is its gain the word term's, or the selection's?

The paper's rule runs 8 lambdas and keeps the result CLIP scores highest, so it is also a best-of-8 over 8
optimisations that differ in their random draws. This runs the same sweep (same cases, seeds, steps, pictures per
latent and refinement) with all 8 lambdas set to 0 and keeps the highest CLIP score the same way: what selection
alone gives. Compare with `editing_results.py --expl-weight auto` on the same families (docs/results-editing.md).

    python benchmarks/auto_lambda_control.py [--scenes 10] [--steps 100] [--jobs 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from editing_results import ALL_FAMILIES, HARD_FAMILIES, _edit, edit_records  # noqa: E402

from ntlb.io import write_json_atomic  # noqa: E402


def _zero_sweep(job: tuple) -> str:
    """`_edit` with the sweep's lambdas all 0 (in this worker process only)."""
    import ntlb.config.guidance as guidance

    guidance.LAMBDAS = (0.0,) * len(guidance.LAMBDAS)
    return _edit(job)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=10, help="scenes per family")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--families", nargs="+", default=list(HARD_FAMILIES), choices=list(ALL_FAMILIES))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "editing-results" / "control-zero-sweep"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-editing-families-control.json"))
    args = parser.parse_args()
    from ntlb.config.guidance import EditConfig

    sweep_samples = EditConfig().sweep_samples
    cases = {(family, i): Path(args.cache) / family.replace(" ", "-").replace("+", "plus") / f"{i:03d}"
             for family in args.families for i in range(args.scenes)}
    jobs = [(family, i, args.steps, str(folder), "world-render", None, "deletion", sweep_samples)
            for (family, i), folder in cases.items()]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for _ in tqdm(pool.imap_unordered(_zero_sweep, jobs), total=len(jobs), desc="zero sweeps", unit="run"):
            pass
    records = edit_records(cases)
    table = {}
    for family in args.families:
        rows = [r for r in records if r["family"] == family]
        best = [r["scores"][max(range(len(r["clip"])), key=r["clip"].__getitem__)] for r in rows]
        table[family] = {"n": len(rows), "best_of_8_quality": sum(s["quality"] for s in best),
                         "best_of_8_identity": sum(s["identity"] for s in best),
                         "first_quality": sum(r["scores"][0]["quality"] for r in rows),
                         "any_quality": sum(any(s["quality"] for s in r["scores"]) for r in rows),
                         "cases": {r["index"]: bool(b["quality"]) for r, b in zip(rows, best)}}
        cell = table[family]
        print(f"{family}: best of 8 lambda = 0 runs by CLIP: quality {cell['best_of_8_quality']}/{cell['n']}, "
              f"identity {cell['best_of_8_identity']}/{cell['n']}; the first run alone {cell['first_quality']}; "
              f"any of the 8 {cell['any_quality']}")
    settings = {"steps": args.steps, "scenes": args.scenes, "sweep_samples": sweep_samples, "lambdas": "8 x 0"}
    write_json_atomic(args.out, {"settings": settings, "families": table})


if __name__ == "__main__":
    main()
