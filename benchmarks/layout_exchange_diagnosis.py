"""Does the layout loss want the binding errors fixed? world-render's refinement exchanges on finished runs.

    python benchmarks/layout_exchange_diagnosis.py CACHE/ntlb [--draws 8] [--out FILE.json]

For each finished run of a `benchmarks/layout_results.py` cache folder with the refinement on (metrics.json and
the step-100 checkpoint.pt): the refined scene is rebuilt from the checkpoint and the recorded changes (checked
against the recorded detections), then every exchange of two drawn objects' colours or shapes (what the
refinement's exchange move tries) is rendered and read by the world detector. Where an exchange puts more of the
layout's objects in their boxes (label and IoU >= 0.5), its paired loss gain is measured on the run's own loss:
on the refinement's own 8 pictures (its decision: taken where the mean gain is 2 standard errors above 0) and on
`draws` x 8 pictures. If the loss prefers the exchange, the search is what fails; if not, the loss does not see
the binding. (`benchmarks/refinement_exchanges.py` logs every exchange the refinement evaluates in editing and
generation runs, on its own draws.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ntlb.generators.world_render import EVIDENCE
from ntlb.io import write_json_atomic
from ntlb.metrics.boxes import box_iou
from ntlb.tasks.layouts.layout import random_world_layout


def _run_seed(folder: Path) -> tuple[int, int]:
    layout, seed = folder.name.removeprefix("layout").split("-seed")
    return int(layout), int(seed)


def refined_latent(generator, record: dict) -> torch.Tensor:
    """The checkpoint's latent with the refinement's recorded changes replayed in order (what it ended with)."""
    from ntlb.generators.world_render import COLOURS, SHAPES, _choose, _exchange

    latent = generator.latent.detach().clone()
    for change in record["latents"][0]["changes"]:
        if isinstance(change["slot"], list):
            latent = _exchange(latent, generator.slots, *change["slot"], change["attribute"])
        else:
            names = {"presence": ["off", "on"], "colour": list(COLOURS), "shape": list(SHAPES)}[change["attribute"]]
            latent = _choose(latent, generator.slots, change["slot"], change["attribute"],
                             names.index(change["to"]))
    return latent


def diagnose(folder: Path, adapter, draws: int) -> dict:
    """One run: its exchanges that put more objects in their boxes, each with its paired loss gains."""
    from ntlb.generators.world_render import _SPANS, PRESENCE, SLOT, WorldRender, _exchange, _option_name
    from ntlb.losses.layout import box_weights
    from ntlb.models.features import text_features
    from ntlb.tasks.layouts.generation import LayoutConfig, augmenter, layout_explainer, step_loss
    from ntlb.world.detector import WorldDetector

    metrics = json.loads((folder / "metrics.json").read_text())
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    layout_seed, seed = _run_seed(folder)
    layout = random_world_layout(layout_seed)
    config = LayoutConfig(method=metrics["method"], dice=metrics["dice"], seed=seed, steps=metrics["steps"])
    generator = WorldRender(seed=seed)
    generator.load_state_dict(state["generator"], strict=False)
    latent = refined_latent(generator, metrics["refinement"])
    detector = WorldDetector()

    def read(candidate: torch.Tensor) -> tuple[int, list[dict]]:
        with torch.no_grad():
            found = [{"box": list(d.box), "label": d.label, "score": d.score}
                     for d in detector(generator.image_of(candidate)[0])]
        right = sum(any(d["label"] == label and box_iou(d["box"], box) >= 0.5 for d in found)
                    for box, label in zip(layout.boxes, layout.labels()))
        return right, found

    features = text_features(adapter, layout.texts).to(adapter.dtype)
    masks = layout.masks().to(adapter.device)
    weights = box_weights(layout.area_ratios(), config.weight_scale)
    explainer, augment = layout_explainer(config), augmenter(masks.shape[-2:])
    copies = metrics["refinement"]["copies"]
    seeds = [metrics["refinement"]["seed"]] + [20_000 + k for k in range(draws - 1)]

    def losses(candidate: torch.Tensor) -> torch.Tensor:  # as the refinement scores: same draws for every option
        with torch.no_grad():
            images = generator.image_of(candidate).repeat_interleave(copies, dim=0)
        values = []
        for draw in seeds:
            torch.manual_seed(draw)
            values.append(step_loss(adapter, explainer, images, masks, features, weights, config, augment)[0]
                          .detach().float())
        return torch.cat(values)

    right, found = read(latent)
    slots = latent[:, : generator.slots * SLOT].reshape(generator.slots, SLOT)
    drawn = [s for s in range(generator.slots) if float(slots[s, PRESENCE]) > 0]
    rows, base = [], None
    for i, first in enumerate(drawn):
        for second in drawn[i + 1:]:
            for attribute in ("colour", "shape"):
                span = _SPANS[attribute]
                ours, theirs = int(slots[first, span].argmax()), int(slots[second, span].argmax())
                if ours == theirs:
                    continue
                exchanged = _exchange(latent, generator.slots, first, second, attribute)
                after, _ = read(exchanged)
                if after <= right:
                    continue
                base = losses(latent) if base is None else base
                gain = base - losses(exchanged)  # > 0: the exchange scores lower (better)
                own = gain[:copies]
                rows.append({"slots": [first, second], "attribute": attribute,
                             "from": f"{_option_name(attribute, ours)}/{_option_name(attribute, theirs)}",
                             "right_before": right, "right_after": after,
                             "own_gain": float(own.mean()), "own_se": float(own.std() / copies**0.5),
                             "taken": bool(own.mean() > EVIDENCE * own.std() / copies**0.5),
                             "gain": float(gain.mean()), "se": float(gain.std() / len(gain) ** 0.5),
                             "pictures": len(gain),
                             "positive_share": float((gain > 0).float().mean())})
    return {"run": folder.name, "replayed": found == metrics["detections"], "exchanges": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a method folder of a layout_results cache with the refinement on")
    parser.add_argument("--draws", type=int, default=8,
                        help="draws of the refinement's 8 pictures (the first: its own)")
    parser.add_argument("--out", default=None, help="JSON of the per-run figures")
    args = parser.parse_args()
    import ntlb

    torch.set_num_threads(1)
    adapter = ntlb.load_model()
    runs = [diagnose(folder, adapter, args.draws)
            for folder in sorted(Path(args.folder).glob("layout*-seed*"), key=_run_seed)
            if (folder / "metrics.json").is_file() and (folder / "checkpoint.pt").is_file()]
    rows = [(run["run"], row) for run in runs for row in run["exchanges"]]
    for name, row in rows:
        print(f"{name} slots {row['slots']} {row['attribute']} {row['from']}: right objects {row['right_before']} -> "
              f"{row['right_after']}; gain on the refinement's draws {row['own_gain']:+.4f} ({EVIDENCE:g} SE "
              f"{EVIDENCE * row['own_se']:.4f}, taken {row['taken']}), on {row['pictures']} pictures "
              f"{row['gain']:+.4f} +- {row['se']:.4f} (SE), lower loss on {100 * row['positive_share']:.0f}%")
    summary = {"runs": len(runs), "replayed": sum(run["replayed"] for run in runs),
               "runs_with_a_helpful_exchange": sum(bool(run["exchanges"]) for run in runs),
               "helpful_exchanges": len(rows), "taken": sum(row["taken"] for _, row in rows),
               "loss_prefers": sum(row["gain"] > EVIDENCE * row["se"] for _, row in rows),
               "loss_opposes": sum(row["gain"] < -EVIDENCE * row["se"] for _, row in rows)}
    print(json.dumps(summary))
    if args.out:
        write_json_atomic(args.out, {"settings": vars(args), "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
