"""Layout-conditioned generation (paper Algorithm 1): objects placed in boxes through a Dice loss on CLIP's image
relevance, with the masked-similarity baselines in the same loop. Seeds, snapshots, checkpoints and resume.

Each step draws augmented views of the image and warps the box masks with the same transform (kornia), encodes
the views once, and takes every object's relevance map from one explainer call (chefer2021 by default: one
batched gradient call); text features are computed once per run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ...config import settings as settings_of
from ...config.layout import METHODS, LayoutConfig  # noqa: F401  (METHODS: the losses, read here by callers)
from ...errors import NtlbError
from ...explain import create
from ...explain.base import Explainer
from ...explain.registry import require
from ...explain.relevance import clip_scores
from ...io import save_image_atomic, write_record
from ...losses.layout import box_weights, layout_loss
from ...models.adapter import ClipAdapter
from ...models.features import text_features
from ...models.inputs import TextFeatures
from ..guidance.optimisation import optimise, to_picture
from .layout import Layout

TABLE_COLUMNS = ("precision", "recall", "f1", "AP", "AR", "AP50")  # paper Table 3
KIND = "layout"


def layout_explainer(config: LayoutConfig) -> Explainer:
    """The explainer whose maps the Dice loss reads: last image layer, cosine score (paper section 3.4)."""
    require(config.explainer, "image maps", "the layout loss")
    return create(config.explainer, start_layer_image=-1, logit_mode="cosine", create_graph=config.create_graph)


def augmenter(size: tuple[int, int], masks: bool = True) -> nn.Module:
    """Affine, perspective, colour jitter and noise; with `masks`, the geometry is shared by the image and its box
    masks (called as augment(images, masks))."""
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomAffine(degrees=8, translate=0.06, scale=(0.9, 1.05), p=1.0),
        K.RandomPerspective(0.15, p=0.5),
        K.ColorJitter(0.1, 0.1, 0.1, 0.02, p=0.8),
        K.RandomGaussianNoise(std=0.02, p=0.5),
        data_keys=["input", "mask"] if masks else ["input"],
    )


def step_loss(adapter: ClipAdapter, explainer: Explainer, image: Tensor, masks: Tensor, features: Tensor,
              weights: Tensor, config: LayoutConfig, augment: nn.Module) -> tuple[Tensor, dict]:
    """The loss of one step for the configured method, on `config.views` augmented views of one image; of a
    sampling generator's pictures (N > 1), one view of each and one loss per picture (N,)."""
    sampled = image.shape[0] > 1
    count = image.shape[0] if sampled else config.views
    views, view_masks = augment(image.expand(count, -1, -1, -1), masks[None].expand(count, -1, -1, -1))
    if config.method == "ntlb":
        explanation = explainer(adapter, adapter.normalize(views), TextFeatures(features))
        return layout_loss(explanation, view_masks, weights, config.dice, config.threshold, config.temperature,
                           per_view=sampled)
    k = masks.shape[0]
    masked = (views[:, None] * view_masks[:, :, None]).flatten(0, 1)  # (views * k, 3, H, W): outside blacked out
    batch = torch.cat([masked, views]) if config.method == "masked+full" else masked  # one encoding per step
    scores = clip_scores(adapter.encode_image(adapter.normalize(batch)).features, features, adapter.logit_scale,
                         "cosine")
    pair = scores[: count * k].reshape(count, k, k)
    masked_scores = pair.diagonal(dim1=1, dim2=2)  # (views, k): CLIP(image * m_j, t_j)
    loss = -masked_scores.sum(dim=1)
    parts = {"masked_similarity": float(masked_scores.mean().detach())}
    if config.method == "masked+full":
        full = scores[count * k :]
        loss = loss - full.sum(dim=1)
        parts["similarity"] = float(full.mean().detach())
    return (loss if sampled else loss.mean()), parts


def generate(adapter: ClipAdapter, layout: Layout, generator: nn.Module, out: str | Path,
             config: LayoutConfig, progress: bool = True) -> Tensor:
    """Optimise the generator's parameters so each text appears in its box; resumes from out/checkpoint.pt.

    Returns the final image (1, 3, H, W) in [0, 1]; writes snapshots and image.png to `out`.
    """
    if not adapter.has_patch_attention and config.method == "ntlb":
        raise NtlbError("the ntlb layout loss needs a ViT image tower (patch relevance): use a ViT CLIP")
    out = Path(out)
    explainer = layout_explainer(config)
    features = text_features(adapter, layout.texts).to(adapter.dtype)
    masks = layout.masks().to(adapter.device)
    weights = box_weights(layout.area_ratios(), config.weight_scale)
    augment = augmenter(masks.shape[-2:])

    def loss(image: Tensor, step: int) -> tuple[Tensor, dict]:
        return step_loss(adapter, explainer, image, masks, features, weights, config, augment)

    image, _ = optimise(generator, loss, out, KIND, settings_of(config), config.steps, config.lr, config.seed,
                        config.snapshot_every, desc=f"layout ({config.method})", progress=progress)
    save_image_atomic(out / "image.png", to_picture(image))
    return image


def evaluate_image(adapter: ClipAdapter, layout: Layout, image: Tensor, detector=None) -> dict:
    """Paper Table 3's map metrics for a generated image: per object, the chefer2021 last-layer relevance map
    (cosine score) binarised with Otsu's threshold, precision / recall / F1 against its box, and the cosine score;
    with a detector, its detections too (AP and AR need many images: `ntlb.metrics.detection.detection_scores`).
    The evaluation explainer is fixed, whichever explainer drove the generation."""
    from ...explain.normalize import upsample
    from ...metrics.boxes import box_iou, otsu_box_scores

    features = text_features(adapter, layout.texts).to(adapter.dtype)
    explainer = create("chefer2021", start_layer_image=-1, logit_mode="cosine")  # the paper's evaluation maps
    with torch.no_grad():
        explanation = explainer(adapter, adapter.normalize(image.to(adapter.device, adapter.dtype)),
                                TextFeatures(features))
    maps = upsample(explanation.image[0], tuple(image.shape[-2:]))
    masks = layout.masks(tuple(image.shape[-2:]))
    objects = []
    for j, (text, label) in enumerate(zip(layout.texts, layout.labels())):
        precision, recall, f1 = otsu_box_scores(maps[j], masks[j].bool())
        objects.append({"text": text, "label": label, "box": list(layout.boxes[j]), "precision": precision,
                        "recall": recall, "f1": f1, "cosine": float(explanation.logits[0, j])})
    summary = {key: sum(o[key] for o in objects) / len(objects) for key in ("precision", "recall", "f1", "cosine")}
    result = {"objects": objects, "mean": summary, "maps": maps}
    if detector is not None:
        result["detections"] = [{"box": list(d.box), "label": d.label, "score": d.score} for d in detector(image[0])]
        for row in objects:  # each object of the layout: found in its box (IoU >= 0.5) or missing
            row["found"] = any(d["label"] == row["label"] and box_iou(d["box"], row["box"]) >= 0.5
                               for d in result["detections"])
    return result


def run_layout(adapter: ClipAdapter, layout: Layout, out: str | Path, config: LayoutConfig,
               generator: str = "pixels", generator_options: dict | None = None, detector: str | None = None,
               detector_options: dict | None = None, progress: bool = True, init_image=None) -> dict:
    """One layout generation end to end (what `ntlb layout generate` runs): generate (resuming), evaluate, and
    write image.png, maps.png and metrics.json to `out`. Returns the metrics. `init_image`: a picture whose
    encoding the generator's latent starts from."""
    from ...detectors import create_detector
    from ...generators import create_generator
    from ...viz.layout import layout_maps_figure

    generator_options = generator_options or {}
    module = create_generator(generator, (layout.height, layout.width), seed=config.seed, init_image=init_image,
                              **generator_options).to(adapter.device)
    if len(layout.boxes) > getattr(module, "slots", len(layout.boxes)):
        raise NtlbError(f"the layout has {len(layout.boxes)} boxes but {generator} draws at most {module.slots} "
                        "objects: give fewer boxes, or slots= as many as boxes")
    for text in layout.texts if hasattr(module, "check_text") else ():
        module.check_text(text)
    found = create_detector(detector, **(detector_options or {})) if detector else None
    out = Path(out)
    image = generate(adapter, layout, module, out, config, progress)
    metrics = evaluate_image(adapter, layout, image, found)
    layout_maps_figure(image, metrics.pop("maps"), layout, out / "maps.png")
    options = {k: v if isinstance(v, (int, float, str)) else str(v) for k, v in generator_options.items()}
    record = {"method": config.method, "explainer": str(config.explainer), "generator": generator, **options,
              "init_image": init_image is not None,
              "dice": config.dice, "seed": config.seed, "steps": config.steps, "detector": detector or "none",
              "refinement": getattr(module, "refined", None), **metrics}
    settings = {**settings_of(config), "generator": generator, "generator_options": options, "detector": detector}
    return write_record(out / "metrics.json", record, adapter, settings)


def summarize_runs(results: list[dict]) -> dict[str, dict]:
    """Paper Table 3 per method (ntlb with the released Dice in a row of its own) over runs (metrics.json dicts):
    mean Otsu precision / recall / F1 and cosine over runs, and COCO AP / AR / AP50 of all runs' detections
    against their layouts' boxes (where detected)."""
    from ...metrics.detection import detection_scores

    by_method: dict[str, list[dict]] = {}
    for result in results:
        released = result["method"] == "ntlb" and result.get("dice") == "released"
        by_method.setdefault(result["method"] + (" (released Dice)" if released else ""), []).append(result)
    table = {}
    for method, runs in by_method.items():
        row: dict = {"runs": len(runs)}
        for key in ("precision", "recall", "f1", "cosine"):
            row[key] = sum(r["mean"][key] for r in runs) / len(runs)
        detected = [r for r in runs if "detections" in r]
        row["detected_runs"] = len(detected)
        if detected:
            row.update(detection_scores([[(o["box"], o["label"]) for o in r["objects"]] for r in detected],
                                        [[(d["box"], d["label"], d["score"]) for d in r["detections"]]
                                         for r in detected]))
        table[method] = row
    return table


def read_runs(folders: list[str | Path]) -> list[dict]:
    """The metrics.json of each run folder of `run_layout`."""
    import json

    results = []
    for folder in folders:
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise NtlbError(f"{path} not found: give folders written by 'ntlb layout generate'")
        results.append(json.loads(path.read_text()))
    return results


def table_markdown(table: dict[str, dict]) -> str:
    """Paper Table 3 as markdown (percentages; AP / AR / AP50 over the runs a detector ran on, "—" where none)."""
    lines = ["| method | runs | " + " | ".join(TABLE_COLUMNS) + " | cosine | runs with a detector |",
             "|---|" + "---:|" * (len(TABLE_COLUMNS) + 3)]
    for method, row in table.items():
        cells = [f"{100 * row[k]:.1f}" if k in row else "—" for k in TABLE_COLUMNS]
        lines.append(f"| {method} | {row['runs']} | " + " | ".join(cells)
                     + f" | {row['cosine']:.3f} | {row.get('detected_runs', 0)} |")
    return "\n".join(lines)
