"""What world-render's discrete refinement changed in cached editing runs: each latent's most likely scene at the
last step before the refinement (the run's snapshot, taken before `refine_discrete`) against its final image,
both scored by the editing benchmark's detector rules.

    python benchmarks/edit_refinement_effect.py runs/editing-auto4/world-render/steps100/edit-auto-samples2-paper
        [--families colour shape "two attributes" "two objects"] [--scenes 10]

Prints per family: cases, lambda = 0 correct before -> after, all latents correct before -> after, latents the
refinement made correct and made wrong, and the refinement's moves by kind (a list of slots: an exchange).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from editing_results import ALL_FAMILIES, FAMILIES, SIZE, _final_images, edit_case, score_edit  # noqa: E402


def snapshot_images(folder: Path):
    """The last snapshot's pictures (N, 3, SIZE, SIZE) in [0, 1] (`to_picture` lays them side by side)."""
    import torch
    from PIL import Image

    path = sorted((folder / "snapshots").glob("step_*.png"))[-1]
    row = np.array(Image.open(path).convert("RGB"), dtype=np.float32) / 255  # (SIZE, N x SIZE, 3)
    count = row.shape[1] // SIZE
    return torch.from_numpy(row).permute(2, 0, 1).reshape(3, SIZE, count, SIZE).permute(2, 0, 1, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", help="a folder of editing runs (FAMILY-INDEX subfolders, as editing_results.py)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(ALL_FAMILIES))
    parser.add_argument("--scenes", type=int, default=10)
    args = parser.parse_args()
    import torch

    from ntlb.world.scene import render

    for family in args.families:
        tally, moves = Counter(), Counter()
        for index in range(args.scenes):
            folder = Path(args.sweeps) / f"{family.replace(' ', '-')}-{index}"
            if not (folder / "metrics.json").is_file():
                continue
            case = edit_case(family, index)
            picture, masks = render(case["scene"], SIZE)
            original = torch.from_numpy(picture).permute(2, 0, 1).float() / 255
            before = [score_edit(case, image, original, masks)["quality"] for image in snapshot_images(folder)]
            after = [score_edit(case, image, original, masks)["quality"] for image in _final_images(folder)]
            metrics = json.loads((folder / "metrics.json").read_text())
            for latent in (metrics.get("refinement") or {}).get("latents", []):
                for change in latent["changes"]:
                    kind = "exchange" if isinstance(change["slot"], list) else "one slot"
                    moves[f"{kind} {change['attribute']}"] += 1
            tally["cases"] += 1
            tally["lambda 0 before"] += before[0]
            tally["lambda 0 after"] += after[0]
            tally["latents"] += len(after)
            tally["correct before"] += sum(before)
            tally["correct after"] += sum(after)
            tally["made correct"] += sum(a and not b for a, b in zip(after, before))
            tally["made wrong"] += sum(b and not a for a, b in zip(after, before))
        print(f"{family}: {dict(tally)}; moves {dict(moves)}")


if __name__ == "__main__":
    main()
