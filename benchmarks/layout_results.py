"""Paper Table 3 and Fig. 4 on the world: objects placed in boxes by ntlb's Dice loss against the masked baselines.

    python benchmarks/layout_results.py [--layouts 50] [--seeds 0 1 2 3] [--steps 200] [--views 2] [--decay 1.5]
                                       [--jobs 2] [--quick]

Random world layouts (1-3 boxes, "a photo of a {colour} {shape}") generated with the weights-free "pixels"
generator and the bundled world model, by each method, through `ntlb layout generate` (one run per folder under
--cache; finished runs are not redone). Table 3: Otsu precision / recall / F1 of each object's relevance map
against its box, and COCO AP / AR / AP50 of the world's exact detector against the layout. Writes
docs/results-layout.json and docs/results-layout-examples.png, and prints the markdown table. Then reads the
layouts of ../shared/data/coco100 (the paper's 50% filter) and checks the metrics on its real boxes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ntlb.io import save_figure_atomic, write_json_atomic
from ntlb.tasks.layout_generation import METHODS, TABLE_COLUMNS, summarize_runs
from ntlb.tasks.layouts import random_world_layout

ROOT = Path(__file__).resolve().parents[1]
COCO = ROOT.parent / "shared" / "data" / "coco100" / "instances_val2017.json"


def _run(job: tuple[str, str, int, int, int, int, float, str]) -> str:
    import torch

    from ntlb.cli import main

    method, dice, layout_seed, seed, steps, views, decay, folder = job
    torch.set_num_threads(1)
    if not (Path(folder) / "metrics.json").is_file():
        main(["layout", "generate", "--world-seed", str(layout_seed), "--method", method, "--dice", dice,
              "--seed", str(seed), "--steps", str(steps), "--views", str(views), "--decay", str(decay),
              "--snapshot-every", str(steps), "--out", folder])
    return folder


def by_folder(jobs: list[tuple], results: list[dict]) -> dict[str, list[tuple[int, int, dict]]]:
    """The runs of each method folder ("ntlb", "masked", ..., "ntlb-released") as (layout, seed, metrics)."""
    groups: dict[str, list[tuple[int, int, dict]]] = {}
    for job, result in zip(jobs, results):
        groups.setdefault(Path(job[-1]).parent.name, []).append((job[2], job[3], result))
    return groups


def spread_and_pairs(groups: dict[str, list[tuple[int, int, dict]]]) -> dict:
    """Per method: the std over seeds of the seed means (precision, recall, F1) and the F1 by number of boxes;
    for ntlb against each baseline, the share of (layout, seed) pairs where its F1 is higher or lower."""
    spread, counts = {}, {}
    for folder, runs in groups.items():
        seeds: dict[int, list[dict]] = {}
        boxes: dict[int, list[float]] = {}
        for _, seed, result in runs:
            seeds.setdefault(seed, []).append(result["mean"])
            boxes.setdefault(len(result["objects"]), []).append(result["mean"]["f1"])
        spread[folder] = {key: float(np.std([np.mean([m[key] for m in means]) for means in seeds.values()]))
                          for key in ("precision", "recall", "f1")}
        counts[folder] = {str(n): {"runs": len(f1), "f1": float(np.mean(f1))} for n, f1 in sorted(boxes.items())}
    f1 = {folder: {(layout, seed): r["mean"]["f1"] for layout, seed, r in runs} for folder, runs in groups.items()}
    pairs = {}
    for baseline in METHODS[1:]:
        diffs = [value - f1[baseline][key] for key, value in f1["ntlb"].items() if key in f1[baseline]]
        pairs[baseline] = {"pairs": len(diffs), "ntlb_higher": float(np.mean([d > 0 for d in diffs])),
                           "ntlb_lower": float(np.mean([d < 0 for d in diffs])),
                           "mean_difference": float(np.mean(diffs))}
    return {"std_over_seeds": spread, "f1_by_boxes": counts, "ntlb_vs": pairs}


def detector_diagnostics(groups: dict[str, list[tuple[int, int, dict]]]) -> dict:
    """Per method: detections per run, and AP / AP50 / AR with every label replaced by "object" (does the
    detector see a world object in the box at all, whichever colour and shape)."""
    from ntlb.metrics.detection import detection_scores

    report = {}
    for folder, runs in groups.items():
        truth = [[(o["box"], "object") for o in r["objects"]] for _, _, r in runs]
        found = [[(d["box"], "object", d["score"]) for d in r["detections"]] for _, _, r in runs]
        report[folder] = {"detections_per_run": float(np.mean([len(r["detections"]) for _, _, r in runs])),
                          "class_agnostic": detection_scores(truth, found)}
    return report


def examples_figure(cache: Path, layouts: list[int], seed: int, path: Path) -> None:
    """Fig. 4 style: one row per layout, the boxes and then each method's image with the boxes drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from PIL import Image

    fig, axes = plt.subplots(len(layouts), len(METHODS) + 1, figsize=(2.4 * (len(METHODS) + 1), 2.5 * len(layouts)),
                             squeeze=False)
    for row, layout_seed in enumerate(layouts):
        layout = random_world_layout(layout_seed)
        axes[row][0].imshow(np.full((layout.height, layout.width, 3), 255, dtype=np.uint8))
        axes[row][0].set_title("layout", fontsize=8)
        for j, label in enumerate(layout.labels()):
            x0, y0 = layout.boxes[j][:2]
            axes[row][0].text(x0 + 1, y0 + 5, label, fontsize=6)
        for column, method in enumerate(METHODS, start=1):
            folder = cache / method / f"layout{layout_seed}-seed{seed}"
            axes[row][column].imshow(Image.open(folder / "image.png"))
            f1 = json.loads((folder / "metrics.json").read_text())["mean"]["f1"]
            axes[row][column].set_title(f"{method} (F1 {100 * f1:.0f})", fontsize=8)
        for ax in axes[row]:
            for x0, y0, x1, y1 in layout.boxes:
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", lw=1.2))
            ax.axis("off")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def coco_check(path: Path) -> dict | None:
    """The paper's layout filter on the real COCO boxes, and the metrics on them: each box found exactly gives
    AP = AR = 1; each box shifted by a fifth of its width (IoU 2/3: a hit at 4 of COCO's 10 IoU thresholds)
    gives AP = 0.4."""
    if not path.is_file():
        return None
    from ntlb.metrics.detection import detection_scores
    from ntlb.tasks.layouts import coco_layout

    data = json.loads(path.read_text())
    layouts, skipped = [], 0
    for image in tqdm(data["images"], desc="COCO layouts", unit="image"):
        try:
            layouts.append(coco_layout(path, image["id"]))
        except Exception:  # noqa: BLE001  (an image with no box under 50% is skipped, as in the paper)
            skipped += 1
    truth = [list(zip(layout.boxes, layout.labels())) for layout in layouts]
    exact = [[(box, label, 1.0) for box, label in image] for image in truth]
    shifted = [[((x0 + (x1 - x0) / 5, y0, x1 + (x1 - x0) / 5, y1), label, 1.0) for (x0, y0, x1, y1), label in image]
               for image in truth]
    boxes = [len(layout.boxes) for layout in layouts]
    share = [sum(layout.area_ratios()) for layout in layouts]
    return {"images": len(data["images"]), "layouts": len(layouts), "skipped": skipped,
            "boxes_per_layout": float(np.mean(boxes)), "max_boxes": int(max(boxes)),
            "mean_area_share": float(np.mean(share)), "max_area_share": float(max(share)),
            "exact": detection_scores(truth, exact), "shifted_fifth": detection_scores(truth, shifted)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", type=int, default=50, help="world layouts (seeds 0..N-1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--views", type=int, default=2, help="augmented views per step")
    parser.add_argument("--decay", type=float, default=1.5, help="spectrum decay of the pixels generator")
    parser.add_argument("--released-seeds", type=int, nargs="*", default=[0],
                        help="seeds of an extra ntlb row with the released code's Dice (none: skip it)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one thread each")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "layout-results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-layout.json"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "results-layout-examples.png"))
    parser.add_argument("--quick", action="store_true", help="2 layouts, 1 seed, 10 steps: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.layouts, args.seeds, args.released_seeds, args.steps = 2, [0], [0], 10
    cache = Path(args.cache) / f"steps{args.steps}-views{args.views}-decay{args.decay}"
    runs = [(method, "paper", seed, method) for seed in args.seeds for method in METHODS]
    runs += [("ntlb", "released", seed, "ntlb-released") for seed in args.released_seeds]
    jobs = [(method, dice, layout, seed, args.steps, args.views, args.decay,
             str(cache / folder / f"layout{layout}-seed{seed}"))
            for layout in range(args.layouts) for method, dice, seed, folder in runs]
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.jobs) as pool:
        for _ in tqdm(pool.imap_unordered(_run, jobs), total=len(jobs), desc="layout runs", unit="run"):
            pass
    results = [json.loads((Path(job[-1]) / "metrics.json").read_text()) for job in jobs]
    table = summarize_runs(results)
    groups = by_folder(jobs, results)
    details = {**spread_and_pairs(groups), "detector": detector_diagnostics(groups)}
    coco = coco_check(COCO)
    write_json_atomic(args.out, {"settings": vars(args), "table": table, **details, "coco100": coco})
    examples_figure(cache, list(range(min(4, args.layouts))), args.seeds[0], Path(args.figure))
    print(f"\n### {args.layouts} world layouts x {len(args.seeds)} seeds, {args.steps} steps, {args.views} views, "
          f"decay {args.decay}\n")
    print("| method | runs | " + " | ".join(TABLE_COLUMNS) + " | cosine |\n|---|" + "---:|" * (len(TABLE_COLUMNS) + 2))
    for method, row in table.items():
        print(f"| {method} | {row['runs']} | " + " | ".join(f"{100 * row[k]:.1f}" for k in TABLE_COLUMNS)
              + f" | {row['cosine']:.3f} |")
    print(json.dumps({**details, "coco100": coco}, indent=1))


if __name__ == "__main__":
    main()
