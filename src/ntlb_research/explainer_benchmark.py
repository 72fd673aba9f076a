"""Every explainer on held-out world scenes where the truth is known: localisation, faithfulness, words, time.

Each pair is a scene with a caption that names one of its objects ("a photo of a small red circle"); the
object's visible mask is the right answer for the image map and its colour, shape and size words are the
right answer for the words. For image-image similarity, two scenes share one object (same colour, shape and
size, elsewhere) beside objects of their own: the shared object is the right answer on both sides. Scenes come
from a seed space no model was trained on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ntlb.errors import NtlbError
from ntlb.explain import create, shift_averaged, word_contribution_maps
from ntlb.explain.explanation import Explanation
from ntlb.explain.normalize import minmax, upsample
from ntlb.metrics.faithfulness import curve_area, patch_perturbation_curve, token_perturbation_curve
from ntlb.metrics.localization import mask_energy, otsu_iou, pointing_game, segmentation_miou
from ntlb.models.adapter import ClipAdapter
from ntlb.models.features import image_features as encode_images
from ntlb.models.features import text_features as encode_texts
from ntlb.world import describe, random_scene, relate, render
from ntlb.world.captions import CONTENT_ROLES, Caption
from ntlb.world.datasets import reference_pictures, scene_seed
from ntlb.world.scene import Scene, random_object

RANDOM = "random (control)"


@dataclass
class NamedObject:
    """A scene picture, a caption naming one of its objects, and that object's visible mask."""

    picture: Image.Image
    caption: Caption
    mask: Tensor
    objects: int


def named_object_pairs(count: int, objects: int, template: str = "photo", offset: int = 4 * 10**6,
                       size: int = 64) -> list[NamedObject]:
    """`count` held-out scenes with `objects` objects each; the caption names object i mod objects."""
    pairs = []
    for i in range(count):
        scene = random_scene(scene_seed("multi-test", offset + 1000 * objects + i), objects)
        image, masks = render(scene, size)
        named = i % objects
        pairs.append(NamedObject(Image.fromarray(image), describe(scene, named, template),
                                 torch.from_numpy(masks[named]), objects))
    return pairs


@dataclass
class SharedObject:
    """Two scenes that share one object (placed differently), and that object's visible mask in each."""

    first: Image.Image
    second: Image.Image
    first_mask: Tensor
    second_mask: Tensor


def shared_object_pairs(count: int, offset: int = 6 * 10**6, size: int = 64) -> list[SharedObject]:
    """`count` held-out pairs: a two-object scene, and a scene with its first object moved beside an object that
    is in neither."""
    pairs = []
    for i in range(count):
        first = random_scene(scene_seed("multi-test", offset + i), 2)
        shared = first.objects[0]
        rng = np.random.default_rng(scene_seed("multi-test", offset + count + i))
        taken = {(o.colour, o.shape) for o in first.objects}
        other = random_object(rng)
        while (other.colour, other.shape) in taken:
            other = random_object(rng)
        second = Scene([other, random_object(rng, shared.shape, shared.colour, shared.size)], first.seed + 1)
        (image_a, masks_a), (image_b, masks_b) = render(first, size), render(second, size)
        pairs.append(SharedObject(Image.fromarray(image_a), Image.fromarray(image_b), torch.from_numpy(masks_a[0]),
                                  torch.from_numpy(masks_b[1])))
    return pairs


def _explain_all(adapter: ClipAdapter, method: str, pairs: list[NamedObject], batch_size: int,
                 seed: int) -> tuple[Explanation | None, list[Tensor], list[Tensor], float]:
    """Maps (h, w) and token rows of every pair (diagonal pairs in batches) and the time per pair."""
    maps, rows = [], []
    started = time.perf_counter()
    explanation = None
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        if method == RANDOM:
            h, w = adapter.grid_size
            maps += list(torch.rand(len(chunk), h, w, generator=generator))
            tokens = adapter.tokenizer([p.caption.text for p in chunk])
            rows += [torch.rand(int(tokens.eot[i]) + 1, generator=generator) for i in range(len(chunk))]
            continue
        with torch.no_grad():
            explanation = create(method)(adapter, [p.picture for p in chunk], [p.caption.text for p in chunk],
                                         pairs="diagonal")
        maps += list(explanation.image[:, 0].float()) if explanation.has_image_maps() else [None] * len(chunk)
        rows += list(explanation.text[:, 0].float()) if explanation.has_text_relevance() else [None] * len(chunk)
    return explanation, maps, rows, (time.perf_counter() - started) / len(pairs)


def _pair_localisation(adapter: ClipAdapter, method: str, pairs: list[SharedObject], batch_size: int,
                       seed: int) -> dict:
    """Image-image similarity of scenes sharing one object: pointing game and energy on both sides."""
    from ntlb.explain.pairs import explain_pair

    maps, masks = [], []
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        if method == RANDOM:
            maps += list(torch.rand(2 * len(chunk), *adapter.grid_size, generator=generator))
        else:
            with torch.no_grad():
                both = explain_pair(adapter, [p.first for p in chunk], [p.second for p in chunk], method=method,
                                    pairs="diagonal")
            maps += list(both.first.image[:, 0].float()) + list(both.second.image[:, 0].float())
        masks += [p.first_mask for p in chunk] + [p.second_mask for p in chunk]
    seconds = (time.perf_counter() - started) / len(pairs)
    scaled, masks = minmax(torch.stack(maps)), torch.stack(masks)
    return {"pointing_game": float(pointing_game(scaled, masks).float().mean()),
            "energy_in_mask": float(mask_energy(scaled, masks).mean()), "seconds_per_pair": seconds}


def _word_accuracy(adapter: ClipAdapter, pairs: list[NamedObject], rows: list[Tensor]) -> float:
    """Share of pairs whose most relevant word is a content word (colour, shape, size) of the named object."""
    from ntlb.explain.normalize import normalize_text, word_relevance

    hits = []
    for pair, row in zip(pairs, rows):
        tokens = adapter.tokenizer([pair.caption.text])
        words = word_relevance(normalize_text(row, tokens.eot[0], "visual"), tokens.words[0])
        top = int(np.argmax([value for _, value in words]))
        hits.append(pair.caption.words[top].role in CONTENT_ROLES)
    return float(np.mean(hits))


def _faithfulness(adapter: ClipAdapter, pairs: list[NamedObject], maps: list[Tensor], rows: list[Tensor],
                  with_text: bool) -> dict:
    areas: dict[str, list[float]] = {"image_positive": [], "image_negative": [], "image_insertion": [],
                                     "text_positive": [], "text_negative": []}
    for pair, patch_map, row in zip(pairs, maps, rows):
        pixels = adapter.preprocess(pair.picture)
        tokens = adapter.tokenizer([pair.caption.text])
        eot = int(tokens.eot[0])
        image_features = encode_images(adapter, pixels[None])[0]
        text_features = encode_texts(adapter, [pair.caption.text])[0]
        for positive in (True, False):
            suffix = "positive" if positive else "negative"
            if patch_map is not None:
                curve = patch_perturbation_curve(adapter, pixels, text_features, patch_map, positive)
                areas[f"image_{suffix}"].append(curve_area(curve))
            if positive and patch_map is not None:
                curve = patch_perturbation_curve(adapter, pixels, text_features, patch_map, insertion=True)
                areas["image_insertion"].append(curve_area(curve))
            if with_text:
                curve = token_perturbation_curve(adapter, image_features, tokens.ids[0], eot, row[1:eot], positive)
                areas[f"text_{suffix}"].append(curve_area(curve))
    return {key: (float(np.mean(values)) if values else None) for key, values in areas.items()}


def _scores(adapter: ClipAdapter, explanation: Explanation | None, pairs: list[NamedObject], maps: list,
            rows: list, seconds: float) -> dict:
    """One method's numbers on one setting; the image metrics are None when it gave no maps for this model."""
    with_text = explanation is None or explanation.has_text_relevance()
    entry = dict.fromkeys(("pointing_game", "energy_in_mask", "otsu_iou", "segmentation_miou"))
    if maps[0] is not None:
        masks = torch.stack([p.mask for p in pairs])
        scaled = minmax(torch.stack(maps))  # signed maps (surgery, decomposition) made comparable
        entry = {"pointing_game": float(pointing_game(scaled, masks).float().mean()),
                 "energy_in_mask": float(mask_energy(scaled, masks).mean()),
                 "otsu_iou": float(otsu_iou(scaled, masks).mean()),
                 "segmentation_miou": float(segmentation_miou(scaled, masks).mean())}
    return {**entry, "word_accuracy": _word_accuracy(adapter, pairs, rows) if with_text else None,
            "seconds_per_pair": seconds, **_faithfulness(adapter, pairs, maps, rows, with_text)}


def _points_into(maps: Tensor, masks: Tensor) -> Tensor:
    """Whether each map's highest point lies in its mask (maps and masks (n, H, W) at the same size)."""
    flat = maps.flatten(1).argmax(dim=1)
    return masks.flatten(1).gather(1, flat[:, None])[:, 0].bool()


def word_pointing(adapter: ClipAdapter, count: int = 30, offset: int = 7 * 10**6, size: int = 64,
                  layers: tuple[int, ...] = (-1,), batch_size: int = 16) -> dict:
    """Which region each word matches, where the truth is known: two-object scenes captioned "a {colour} {shape}
    and a {colour} {shape}"; the word map (token x patch interactions) of each colour and shape word should peak
    inside its own object, as should the library's map of what the word adds to the score (`word_contribution_maps`,
    shift-averaged, by chefer2021 and decomposition). Beside them, one caption per object explained by chefer2021
    ("a {shape}", "a {colour} {shape}", the latter also shift-averaged), whose single map is the whole caption's.
    Shares of the 2 * count words of each role."""
    scenes = [random_scene(scene_seed("multi-test", offset + i), 2) for i in range(count)]
    rendered = [render(scene, size) for scene in scenes]
    pictures = [Image.fromarray(image) for image, _ in rendered]
    masks = [torch.from_numpy(m) for _, m in rendered]
    results: dict = {"scenes": count}
    captions = [relate(scene, 0, 1, "and") for scene in scenes]
    for layer in layers:
        explainer = create("interactions", start_layer_image=layer, start_layer_text=layer)
        hits: dict[str, list[bool]] = {"colour": [], "shape": []}
        started = time.perf_counter()
        for start in tqdm(range(0, count, batch_size), desc=f"word maps (layer {layer})", unit="batch"):
            chunk = range(start, min(start + batch_size, count))
            with torch.no_grad():
                explanation = explainer(adapter, [pictures[i] for i in chunk], [captions[i].text for i in chunk],
                                        pairs="diagonal")
            for b, i in enumerate(chunk):
                for w, word in enumerate(captions[i].words):
                    if word.role in hits:
                        word_map = explanation.word_map(b, 0, w, size=masks[i].shape[-2:])
                        hits[word.role].append(bool(_points_into(word_map[None], masks[i][word.obj][None])[0]))
        results[f"interactions (layer {layer}), word map"] = {
            role: sum(values) / len(values) for role, values in hits.items()} | {
            "seconds_per_pair": (time.perf_counter() - started) / count}
    for name, template in (("chefer2021, caption 'a {shape}'", "{shape}"),
                           ("chefer2021, caption 'a {colour} {shape}'", "{colour} {shape}")):
        texts, object_masks = [], []
        for scene, mask in zip(scenes, masks):
            for index, obj in enumerate(scene.objects[:2]):
                texts.append("a " + template.format(colour=obj.colour, shape=obj.shape))
                object_masks.append(mask[index])
        images = [p for p in pictures for _ in range(2)]
        with torch.no_grad():
            explanation = create("chefer2021")(adapter, images, texts, pairs="diagonal")
        maps = upsample(explanation.image[:, 0].float(), tuple(object_masks[0].shape))
        hit = float(_points_into(maps, torch.stack(object_masks)).float().mean())
        results[name] = {"colour": hit if "colour" in template else None, "shape": hit}
        if "colour" in template:  # the same baseline at the resolution of the shift-averaged word maps
            with torch.no_grad():
                maps = shift_averaged(create("chefer2021"), adapter, images, texts, pairs="diagonal")[:, 0]
            hit = float(_points_into(maps, torch.stack(object_masks)).float().mean())
            results[name + ", shift-averaged"] = {"colour": hit, "shape": hit}
    content = [[w for w in caption.words if w.role in ("colour", "shape")] for caption in captions]
    for method in ("chefer2021", "decomposition"):  # the library's read-out: what each word adds to the score
        started = time.perf_counter()
        with torch.no_grad():
            maps = word_contribution_maps(create(method), adapter, pictures, [c.text for c in captions],
                                          [[w.text for w in words] for words in content])
        hits = {"colour": [], "shape": []}
        for i, words in enumerate(content):
            for k, word in enumerate(words):
                hits[word.role].append(bool(_points_into(maps[i][k][None], masks[i][word.obj][None])[0]))
        results[f"{method}, what the word adds, shift-averaged"] = {
            role: sum(values) / len(values) for role, values in hits.items()} | {
            "seconds_per_pair": (time.perf_counter() - started) / count}
    return results


GROUNDING_KINDS = ("colour", "shape", "missing", "swap")


@dataclass
class OneWordWrong:
    """A two-object scene's caption "a {colour} {shape} and a {colour} {shape}", the scene, and the same scene with
    the caption made false in one way (`kind`); `changed`: the indices of the caption's words made false."""

    right: Image.Image
    wrong: Image.Image
    caption: Caption
    kind: str
    changed: tuple[int, ...]


def _made_false(scene: Scene, kind: str, rng: np.random.Generator) -> tuple[Scene, tuple[int, ...]] | None:
    """The scene with one word of its two-object caption made false, and the caption word indices that changed
    (words 1, 2 are the first object's colour and shape, 5, 6 the second's); None where `kind` cannot apply."""
    from dataclasses import replace

    from ntlb.world.scene import COLOURS, SHAPES

    objects = list(scene.objects)
    if objects[0].colour == objects[1].colour or objects[0].shape == objects[1].shape:
        return None  # a word of the caption twice: making one false would leave it true
    target = int(rng.integers(2))
    obj = objects[target]
    if kind == "colour":
        objects[target] = replace(obj, colour=str(rng.choice([c for c in COLOURS
                                                               if c not in {o.colour for o in objects}])))
        changed: tuple[int, ...] = (1 + 4 * target,)
    elif kind == "shape":
        objects[target] = replace(obj, shape=str(rng.choice([s for s in SHAPES
                                                              if s not in {o.shape for o in objects}])))
        changed = (2 + 4 * target,)
    elif kind == "missing":
        del objects[target]
        changed = (1 + 4 * target, 2 + 4 * target)
    elif kind == "swap":
        objects = [replace(objects[0], colour=objects[1].colour), replace(objects[1], colour=objects[0].colour)]
        changed = (1, 5)
    else:
        raise NtlbError(f"unknown kind '{kind}': use one of {', '.join(GROUNDING_KINDS)}")
    return Scene(objects, scene.seed, scene.style), changed


def one_word_wrong_pairs(per_kind: int, offset: int = 8 * 10**6, size: int = 64,
                         kinds: tuple[str, ...] = GROUNDING_KINDS) -> list[OneWordWrong]:
    """`per_kind` held-out two-object scenes per kind, each with its caption and the scene made false one way:
    a colour wrong, a shape wrong (a value neither object has), an object missing, or the two colours swapped.
    Scenes whose objects share a colour or a shape are passed over (one false word would stay true for the other
    object). Deterministic in `offset`."""
    pairs = []
    for k, kind in enumerate(kinds):
        index, made = 0, 0
        while made < per_kind:
            seed = scene_seed("multi-test", offset + 10**5 * k + index)
            index += 1
            scene = random_scene(seed, 2)
            false = _made_false(scene, kind, np.random.default_rng(seed))
            if false is None:
                continue
            wrong, changed = false
            pairs.append(OneWordWrong(Image.fromarray(render(scene, size)[0]), Image.fromarray(render(wrong, size)[0]),
                                      relate(scene, 0, 1, "and"), kind, changed))
            made += 1
    return pairs


SELECTION_OFFSET = 9 * 10**6  # the seeds the new scores' temperatures were chosen on; the reported runs use 8e6


def _rate(right: Tensor, wrong: Tensor, kinds: list[str]) -> dict:
    """Share of pairs (per kind and over all) whose matching picture scores strictly higher."""
    higher = (right > wrong).float()
    out = {kind: float(higher[[k == kind for k in kinds]].mean()) for kind in dict.fromkeys(kinds)}
    return {**out, "all": float(higher.mean()), "ties": float((right == wrong).float().mean())}


def _grounding_scores(adapter: ClipAdapter, explainer, pairs: list[OneWordWrong], normalizations: tuple[str, ...],
                      scores: tuple[str, ...], references: list[Image.Image], batch_size: int) -> dict:
    """Every (normalisation, word score) of one explainer on both pictures of every pair, and the changed words'
    own share ("visual") on both: {name: (right (n,), wrong (n,))}."""
    from ntlb.losses.semantic_words import mean_word_shares, semantic_word_scores, word_shares, word_token_masks

    found: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        texts = [p.caption.text for p in chunk]
        words = [[w.text for w in p.caption.words if w.role in ("colour", "shape")] for p in chunk]
        slots = [[[w.text for w in p.caption.words if w.role in ("colour", "shape")].index(p.caption.words[i].text)
                  for i in p.changed] for p in chunk]
        with torch.no_grad():
            sides = [explainer(adapter, [getattr(p, side) for p in chunk], texts, pairs="diagonal")
                     for side in ("right", "wrong")]
            on_references = explainer(adapter, references, texts, pairs="all") if "contrast" in scores else None
        masks = word_token_masks(sides[0].tokens, words)
        values: dict[str, list[Tensor]] = {}
        for normalize in normalizations:
            reference = mean_word_shares(on_references, masks, normalize) if on_references is not None else None
            for score in scores:
                if score == "deletion" or (score == "mass" and normalize != normalizations[0]):
                    continue  # deletion reads no explainer; mass reads the raw rows whatever the normalisation
                name = f"{score} / {'raw' if score == 'mass' else normalize}"
                values[name] = [semantic_word_scores(e, masks, score, normalize, reference=reference)[:, 0].float()
                                for e in sides]  # one slot per image (diagonal pairs)
        own = [word_shares(e, masks, "visual")[:, 0].float() for e in sides]
        values["changed words' own share"] = [torch.stack([o[b, slots[b]].sum() for b in range(len(chunk))])
                                              for o in own]
        for name, (right, wrong) in values.items():
            found.setdefault(name, ([], []))
            found[name][0].append(right)
            found[name][1].append(wrong)
    return {name: (torch.cat(right), torch.cat(wrong)) for name, (right, wrong) in found.items()}


def word_grounding(adapter: ClipAdapter, explainers: list[str] | None = None, per_kind: int = 40,
                   offset: int = 8 * 10**6, logit_modes: tuple[str, ...] = ("scaled", "cosine"),
                   normalizations: tuple[str, ...] = ("visual", "max"), scores: tuple[str, ...] | None = None,
                   counts: dict[str, int] | None = None, references: int = 8, batch_size: int = 32,
                   size: int = 64) -> dict:
    """The word-grounding test (the paper's precondition): for every explainer x logit mode x normalisation x word
    score, how often the score ranks a two-object scene above the same scene with its caption made false one way
    (`one_word_wrong_pairs`: colour wrong, shape wrong, object missing, colours swapped), beside CLIP's own score
    and the changed words' own share ("visual"). `counts` lowers the pairs per kind for slow explainers. Explainers
    without text relevance are skipped with the reason; "deletion" reads scores only and has one row."""
    from ntlb.explain import available
    from ntlb.explain.registry import has
    from ntlb.losses.semantic_words import WORD_SCORES, deletion_word_scores
    from ntlb.models.features import features_without_words

    scores = tuple(scores or WORD_SCORES)
    explainers = list(explainers or available())
    pairs = one_word_wrong_pairs(per_kind, offset, size)
    kinds = [p.kind for p in pairs]
    pictures = reference_pictures(references, size)
    results: dict = {"pairs_per_kind": per_kind, "offset": offset, "kinds": list(dict.fromkeys(kinds)),
                     "reference_scenes": references, "rows": [], "own_share": {}, "skipped": {}, "notes": {}}
    texts = [p.caption.text for p in pairs]
    words = [[w.text for w in p.caption.words if w.role in ("colour", "shape")] for p in pairs]
    started = time.perf_counter()
    with torch.no_grad():
        features = {side: encode_images(adapter, torch.stack(  # normalised by the encoders
            [adapter.preprocess(getattr(p, side)) for p in pairs]).to(adapter.dtype)).float()
            for side in ("right", "wrong")}
        text, index = features_without_words(adapter, texts, words)
        text = text.float()
    cosine = {side: (f * text[: len(pairs)]).sum(-1) for side, f in features.items()}
    results["clip"] = _rate(cosine["right"], cosine["wrong"], kinds)
    if "deletion" in scores:
        dropped = {side: torch.einsum("nd,nwd->nw", f, text[index]) for side, f in features.items()}
        found = [deletion_word_scores(cosine[side], dropped[side], index >= 0) for side in ("right", "wrong")]
        results["rows"].append({"explainer": "none (scores only)", "logit_mode": "cosine", "normalize": "n/a",
                                "score": "deletion", "pairs_per_kind": per_kind, **_rate(*found, kinds)})
    results["seconds"] = {"clip and deletion": time.perf_counter() - started}
    for name in tqdm(explainers, desc="word grounding", unit="explainer"):
        if not has(name, "text relevance"):
            results["skipped"][name] = "gives no text relevance: no word score is defined"
            continue
        count = min(per_kind, (counts or {}).get(name, per_kind))
        chosen = [p for i, p in enumerate(pairs) if i % per_kind < count]
        chosen_kinds = [p.kind for p in chosen]
        for mode in logit_modes:
            started = time.perf_counter()
            try:
                found = _grounding_scores(adapter, create(name, logit_mode=mode), chosen, normalizations,
                                          scores, pictures, batch_size)
            except NtlbError as error:  # e.g. a method this model's towers cannot run
                results["skipped"][f"{name} ({mode})"] = str(error)
                continue
            results["seconds"][f"{name} ({mode})"] = time.perf_counter() - started
            own = found.pop("changed words' own share")
            results["own_share"][f"{name} ({mode})"] = {**_rate(own[0], own[1], chosen_kinds),
                                                       "pairs_per_kind": count}
            for label, (right, wrong) in found.items():
                score, normalize = label.split(" / ")
                results["rows"].append({"explainer": name, "logit_mode": mode, "normalize": normalize,
                                        "score": score, "pairs_per_kind": count, **_rate(right, wrong, chosen_kinds)})
            if bool((own[0] == own[1]).all()):
                results["notes"][name] = ("its text relevance does not depend on the image (text-tower attention "
                                          "only): every score ties on the two pictures")
    return results


def word_grounding_table(results: dict, best: int | None = None) -> str:
    """Markdown: the share of pairs (%) each word score ranks the matching picture higher, per kind of false word;
    CLIP's own score first. `best`: only that many rows, highest "all" first (None: every row, in run order)."""
    kinds = results["kinds"]
    lines = ["| explainer | logit mode | normalisation | word score | " + " | ".join(kinds) + " | all | n / kind |",
             "|---|---|---|---|" + "---:|" * (len(kinds) + 2)]

    def line(cells: list[str], entry: dict, count: int) -> str:
        return "| " + " | ".join(cells + [f"{100 * entry[k]:.0f}" for k in [*kinds, "all"]] + [str(count)]) + " |"

    lines.append(line(["CLIP's score", "any", "n/a", "n/a"], results["clip"], results["pairs_per_kind"]))
    rows = results["rows"]
    if best is not None:
        rows = sorted(rows, key=lambda r: -r["all"])[:best]
    for row in rows:
        lines.append(line([row["explainer"], row["logit_mode"], row["normalize"], row["score"]], row,
                          row["pairs_per_kind"]))
    for name, entry in results["own_share"].items():
        lines.append(line([name.split(" (")[0], name.split("(")[1].rstrip(")"), "visual",
                           "changed words' own share drops"], entry, entry["pairs_per_kind"]))
    return "\n".join(lines)


def word_pointing_table(results: dict) -> str:
    """Markdown: pointing of colour and shape words into their own object."""
    lines = ["| map | colour word ↑ | shape word ↑ |", "|---|---:|---:|"]
    for name, entry in results.items():
        if isinstance(entry, dict):
            cells = ["n/a" if entry.get(role) is None else f"{100 * entry[role]:.1f}" for role in ("colour", "shape")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_explainers(adapter: ClipAdapter, methods: list[str], count: int = 100, batch_size: int = 16,
                         seed: int = 0) -> dict:
    """Per explainer and for 1- and 2-object scenes: pointing game, energy in the mask, Otsu IoU and mIoU with the
    mask, deletion / insertion areas on patches and tokens, word accuracy, seconds per pair; for image pairs sharing
    an object, localisation on both sides. A random map is the control; methods that cannot run are skipped."""
    results: dict = {"pairs_per_setting": count, "methods": {}, "skipped": {}}
    settings = {objects: named_object_pairs(count, objects) for objects in (1, 2)}
    image_pairs = shared_object_pairs(count)
    runnable = []
    for method in methods:  # warm-up, so the first method's time is not the library's start-up
        try:
            _explain_all(adapter, method, settings[1][:2], batch_size, seed)
            runnable.append(method)
        except NtlbError as error:  # e.g. clip_surgery on a convolutional tower
            results["skipped"][method] = str(error)
    for method in tqdm([*runnable, RANDOM], desc="explainers", unit="method"):
        entry = {}
        for objects, pairs in settings.items():
            explanation, maps, rows, seconds = _explain_all(adapter, method, pairs, batch_size, seed)
            entry[f"{objects}_object"] = _scores(adapter, explanation, pairs, maps, rows, seconds)
        with_maps = entry["1_object"]["pointing_game"] is not None
        entry["image_pairs"] = None
        if with_maps:
            try:
                entry["image_pairs"] = _pair_localisation(adapter, method, image_pairs, batch_size, seed)
            except NtlbError as error:  # a method that needs texts (interactions) explains no image-image pair
                results["skipped"][f"{method} (image pairs)"] = str(error)
        results["methods"][method] = entry
    results["mask_area_share"] = {f"{k}_object": float(torch.stack([p.mask for p in v]).float().mean())
                                  for k, v in settings.items()}
    if "interactions" in runnable:
        results["word_pointing"] = word_pointing(adapter, count=max(1, min(count, 30)))
    return results


def time_explainers(adapter: ClipAdapter, methods: list[str], images: int = 1, texts: int = 8,
                    repeats: int = 2) -> dict:
    """Seconds per image-text pair of every explainer on random inputs (all pairs), best of `repeats`; methods the
    model cannot run (a ViT-only method on a ResNet) are left out."""
    pixels = torch.randn(images, 3, *adapter.preprocess_config.size, generator=torch.Generator().manual_seed(0))
    prompts = [f"a photo of a {word}" for word in ("cat", "dog", "car", "tree", "house", "bird", "boat", "cup")]
    prompts = (prompts * (texts // len(prompts) + 1))[:texts]
    out = {}
    for method in tqdm(methods, desc="timing", unit="method"):
        explainer = create(method)
        best = float("inf")
        try:
            for _ in range(repeats):
                started = time.perf_counter()
                with torch.no_grad():
                    explainer(adapter, pixels.to(adapter.dtype), prompts)
                best = min(best, time.perf_counter() - started)
        except NtlbError:  # e.g. a ViT-only method on a ResNet
            continue
        out[method] = best / (images * texts)
    return out


COLUMNS = (
    ("pointing_game", "pointing game ↑", 100), ("energy_in_mask", "energy in mask ↑", 100),
    ("otsu_iou", "Otsu IoU ↑", 100), ("segmentation_miou", "mIoU ↑", 100),
    ("image_positive", "deletion AUC ↓", 1), ("image_negative", "neg. deletion AUC ↑", 1),
    ("image_insertion", "insertion AUC ↑", 1), ("text_positive", "token pos. AUC ↓", 1),
    ("text_negative", "token neg. AUC ↑", 1), ("word_accuracy", "top word is content ↑", 100),
    ("seconds_per_pair", "ms / pair", 1000),
)
PAIR_COLUMNS = (("pointing_game", "pointing game (both images) ↑", 100),
                ("energy_in_mask", "energy in shared object ↑", 100), ("seconds_per_pair", "ms / pair", 1000))
REFERENCE = "chefer2021"
SETTING_TITLES = {"1_object": "1 object scenes", "2_object": "2 object scenes",
                  "image_pairs": "Image-image similarity: scenes sharing one object"}


def markdown_table(results: dict, setting: str) -> str:
    """One markdown table (rows: explainers) of a setting ("1_object", "2_object" or "image_pairs"), with each
    method's time as a multiple of chefer2021's when chefer2021 was run."""
    columns = PAIR_COLUMNS if setting == "image_pairs" else COLUMNS
    reference = results["methods"].get(REFERENCE, {}).get(setting, {}).get("seconds_per_pair")
    titles = [title for _, title, _ in columns] + (["time ÷ chefer2021"] if reference else [])
    lines = ["| explainer | " + " | ".join(titles) + " |", "|---|" + "---:|" * len(titles)]
    for method, entry in results["methods"].items():
        values = entry.get(setting)
        if values is None:
            continue
        cells = ["n/a" if values.get(key) is None else f"{values[key] * factor:.{1 if factor != 1 else 2}f}"
                 for key, _, factor in columns]
        if reference:
            cells.append("n/a" if method.startswith("random") else f"{values['seconds_per_pair'] / reference:.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison_figure(adapter: ClipAdapter, methods: list[str], path, count: int = 12) -> None:
    """The same held-out scenes (half with one object, half with two) under every explainer."""
    from ntlb.viz import method_comparison

    pairs = named_object_pairs(count // 2, 1, offset=5 * 10**6) + named_object_pairs(count - count // 2, 2,
                                                                                      offset=5 * 10**6)
    pictures, texts = [p.picture for p in pairs], [p.caption.text for p in pairs]
    explanations = {}
    for method in methods:
        with torch.no_grad():
            explanations[method] = create(method)(adapter, pictures, texts, pairs="diagonal")
    method_comparison(explanations, path, texts, cell=1.7)


def run_explainer_benchmark(adapter: ClipAdapter, methods: list[str] | None, count: int, out,
                            grounding: int = 0) -> dict:
    """`ntlb benchmark explainers`: the benchmark on `count` scenes per setting, written to out/explainers.json,
    explainers.md (one table per setting) and explainers.png (every method on the same scenes); with `grounding`
    > 0, also the word-grounding test on that many pairs per kind (`word_grounding`)."""
    from pathlib import Path

    from ntlb.explain import available
    from ntlb.io import OutputFolder, write_record, write_text_atomic

    methods = list(methods or available())
    unknown = [m for m in methods if m not in available()]
    if unknown:
        raise NtlbError(f"unknown explainer '{unknown[0]}': choose from {', '.join(available())}")
    if count < 1:
        raise NtlbError(f"--count {count}: use at least 1 scene per setting")
    if grounding < 0:
        raise NtlbError(f"--grounding {grounding}: use a number of pairs per kind, or 0 to leave the test out")
    results = benchmark_explainers(adapter, methods, count=count)
    if grounding:
        results["word_grounding"] = word_grounding(adapter, methods, per_kind=grounding)
    folder = OutputFolder(Path(out))
    results = write_record(folder / "explainers.json", results, adapter, {"explainers": methods, "count": count,
                                                                          "grounding": grounding})
    results["tables"] = "\n\n".join(f"### {SETTING_TITLES[setting]}\n\n{markdown_table(results, setting)}"
                                    for setting in SETTING_TITLES)
    if "word_pointing" in results:
        results["tables"] += ("\n\n### Which region each word matches (two-object scenes)\n\n"
                              + word_pointing_table(results["word_pointing"]))
    if "word_grounding" in results:
        results["tables"] += ("\n\n### Word grounding: the matching scene ranked above one with a false word (%)\n\n"
                              + word_grounding_table(results["word_grounding"]))
    write_text_atomic(folder / "explainers.md", results["tables"] + "\n")
    comparison_figure(adapter, [m for m in methods if m not in results["skipped"]], folder / "explainers.png")
    return results
