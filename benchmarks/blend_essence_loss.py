"""Does essence transfer's loss prefer the essence? The loss of hand-made outcomes on the editing benchmark's
transfer cases.

The benchmark counts a transfer as correct where the result has the target's colour and the source's shape
(`editing_results.py --parts blend`). This scores, under the loss the optimisation descends (`essence_loss`, the
default `BlendConfig` weights, without the l2 on the direction), four outcomes drawn exactly by the world's renderer
on each source's own background: the sources unchanged, the essence (target colour, source shape), the whole target
(the target's colour and shape in the source's place) and the target's shape in the source's colour. If the essence
is never the lowest, no optimiser or discrete search on this loss can find it; the script also counts, per target,
the identity / consistency weights (a grid) under which it would be.

    python benchmarks/blend_essence_loss.py [--targets 10] [--out docs/results-blend-essence-loss.json]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from editing_results import SIZE, blend_cases  # noqa: E402

from ntlb.io import write_json_atomic  # noqa: E402

OUTCOMES = ("unchanged", "essence", "whole target", "target shape, source colour")


def outcome_scenes(target, sources) -> dict[str, list]:
    """Each outcome's scene per source: the source's object with some of the target's attributes, on its ground."""
    from ntlb.world.scene import Scene

    colour, shape = target.objects[0].colour, target.objects[0].shape
    changes = {"unchanged": {}, "essence": {"colour": colour}, "whole target": {"colour": colour, "shape": shape},
               "target shape, source colour": {"shape": shape}}
    return {name: [Scene([replace(s.objects[0], **change)], seed=s.seed) for s in sources]
            for name, change in changes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-blend-essence-loss.json"))
    args = parser.parse_args()
    import torch
    import torch.nn.functional as F

    import ntlb
    from ntlb.config.guidance import BlendConfig
    from ntlb.tasks.guidance.blending import essence_loss
    from ntlb.tasks.guidance.editing import _features
    from ntlb.world.scene import render

    world, config = ntlb.load_model(), BlendConfig()

    def features(scenes: list):
        pictures = torch.stack([torch.from_numpy(render(s, SIZE)[0]).permute(2, 0, 1).float() / 255 for s in scenes])
        with torch.no_grad():
            return F.normalize(_features(world, pictures.to(world.device)), dim=-1).float()

    records = []
    for index, (target, sources) in enumerate(blend_cases(args.targets)):
        goal, own = features([target]), features(sources)
        losses = {}
        for name, scenes in outcome_scenes(target, sources).items():
            total, parts = essence_loss(features(scenes), goal, own, config)
            losses[name] = {"loss": float(total.sum()), **parts}
        records.append({"target": index, "colour": target.objects[0].colour, "losses": losses,
                        "lowest": min(losses, key=lambda name: losses[name]["loss"])})
    # the weights (identity, consistency) under which the essence would be the lowest of the four, per target
    grid = [(i, c) for i in np.linspace(0, 5, 51) for c in np.linspace(0, 2, 21)]

    def weighted(parts: dict, identity: float, consistency: float) -> float:
        return parts["transfer"] + consistency * parts["consistency"] + identity * parts["identity"]

    for record in records:
        losses = record["losses"]
        record["weights_where_essence_lowest"] = sum(
            all(weighted(losses["essence"], i, c) < weighted(losses[o], i, c) for o in OUTCOMES if o != "essence")
            for i, c in grid)
    wins = [(sum(all(weighted(r["losses"]["essence"], i, c) < weighted(r["losses"][o], i, c)
                     for o in OUTCOMES if o != "essence") for r in records), i, c) for i, c in grid]
    best = max(wins)
    summary = {name: {key: float(np.mean([r["losses"][name][key] for r in records]))
                      for key in ("loss", "transfer", "identity", "consistency")} for name in OUTCOMES}
    lowest = {name: sum(r["lowest"] == name for r in records) for name in OUTCOMES}
    result = {"settings": {**vars(args), "identity": config.identity, "consistency": config.consistency},
              "mean": summary, "lowest": lowest, "weight_grid": len(grid),
              "best_weights": {"targets_where_essence_lowest": best[0], "identity": float(best[1]),
                               "consistency": float(best[2])}, "records": records}
    write_json_atomic(args.out, result)
    print("| outcome | loss | 1 - cos to target | 1 - cos to source | consistency | lowest in |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in summary.items():
        print(f"| {name} | {row['loss']:.3f} | {row['transfer']:.3f} | {row['identity']:.3f} | "
              f"{row['consistency']:.3f} | {lowest[name]}/{len(records)} |")
    print("weight pairs (of", len(grid), "identity 0-5 x consistency 0-2) where the essence is lowest, per target:",
          [r["weights_where_essence_lowest"] for r in records])
    print(f"at best (identity {best[1]:g}, consistency {best[2]:g}) the essence is lowest in {best[0]} of "
          f"{len(records)} targets")


if __name__ == "__main__":
    main()
