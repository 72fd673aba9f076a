"""Multi-word generation before and after world-render's discrete refinement, paired by prompt, from the run folders
of `benchmarks/editing_results.py --parts generate` (world-render rows).

    python benchmarks/generation_refinement.py --cache runs/editing-results --prompts 20 --seeds 0 --steps 100
        [--rows clip paper-1 deletion-1] [--out docs/results-generation-refinement.json]

A refined run's last snapshot (snapshots/step_<steps>.png, written at the last checkpoint) is the picture of its Adam
steps, before the refinement, which is what the same run with refine=0 outputs (seeded: the refinement only follows
the steps); its image.png is the refined picture. Where a separate refine=0 run exists (a row's -unrefined folder)
it is read too, and the two must agree pixel for pixel. For each run: the exact world detector's readings before and
after, both objects found or not, what the refinement changed, and for each asked object that is missing, why: its
shape drawn in another colour ("shape in colour X"), its colour on another shape ("colour on shape Y"), or neither.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _reading(path: Path) -> list[str]:
    from PIL import Image

    from ntlb.world.detector import WorldDetector

    return [d.label for d in WorldDetector()(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32))]


def why_missing(asked: str, detected: list[str]) -> str:
    """Why an asked "colour shape" is not among the detector's labels."""
    colour, shape = asked.split()
    other = [label for label in detected if label.split()[1] == shape]
    if other:
        return f"{shape} in {', '.join(label.split()[0] for label in other)}"
    other = [label for label in detected if label.split()[0] == colour]
    if other:
        return f"{colour} on {', '.join(label.split()[1] for label in other)}"
    return "neither its colour nor its shape"


def run_record(folder: Path, labels: tuple[str, ...], steps: int) -> dict | None:
    """Before / after the refinement of one run folder (None where it has not finished)."""
    import json

    if not (folder / "metrics.json").is_file():
        return None
    metrics = json.loads((folder / "metrics.json").read_text())
    out = {}
    for stage, path in (("before", folder / "snapshots" / f"step_{steps:05d}.png"), ("after", folder / "image.png")):
        detected = _reading(path)
        out[stage] = {"detected": detected, "both_found": all(label in detected for label in labels),
                      "one_found": any(label in detected for label in labels),
                      "missing": {label: why_missing(label, detected) for label in labels if label not in detected}}
    refined = (metrics.get("refinement") or {}).get("latents", [{}])[0]
    out["changes"] = [f"slot {c['slot']} {c['attribute']} {c['from']} -> {c['to']}" for c in refined.get("changes", [])]
    out["loss"] = [refined.get("loss_before"), refined.get("loss_after")]
    return out


def main() -> None:
    from editing_results import _row_folder, prompts  # the benchmark's prompts and folders

    from ntlb.io import write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "editing-results"))
    parser.add_argument("--generator", default="world-render")
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rows", nargs="+", default=["clip", "paper-1", "deletion-1"])
    parser.add_argument("--out", default=None, help="a JSON of every run's record (default: print only)")
    args = parser.parse_args()
    base = Path(args.cache) / args.generator / f"steps{args.steps}" / "generate"
    result: dict = {"settings": vars(args), "rows": {}}
    print("| row | runs | both found: Adam steps | + refinement | at least one: Adam steps | + refinement | "
          "prompts gained / lost |\n|---|---:|---:|---:|---:|---:|---|")
    for row in args.rows:
        records = []
        for index, (text, labels) in enumerate(prompts(args.prompts)):
            for seed in args.seeds:
                folder = base / _row_folder(row) / f"prompt{index}-seed{seed}"
                record = run_record(folder, tuple(labels), args.steps)
                if record is None:
                    continue
                separate = base / _row_folder(row + "-unrefined") / f"prompt{index}-seed{seed}" / "image.png"
                if separate.is_file():  # a separate refine=0 run: the same picture as the snapshot
                    from PIL import Image

                    snapshot = folder / "snapshots" / f"step_{args.steps:05d}.png"
                    record["separate_unrefined_equal"] = bool(np.array_equal(np.asarray(Image.open(separate)),
                                                                             np.asarray(Image.open(snapshot))))
                records.append({"prompt": index, "seed": seed, "text": text, **record})
        if not records:
            continue
        n = len(records)
        count = {(stage, key): sum(r[stage][key] for r in records) for stage in ("before", "after")
                 for key in ("both_found", "one_found")}
        gained = [r["prompt"] for r in records if r["after"]["both_found"] and not r["before"]["both_found"]]
        lost = [r["prompt"] for r in records if r["before"]["both_found"] and not r["after"]["both_found"]]
        result["rows"][row] = {"runs": n, **{f"{key}_{stage}": count[stage, key] / n for stage, key in count},
                               "gained": gained, "lost": lost, "records": records}
        print(f"| {row} | {n} | {count['before', 'both_found']}/{n} | {count['after', 'both_found']}/{n} | "
              f"{count['before', 'one_found']}/{n} | {count['after', 'one_found']}/{n} | "
              f"{','.join(map(str, gained)) or '-'} / {','.join(map(str, lost)) or '-'} |")
    for row, table in result["rows"].items():
        print(f"\n{row}: failures after the refinement")
        for r in table["records"]:
            if not r["after"]["both_found"]:
                print(f"  {r['prompt']} '{r['text']}': {r['after']['missing']} (detected {r['after']['detected']}; "
                      f"changes {r['changes']})")
    if args.out:
        write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
