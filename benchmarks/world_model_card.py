"""Figures of docs/world-model.md: what the bundled ntlb-world CLIP can do, measured on held-out scenes.

    python benchmarks/world_model_card.py [--model ntlb-world] [--pretrained PATH] [--scale 1.0]

Prints markdown tables and writes docs/world-model.json and docs/world-model-examples.png. Every scene comes
from a seed space the model never trained on.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

import ntlb
from ntlb.io import save_figure_atomic, write_json_atomic
from ntlb.metrics import mask_energy, pointing_game, recall_at_1
from ntlb.models import image_features, text_features
from ntlb.tasks import classify
from ntlb.world import VARIANTS, class_names, describe, labelled_sample, random_caption, random_scene, render
from ntlb.world.captions import CONTENT_ROLES
from ntlb.world.datasets import scene_seed

DOCS = Path(__file__).resolve().parents[1] / "docs"


def zero_shot(adapter, per_class: int) -> dict:
    results = {}
    for task in ("colour-shape", "shape"):
        names = class_names(task)
        classifier = text_features(adapter, names, ("a {}",))
        for variant in VARIANTS:
            samples = [labelled_sample(i, task, "test", variant) for i in range(per_class * len(names))]
            predicted = classify(image_features(adapter, [s.image for s in samples]), classifier)
            labels = torch.tensor([s.label for s in samples])
            results[f"{task}/{variant}"] = float((predicted == labels).float().mean())
    return results


def retrieval(adapter, count: int) -> dict:
    scenes = [random_scene(scene_seed("multi-test", i), int(2 + i % 3)) for i in range(count)]
    captions = [random_caption(s, np.random.default_rng(s.seed + 1)).text for s in scenes]
    from PIL import Image

    images = image_features(adapter, [Image.fromarray(render(s, 64)[0]) for s in scenes])
    texts = text_features(adapter, captions)
    i2t, t2i = recall_at_1(images @ texts.T, captions)
    return {"scenes": count, "image_to_text_R@1": i2t, "text_to_image_R@1": t2i, "chance": 1 / count}


def explained_scenes(adapter, n_objects: int, count: int, offset: int):
    """Chefer maps and word relevance for every object of `count` scenes, named by a plain caption."""
    from PIL import Image

    rows = []
    for i in range(count):
        scene = random_scene(scene_seed("multi-test", 10**6 + offset + i), n_objects)
        image, masks = render(scene, 64)
        picture = Image.fromarray(image)
        captions = [describe(scene, j, "plain") for j in range(n_objects)]
        with torch.no_grad():
            explanation = ntlb.explain(adapter, [picture] * n_objects, [c.text for c in captions], pairs="diagonal")
        for j in range(n_objects):
            rows.append({"scene": scene, "picture": picture, "mask": torch.from_numpy(masks[j]),
                         "map": explanation.image[j, 0], "caption": captions[j], "words": explanation.words(j)})
    return rows


def localisation(rows: list[dict]) -> dict:
    maps = torch.stack([r["map"] for r in rows])
    masks = torch.stack([r["mask"] for r in rows])
    return {"pairs": len(rows), "pointing_game": float(pointing_game(maps, masks).float().mean()),
            "energy_in_mask": float(mask_energy(maps, masks).mean()),
            "mask_area_share": float(masks.float().mean())}


def word_relevance(adapter, count: int) -> dict:
    """Share of relevance on content vs filler words, and how often a content word is neglected (< 10%)."""
    shares = {"content": [], "filler": [], "relation": []}
    neglected = {role: [] for role in CONTENT_ROLES}
    neglected_two_object_colour = []
    from PIL import Image

    for i in range(count):
        scene = random_scene(scene_seed("multi-test", 2 * 10**6 + i), int(1 + i % 3))
        caption = random_caption(scene, np.random.default_rng(scene.seed + 1))
        picture = Image.fromarray(render(scene, 64)[0])
        with torch.no_grad():
            words = ntlb.explain(adapter, picture, caption.text).words(0, 0)
        for (_, value), word in zip(words, caption.words):
            group = "content" if word.role in CONTENT_ROLES else word.role
            shares[group].append(value)
            if word.role in CONTENT_ROLES:
                neglected[word.role].append(value < 0.10)
                if word.role == "colour" and len(caption.objects()) == 2:
                    neglected_two_object_colour.append(value < 0.10)
    mean = {k: float(np.mean(v)) if v else None for k, v in shares.items()}
    return {
        "captions": count,
        "mean_relevance_per_word": mean,
        "neglect_rate": {k: float(np.mean(v)) for k, v in neglected.items() if v},
        "neglect_rate_colour_in_two_object_captions": float(np.mean(neglected_two_object_colour)),
    }


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntlb.viz import overlay

    picked = rows[:12]
    fig, axes = plt.subplots(3, 8, figsize=(16, 7.4))
    for index, row in enumerate(picked):
        left, right = axes.flat[2 * index], axes.flat[2 * index + 1]
        big = row["picture"].resize((192, 192), resample=0)
        left.imshow(big)
        right.imshow(overlay(big, row["map"], None, alpha=0.55))
        left.axis("off")
        right.axis("off")
        top = max(v for _, v in row["words"]) or 1.0
        anchor = None
        for word, value in row["words"]:
            style = {"fontsize": 10, "bbox": {"facecolor": (0.86, 0.12, 0.12, min(1.0, value / top)),
                                              "edgecolor": "none", "pad": 1.5}}
            if anchor is None:
                anchor = left.text(0.0, -0.06, word, transform=left.transAxes, va="top", **style)
            else:
                anchor = left.annotate(" " + word, xycoords=anchor, xy=(1, 0), va="bottom", **style)
    fig.suptitle("ntlb-world: chefer2021 image maps for the named object, and word relevance", fontsize=11)
    fig.tight_layout(h_pad=2.5)
    save_figure_atomic(fig, path, dpi=100, tight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every sample count (0.1 for a smoke run)")
    parser.add_argument("--out", default=str(DOCS), help="folder for world-model.json and the example figure")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ntlb.load_model(args.model, args.pretrained)
    n = lambda count: max(2, int(count * args.scale))  # noqa: E731
    one = explained_scenes(adapter, 1, n(200), 0)
    two = explained_scenes(adapter, 2, n(150), 10**5)
    card = {
        "model": adapter.name, "random_weights": adapter.random_weights,
        "zero_shot_accuracy": zero_shot(adapter, n(20)),
        "retrieval": retrieval(adapter, n(500)),
        "localisation_one_object": localisation(one),
        "localisation_two_objects": localisation(two),
        "word_relevance": word_relevance(adapter, n(400)),
    }
    out = Path(args.out)
    write_json_atomic(out / "world-model.json", card)
    figure(one[:4] + two[:8], out / "world-model-examples.png")
    z = card["zero_shot_accuracy"]
    print("| task | " + " | ".join(VARIANTS) + " |\n|---|" + "---|" * len(VARIANTS))
    for task in ("colour-shape", "shape"):
        print(f"| {task} | " + " | ".join(f"{100 * z[f'{task}/{v}']:.1f}" for v in VARIANTS) + " |")
    print(json.dumps({k: v for k, v in card.items() if k != "zero_shot_accuracy"}, indent=1))


if __name__ == "__main__":
    main()
