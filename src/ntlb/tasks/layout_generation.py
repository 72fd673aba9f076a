"""Layout-conditioned generation (paper Algorithm 1): objects placed in boxes through a Dice loss on CLIP's image
relevance, with the masked-similarity baselines in the same loop. Seeds, snapshots, checkpoints and resume.

Each step draws augmented views of the image and warps the box masks with the same transform (kornia), encodes
the views once, and takes every object's relevance map from one batched gradient call; text features are
computed once per run.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import NtlbError
from ..explain.relevance import clip_scores, one_hot_targets, propagated_rows
from ..io import save_image_atomic, write_bytes_atomic
from ..losses.layout import box_weights, dice, soft_relevance_mask
from ..models.adapter import ClipAdapter
from .layouts import Layout

METHODS = ("ntlb", "masked", "masked+full")
TABLE_COLUMNS = ("precision", "recall", "f1", "AP", "AR", "AP50")  # paper Table 3


@dataclass
class LayoutConfig:
    """Algorithm 1's settings (paper defaults for the loss; steps and views sized for a CPU)."""

    method: str = "ntlb"
    steps: int = 300
    lr: float = 0.1
    views: int = 4
    seed: int = 0
    dice: str = "paper"
    threshold: float = 0.1
    temperature: float = 20.0
    weight_scale: float = 0.15
    create_graph: bool = True
    snapshot_every: int = 50


def augmenter(size: tuple[int, int]) -> nn.Module:
    """Affine, perspective, colour jitter and noise; geometry shared by the image and its masks."""
    import kornia.augmentation as K

    return K.AugmentationSequential(
        K.RandomAffine(degrees=8, translate=0.06, scale=(0.9, 1.05), p=1.0),
        K.RandomPerspective(0.15, p=0.5),
        K.ColorJitter(0.1, 0.1, 0.1, 0.02, p=0.8),
        K.RandomGaussianNoise(std=0.02, p=0.5),
        data_keys=["input", "mask"],
    )


def _normalise(adapter: ClipAdapter, images: Tensor) -> Tensor:
    c = adapter.preprocess_config
    if tuple(images.shape[-2:]) != c.size:
        images = F.interpolate(images, size=c.size, mode="bilinear", align_corners=False)
    mean = torch.tensor(c.mean, device=images.device, dtype=images.dtype)[:, None, None]
    std = torch.tensor(c.std, device=images.device, dtype=images.dtype)[:, None, None]
    return (images - mean) / std


def relevance_maps(adapter: ClipAdapter, images: Tensor, text_features: Tensor,
                   create_graph: bool) -> tuple[Tensor, Tensor]:
    """(cosine scores (n, k), last-layer relevance maps (n, k, H, W) at the images' size) for n images, k texts."""
    pixels = _normalise(adapter, images)
    encoded = adapter.encode_image(pixels, keep_from=adapter.resolve_layer(-1, "image"))
    scores = clip_scores(encoded.features, text_features, adapter.logit_scale, "cosine")
    k = text_features.shape[0]
    targets = one_hot_targets(k, tuple(scores.shape), 1, scores.device, scores.dtype)
    cls = torch.zeros((), dtype=torch.long, device=scores.device)
    rows = propagated_rows(scores, encoded.attentions, targets, cls, create_graph, True)  # (k, n, N)
    h, w = adapter.grid_size
    maps = rows[..., 1:].reshape(k, -1, h, w).transpose(0, 1)
    maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return scores, maps


def layout_loss(adapter: ClipAdapter, image: Tensor, masks: Tensor, text_features: Tensor, weights: Tensor,
                config: LayoutConfig, augment: nn.Module) -> tuple[Tensor, dict]:
    """The loss of one step for the configured method, on `config.views` augmented views."""
    views, view_masks = augment(image.expand(config.views, -1, -1, -1), masks[None].expand(config.views, -1, -1, -1))
    if config.method == "ntlb":
        scores, maps = relevance_maps(adapter, views, text_features, config.create_graph)
        soft = soft_relevance_mask(maps, config.threshold, config.temperature)
        dices = dice(soft, view_masks, config.dice).mean(dim=0)  # (k,)
        similarity = scores.mean(dim=0)
        loss = -(weights.to(dices) * dices).sum() - similarity.sum()
        return loss, {"dice": float(dices.mean().detach()), "similarity": float(similarity.mean().detach())}
    k = masks.shape[0]
    masked = (views[:, None] * view_masks[:, :, None]).flatten(0, 1)  # (views * k, 3, H, W): outside blacked out
    batch = torch.cat([masked, views]) if config.method == "masked+full" else masked  # one encoding per step
    features = adapter.encode_image(_normalise(adapter, batch)).features
    scores = clip_scores(features, text_features, adapter.logit_scale, "cosine")
    pair = scores[: config.views * k].reshape(config.views, k, k)
    masked_scores = pair.diagonal(dim1=1, dim2=2).mean(dim=0)  # CLIP(image * m_j, t_j)
    loss = -masked_scores.sum()
    parts = {"masked_similarity": float(masked_scores.mean().detach())}
    if config.method == "masked+full":
        full = scores[config.views * k :].mean(dim=0)
        loss = loss - full.sum()
        parts["similarity"] = float(full.mean().detach())
    return loss, parts


@torch.no_grad()
def text_features_of(adapter: ClipAdapter, texts: list[str]) -> Tensor:
    """The texts' features, computed once per run."""
    tokens = adapter.tokenizer(texts).truncated()
    return adapter.encode_text(tokens.ids, tokens.eot).features


def _snapshot(path: Path, image: Tensor) -> None:
    from PIL import Image

    array = (image[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype("uint8")
    save_image_atomic(path, Image.fromarray(array))


def generate(adapter: ClipAdapter, layout: Layout, generator: nn.Module, out: str | Path,
             config: LayoutConfig, progress: bool = True) -> Tensor:
    """Optimise the generator's parameters so each text appears in its box; resumes from out/checkpoint.pt.

    Returns the final image (1, 3, H, W) in [0, 1]; writes snapshots and image.png to `out`.
    """
    if config.method not in METHODS:
        raise NtlbError(f"unknown layout method '{config.method}': use one of {', '.join(METHODS)}")
    if not adapter.has_patch_attention and config.method == "ntlb":
        raise NtlbError("the ntlb layout loss needs a ViT image tower (patch relevance): use a ViT CLIP")
    out = Path(out)
    checkpoint = out / "checkpoint.pt"
    text_features = text_features_of(adapter, layout.texts)
    masks = layout.masks().to(adapter.device)
    weights = box_weights(layout.area_ratios(), config.weight_scale)
    optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr)
    start, history = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=adapter.device, weights_only=False)
        if state["config"] != asdict(config):
            raise NtlbError(f"{checkpoint} was made with other settings: use a new --out or the same options")
        generator.load_state_dict(state["generator"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["step"], state["history"]
    augment = augmenter(masks.shape[-2:])
    with torch.random.fork_rng(devices=[]):
        bar = tqdm(range(start, config.steps), initial=start, total=config.steps, desc=f"layout ({config.method})",
                   unit="step", disable=not progress)
        for step in bar:
            torch.manual_seed(config.seed * 100003 + step)  # the views of step s do not depend on a resume
            loss, parts = layout_loss(adapter, generator(), masks, text_features, weights, config, augment)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append({"loss": float(loss.detach()), **parts})
            bar.set_postfix({k: f"{v:.3f}" for k, v in history[-1].items()})
            done = step + 1
            if done % config.snapshot_every == 0 or done == config.steps:
                with torch.no_grad():
                    _snapshot(out / "snapshots" / f"step_{done:05d}.png", generator())
                buffer = io.BytesIO()
                torch.save({"generator": generator.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                            "history": history, "config": asdict(config)}, buffer)
                write_bytes_atomic(checkpoint, buffer.getvalue())
    with torch.no_grad():
        image = generator()
    _snapshot(out / "image.png", image)
    return image


def evaluate_image(adapter: ClipAdapter, layout: Layout, image: Tensor, detector=None) -> dict:
    """Paper Table 3's map metrics for a generated image: per object, the last-layer relevance map binarised
    with Otsu's threshold, precision / recall / F1 against its box, and the cosine score; with a detector, its
    detections too (AP and AR need many images: `ntlb.metrics.detection.detection_scores`)."""
    from ..metrics.boxes import otsu_box_scores

    text_features = text_features_of(adapter, layout.texts)
    scores, maps = relevance_maps(adapter, image.to(adapter.device, adapter.dtype), text_features, False)
    masks = layout.masks(tuple(image.shape[-2:]))
    objects = []
    for j, (text, label) in enumerate(zip(layout.texts, layout.labels())):
        precision, recall, f1 = otsu_box_scores(maps[0, j], masks[j].bool())
        objects.append({"text": text, "label": label, "box": list(layout.boxes[j]), "precision": precision,
                        "recall": recall, "f1": f1, "cosine": float(scores[0, j].detach())})
    summary = {key: sum(o[key] for o in objects) / len(objects) for key in ("precision", "recall", "f1", "cosine")}
    result = {"objects": objects, "mean": summary, "maps": maps[0].detach()}
    if detector is not None:
        result["detections"] = [{"box": list(d.box), "label": d.label, "score": d.score} for d in detector(image[0])]
    return result


def summarize_runs(results: list[dict]) -> dict[str, dict]:
    """Paper Table 3 per method (ntlb with the released Dice in a row of its own) over runs (metrics.json dicts):
    mean Otsu precision / recall / F1 and cosine over runs, and COCO AP / AR / AP50 of all runs' detections
    against their layouts' boxes (where detected)."""
    from ..metrics.detection import detection_scores

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
        if detected:
            row.update(detection_scores([[(o["box"], o["label"]) for o in r["objects"]] for r in detected],
                                        [[(d["box"], d["label"], d["score"]) for d in r["detections"]]
                                         for r in detected]))
        table[method] = row
    return table
