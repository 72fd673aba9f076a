"""Why world-render layouts get the colour right and the shape wrong: does the layout loss prefer the right shape?

    python benchmarks/layout_shape_diagnosis.py CACHE/ntlb [--draws 8] [--views 8] [--out FILE.json]

For each finished ntlb run (a folder with metrics.json and checkpoint.pt, as `benchmarks/layout_results.py`
writes them), each box where the world detector finds an object of the asked colour but another shape: the
final scene is re-rendered with each of the world's shapes in that object's slot (same place, size, angle and
colour) and the run's per-picture loss (`step_loss`: the paper's -sum_j lambda_j Dice_j - sum_j CLIP(image, t_j),
the same augmentations for every shape) is evaluated on `draws` x `views` augmented views. Reported per box: the
loss of the drawn (wrong) shape and of the asked shape, the rank of the asked shape among the six, and the same for
the box's own terms (its Dice and its full-image cosine), the share of single views on which the asked shape's loss
is the lower (what a search on a few views sees), plus the cosine of the box's text with the picture
blacked out outside the box (the masked baseline's score; not a term of the paper's loss). If the loss prefers
the asked shape, the optimiser is what fails; if not, the loss does not see shape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ntlb.io import write_json_atomic
from ntlb.metrics.boxes import box_iou
from ntlb.tasks.layouts.layout import random_world_layout


def _run_seed(folder: Path) -> tuple[int, int]:
    layout, seed = folder.name.removeprefix("layout").split("-seed")
    return int(layout), int(seed)


def _rank(values: dict[str, float], shape: str) -> int:
    """1 + how many shapes score higher than `shape` (higher is better)."""
    return 1 + sum(value > values[shape] for value in values.values())


def shape_terms(adapter, generator, latent: torch.Tensor, slot: int, layout, config, draws: int,
                views: int) -> dict[str, dict]:
    """Per shape drawn in `slot`: the run's loss (mean over the views) and, per box, its Dice and cosine."""
    from ntlb.explain.normalize import upsample
    from ntlb.explain.relevance import clip_scores
    from ntlb.generators.world_render import N_COLOURS, SHAPES, SLOT
    from ntlb.losses.layout import box_weights, dice, soft_relevance_mask
    from ntlb.models.features import text_features
    from ntlb.models.inputs import TextFeatures
    from ntlb.tasks.layouts.generation import augmenter, layout_explainer

    explainer = layout_explainer(config)
    features = text_features(adapter, layout.texts).to(adapter.dtype)
    masks = layout.masks().to(adapter.device)
    weights = box_weights(layout.area_ratios(), config.weight_scale)
    augment = augmenter(masks.shape[-2:])
    result = {}
    for index, shape in enumerate(SHAPES):
        edited = latent.clone()
        slots = edited[0, : generator.slots * SLOT].view(generator.slots, SLOT)  # a view: edits the latent
        slots[slot, N_COLOURS:N_COLOURS + len(SHAPES)] = 0.0
        slots[slot, N_COLOURS + index] = 5.0
        with torch.no_grad():
            image = generator.image_of(edited)
            masked_scores = clip_scores(adapter.encode_image(adapter.normalize(image * masks[:, None])).features,
                                        features, adapter.logit_scale, "cosine").diagonal()
        losses, dices, cosines = [], [], []
        for draw in range(draws):
            torch.manual_seed(10_000 + draw)  # the same augmentations for every shape
            batch, batch_masks = augment(image.expand(views, -1, -1, -1), masks[None].expand(views, -1, -1, -1))
            explanation = explainer(adapter, adapter.normalize(batch), TextFeatures(features))
            maps = upsample(explanation.image, tuple(batch_masks.shape[-2:]))
            d = dice(soft_relevance_mask(maps, config.threshold, config.temperature), batch_masks, config.dice)
            s = explanation.logits
            losses.append((-(weights.to(d) * d).sum(1) - s.sum(1)).detach())
            dices.append(d.detach())
            cosines.append(s.detach())
        result[shape] = {"loss": float(torch.cat(losses).mean()), "view_losses": torch.cat(losses).tolist(),
                         "dice": torch.cat(dices).mean(0).tolist(),
                         "cosine": torch.cat(cosines).mean(0).tolist(), "masked_cosine": masked_scores.tolist(),
                         "image": image}
    return result


def diagnose(folder: Path, adapter, draws: int, views: int, iou: float = 0.5) -> list[dict]:
    """The colour-right, shape-wrong boxes of one run, each with every shape's loss terms."""
    from ntlb.generators.world_render import PRESENCE, WorldRender
    from ntlb.tasks.layouts.generation import LayoutConfig
    from ntlb.world.detector import WorldDetector

    metrics = json.loads((folder / "metrics.json").read_text())
    state = torch.load(folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    layout_seed, seed = _run_seed(folder)
    layout = random_world_layout(layout_seed)
    config = LayoutConfig(method="ntlb", dice=metrics["dice"], seed=seed, steps=metrics["steps"])
    generator = WorldRender(seed=seed)
    generator.load_state_dict(state["generator"], strict=False)
    latent = generator.latent.detach()
    scene = generator.scenes(latent)[0]
    slots_present = [i for i in range(generator.slots) if float(generator.unpack(latent)[0][0, i, PRESENCE]) > 0]
    rows = []
    for j, obj in enumerate(metrics["objects"]):
        colour, shape = obj["label"].split()
        hits = [d for d in metrics["detections"] if box_iou(d["box"], obj["box"]) >= iou]
        wrong = [d for d in hits if d["label"].split()[0] == colour and d["label"].split()[1] != shape]
        if not wrong or any(d["label"] == obj["label"] for d in hits):
            continue
        drawn = wrong[0]["label"].split()[1]
        x0, y0, x1, y1 = wrong[0]["box"]
        candidates = [(i, o) for i, o in zip(slots_present, scene) if o.colour == colour and o.shape == drawn]
        if not candidates:
            continue
        slot, _ = min(candidates, key=lambda c: (c[1].cx * 64 - (x0 + x1) / 2) ** 2
                      + (c[1].cy * 64 - (y0 + y1) / 2) ** 2)
        terms = shape_terms(adapter, generator, latent, slot, layout, config, draws, views)
        asked = WorldDetector()(terms[shape].pop("image")[0])
        for value in terms.values():
            value.pop("image", None)
        rows.append({"run": folder.name, "box": j, "asked": obj["label"], "drawn": f"{colour} {drawn}",
                     "iou": box_iou(wrong[0]["box"], obj["box"]),
                     "asked_shape_rendered_and_found": any(d.label == obj["label"] and box_iou(d.box, obj["box"])
                                                           >= iou for d in asked),
                     "loss": {s: t["loss"] for s, t in terms.items()},
                     "asked_wins_views": sum(a < b for a, b in zip(terms[shape]["view_losses"],
                                                                  terms[drawn]["view_losses"]))
                     / len(terms[shape]["view_losses"]),
                     "rank_loss": _rank({s: -t["loss"] for s, t in terms.items()}, shape),
                     **{f"rank_{key}": _rank({s: t[key][j] for s, t in terms.items()}, shape)
                        for key in ("dice", "cosine", "masked_cosine")},
                     "terms": terms})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the ntlb folder of a layout_results cache (its layoutL-seedS runs)")
    parser.add_argument("--draws", type=int, default=4, help="augmentation draws (each of --views views)")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--iou", type=float, default=0.5, help="a detection this close to a box is in it")
    parser.add_argument("--out", default=None, help="JSON of the per-box figures")
    args = parser.parse_args()
    import ntlb

    torch.set_num_threads(1)
    adapter = ntlb.load_model()
    rows = []
    for folder in sorted(Path(args.folder).glob("layout*-seed*"), key=lambda f: _run_seed(f)):
        if (folder / "metrics.json").is_file() and (folder / "checkpoint.pt").is_file():
            rows += diagnose(folder, adapter, args.draws, args.views, args.iou)
    for row in rows:
        loss = row["loss"]
        print(f"{row['run']} box {row['box']}: asked {row['asked']}, drawn {row['drawn']}: loss drawn "
              f"{loss[row['drawn'].split()[1]]:.4f} asked {loss[row['asked'].split()[1]]:.4f}; rank of the asked "
              f"shape (of 6) by loss {row['rank_loss']}, box Dice {row['rank_dice']}, cosine {row['rank_cosine']}, "
              f"masked cosine {row['rank_masked_cosine']}; the asked shape's loss is lower on "
              f"{100 * row['asked_wins_views']:.0f}% of the views")
    summary = summarize(rows)
    if rows:
        print(f"{summary['boxes']} boxes: the loss prefers the asked shape to the drawn one in "
              f"{summary['loss_prefers_asked']}; " + ", ".join(f"mean rank by {key} {value:.2f}"
                                                             for key, value in summary["mean_rank"].items()))
    if args.out:
        write_json_atomic(args.out, {"settings": vars(args), "summary": summary, "boxes": rows})


def summarize(rows: list[dict]) -> dict:
    """Over the boxes: how many, how many in the box at IoU >= 0.5, in how many the loss prefers the asked shape to
    the drawn one, the mean rank of the asked shape by each term and the mean share of views preferring it."""
    n = max(len(rows), 1)
    return {"boxes": len(rows), "iou_at_least_half": sum(r["iou"] >= 0.5 for r in rows),
            "loss_prefers_asked": sum(r["loss"][r["asked"].split()[1]] < r["loss"][r["drawn"].split()[1]]
                                      for r in rows),
            "mean_rank": {key: sum(r[f"rank_{key}"] for r in rows) / n
                          for key in ("loss", "dice", "cosine", "masked_cosine")},
            "asked_wins_views": sum(r["asked_wins_views"] for r in rows) / n}


if __name__ == "__main__":
    main()
