"""Why do per-word interaction maps miss their object on two-object world scenes? Pointing of each colour and shape
word under principled variants of the interactions (docs/results-explainers.md, "Token x patch interactions"):

- the image reference of the path integral: the released all-zero model input ("zero", which for CLIP's
  normalisation is the uniform grey of CLIP's mean colour, within 25/255 of the world's mean background), a
  blurred copy of the image ("blur", Gaussian, sigma = 1/8 of the side), the image's mean colour ("meancolour");
- the start layer (both towers), and the sum over layers of the L1-normalised word maps;
- the read-out of a word: its span's sum ("sum", the library's word_map), the span's last token ("last"), and the
  word against the other content words ("contrast": its map minus their mean, what this word adds over the caption).
  The positive part changes no argmax, so it is not a separate read-out here.

Besides pointing (highest point in the own object) it reports whether the word's mean over its own object exceeds
that over the other object ("own > other", chance 50%), whether the highest point lies on either object, whether the
map's highest cell (8 x 8 px on the bundled model) holds any pixel of its own object ("peak cell on own": bilinear
upsampling peaks at a cell's centre, so pointing asks whether the object covers that centre), and where
the interaction mass sits (the class-token column's share of the sum; the patch terms' |A| by row: <sot>, content
words, filler words, <eot>). Select on one seed range, report on another:

    python benchmarks/word_pointing_variants.py --offset 9000000 --count 20      # selection range
    python benchmarks/word_pointing_variants.py --offset 7000000 --count 30      # the word_pointing range

Merges its results into docs/results-word-pointing.json under "variants" / "offset N"; with --binding N, only
the binding check (is the true caption above its colour-swapped twin?) under "binding"; with --per-object, only the
interactions of one caption per object under "per_object_captions"; with --contribution METHOD..., only the
maps of what each word adds to the score (below) under "contribution" / "offset N".

**What a word adds** (--contribution): s(I, T) - s(I, T without the word) = scale <f(I)/|f(I)|, v> with v the
difference of the two normalised text features, a linear functional of the normalised image feature; an image
explainer run against the direction v (`TextFeatures`) maps it in one explanation per word. Read-outs per method:
"contribution" (against v, the score difference itself: the logits rescaled by |v|), "contribution, unit
direction" (against v / |v|, as `TextFeatures` scores by default; the same map up to scale for explainers linear in
the score, not for chefer2021, whose rule multiplies gradient-weighted attentions over layers), "difference of
maps" (max(map(T) - map(T without the word), 0)), "caption map" (map(T), one map for every word) and, the baseline,
"object's own caption" (the map of "a {colour} {shape}" of the word's object, the same for its two words).

**Finer than the patch grid** (--shifts N): the same maps averaged over copies of the image shifted by N x N
offsets spread evenly below one patch (`ntlb.explain.shift_averaged`): with --contribution, the library's
`word_contribution_maps` (against v / |v|) and the object's own caption; without, each word's span sum of the
shift-averaged interactions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ntlb
from ntlb.explain import shift_averaged
from ntlb.explain.interactions import Interactions
from ntlb.explain.normalize import upsample
from ntlb.io import write_json_atomic
from ntlb.models.blocks import run_blocks
from ntlb.world import random_scene, relate, render
from ntlb.world.datasets import scene_seed

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROLES = ("colour", "shape")


class ReferencedInteractions(Interactions):
    """Interactions whose image reference is given per image (model input), not the all-zero input."""

    references: torch.Tensor | None = None  # (B, 3, H, W) of the current call

    def _image_side(self, adapter, layer, batch):
        head, reference = super()._image_side(adapter, layer, batch)
        if self.references is None:
            return head, reference
        reference, _, _ = run_blocks(adapter.image_blocks[:layer], adapter.embed_image(self.references))
        return head, reference.detach()


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 3, H, W) with replicated borders."""
    k = int(2 * round(3 * sigma) + 1)
    t = torch.arange(k, dtype=images.dtype) - k // 2
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    x = F.pad(images, (k // 2,) * 4, mode="replicate")
    x = F.conv2d(x, g.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, g.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)


def reference_pixels(world, images: torch.Tensor, name: str) -> torch.Tensor | None:
    if name == "zero":
        return None
    if name == "blur":
        return world.normalize(blur(images, images.shape[-1] / 8))
    if name == "meancolour":
        return world.normalize(images.mean(dim=(2, 3), keepdim=True).expand_as(images).contiguous())
    raise SystemExit(f"unknown reference '{name}': use zero, blur or meancolour")


def word_readouts(rows: torch.Tensor, spans: list[tuple[int, int]], content: list[int]) -> dict[str, dict]:
    """Read-out -> content word index -> (h, w) map."""
    summed = {k: rows[spans[k][0] : spans[k][1]].sum(0) for k in content}
    out: dict[str, dict] = {"sum": summed, "last": {k: rows[spans[k][1] - 1] for k in content}, "contrast": {}}
    for k in content:
        out["contrast"][k] = summed[k] - torch.stack([summed[j] for j in content if j != k]).mean(0)
    return out


def score(maps: dict, words: list, masks: list) -> dict:
    """Per read-out and role: pointing, own > other, on either object (percent)."""
    tallies: dict = {}
    for i, per_word in enumerate(maps):
        for readout, by_word in per_word.items():
            for k, word_map in by_word.items():
                role, obj = words[i][k][1], words[i][k][2]
                up = upsample(word_map[None].float(), tuple(masks[i].shape[-2:]))[0]
                top = up.flatten().argmax()
                own, other = masks[i][obj].bool(), masks[i][1 - obj].bool()
                cell = own.shape[-1] // word_map.shape[-1]  # one cell of the map's grid, in pixels
                own_cells = F.max_pool2d(own[None, None].float(), cell)[0, 0].bool()  # cells holding some of it
                entry = tallies.setdefault(readout, {}).setdefault(role, [[], [], [], []])
                entry[0].append(bool(own.flatten()[top]))
                entry[1].append(bool(up[own].mean() > up[other].mean()))
                entry[2].append(bool((own | other).flatten()[top]))
                entry[3].append(bool(own_cells.flatten()[word_map.flatten().argmax()]))
    names = ("pointing", "own_gt_other", "on_either", "peak_cell_on_own")
    return {readout: {role: {name: 100 * sum(v) / len(v) for name, v in zip(names, entry)}
                      for role, entry in roles.items()} for readout, roles in tallies.items()}


def binding(world, offset: int, count: int) -> dict:
    """Does the model bind colour to shape? CLIP's score of "a c1 s1 and a c2 s2" against the colour-swapped
    "a c2 s1 and a c1 s2" on the same scene, over scenes whose two objects differ in colour and in shape."""
    from ntlb.models.features import image_features, text_features

    scenes = [random_scene(scene_seed("multi-test", offset + i), 2) for i in range(count)]
    scenes = [s for s in scenes
              if s.objects[0].colour != s.objects[1].colour and s.objects[0].shape != s.objects[1].shape]
    images = torch.stack([torch.from_numpy(render(s, 64)[0]).permute(2, 0, 1).float() / 255 for s in scenes])
    true, swapped = [], []
    for scene in scenes:
        a, b = scene.objects[:2]
        true.append(f"a {a.colour} {a.shape} and a {b.colour} {b.shape}")
        swapped.append(f"a {b.colour} {a.shape} and a {a.colour} {b.shape}")
    with torch.no_grad():
        features = image_features(world, world.normalize(images).to(world.dtype))
        right = (features * text_features(world, true)).sum(-1)
        wrong = (features * text_features(world, swapped)).sum(-1)
    return {"scenes": len(scenes), "true_caption_higher": int((right > wrong).sum()), "offset": offset}


def per_object(world, offset: int, count: int, layers: list[int], steps: int, rule: str) -> dict:
    """One caption per object ("a {colour} {shape}"), explained by the interactions: does each word's map, and the
    caption's map (the sum of all rows), point into that object when no second object is named?"""
    scenes = [random_scene(scene_seed("multi-test", offset + i), 2) for i in range(count)]
    rendered = [render(scene, 64) for scene in scenes]
    texts, masks, owners = [], [], []
    for i, (scene, (_, mask)) in enumerate(zip(scenes, rendered)):
        for index, obj in enumerate(scene.objects[:2]):
            texts.append(f"a {obj.colour} {obj.shape}")
            masks.append(torch.from_numpy(mask[index]))
            owners.append(i)
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image, _ in rendered])
    pixels = world.normalize(images).to(world.dtype)
    results: dict = {"captions": len(texts), "offset": offset, "steps": steps, "rule": rule}
    for layer in layers:
        explainer = Interactions(start_layer_image=layer, start_layer_text=layer, steps=steps, rule=rule)
        hits: dict[str, list[bool]] = {"colour": [], "shape": [], "caption": []}
        for start in range(0, len(texts), 20):
            chunk = list(range(start, min(start + 20, len(texts))))
            with torch.no_grad():
                explanation = explainer(world, pixels[[owners[i] for i in chunk]], [texts[i] for i in chunk],
                                        pairs="diagonal")
            for b, i in enumerate(chunk):
                rows = explanation.interactions[explanation.key(b)].float()
                spans = explanation.tokens.words[explanation.text_index(b)]
                for name, word_map in (("colour", rows[spans[1].start : spans[1].end].sum(0)),
                                       ("shape", rows[spans[2].start : spans[2].end].sum(0)),
                                       ("caption", rows.sum(0))):
                    up = upsample(word_map[None], tuple(masks[i].shape))[0]
                    hits[name].append(bool(masks[i].flatten()[up.flatten().argmax()]))
        results[f"layer {layer}"] = {name: 100 * sum(v) / len(v) for name, v in hits.items()}
        print(f"per object, layer {layer}:", results[f"layer {layer}"], flush=True)
    return results


def contribution(world, offset: int, count: int, methods: list[str], shifts: int | None = None) -> dict:
    """Pointing of each colour and shape word's map of what it adds to the score (see the module docstring), per
    explainer and read-out, on the word_pointing scenes from `offset`."""
    from ntlb.explain import TextFeatures, create, shift_averaged, word_contribution_maps
    from ntlb.models.features import text_features
    from ntlb.models.tokenizer import without_words

    scenes = [random_scene(scene_seed("multi-test", offset + i), 2) for i in range(count)]
    rendered = [render(scene, 64) for scene in scenes]
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image, _ in rendered])
    masks = [torch.from_numpy(mask) for _, mask in rendered]
    captions = [relate(scene, 0, 1, "and") for scene in scenes]
    words = [[(w.text, w.role, w.obj) for w in caption.words] for caption in captions]
    content = [[k for k, w in enumerate(ws) if w[1] in ROLES] for ws in words]
    texts, index = without_words([c.text for c in captions], [[ws[k][0] for k in ks] for ws, ks in
                                                            zip(words, content)], world.tokenizer)
    owner = [i for i, ks in enumerate(content) for _ in ks]  # the scene of each shortened text
    pixels = world.normalize(images).to(world.dtype)
    with torch.no_grad():
        features = text_features(world, texts).double()
    directions = features[owner] - features[index[index >= 0].tolist()]  # v: T minus T without the word
    norms = directions.norm(dim=-1)
    objects = [f"a {o.colour} {o.shape}" for scene in scenes for o in scene.objects[:2]]  # one caption per object
    results: dict = {"scenes": count, "offset": offset}
    for method in methods:
        explainer = create(method, chunk_size=None)
        started = time.perf_counter()
        with torch.no_grad():
            full = explainer(world, pixels, [c.text for c in captions], pairs="diagonal").image[:, 0].double()
            without = explainer(world, pixels[owner], texts[len(captions):], pairs="diagonal").image[:, 0].double()
            unit = explainer(world, pixels[owner], TextFeatures(directions.to(world.dtype)),
                             pairs="diagonal").image[:, 0].double()
            exact = scaled_scores(explainer, norms)(world, pixels[owner], TextFeatures(directions.to(world.dtype)),
                                                   pairs="diagonal").image[:, 0].double()
            alone = explainer(world, pixels.repeat_interleave(2, 0), objects, pairs="diagonal").image[:, 0].double()
            if shifts is not None:  # the library's read-out: shift-averaged, against v / |v|
                averaged = torch.cat(word_contribution_maps(explainer, world, pixels, [c.text for c in captions],
                                                            [[words[i][k][0] for k in ks] for i, ks in
                                                             enumerate(content)], shifts=shifts))
                alone_averaged = shift_averaged(explainer, world, pixels.repeat_interleave(2, 0), objects,
                                                pairs="diagonal", shifts=shifts)[:, 0]
        maps: list[dict] = [{} for _ in scenes]
        row = 0
        for i, ks in enumerate(content):
            for name in ("contribution", "contribution, unit direction", "difference of maps", "caption map",
                         "object's own caption"):
                maps[i].setdefault(name, {})
            for k in ks:
                maps[i]["contribution"][k] = exact[row]
                maps[i]["contribution, unit direction"][k] = unit[row]
                maps[i]["difference of maps"][k] = (full[i] - without[row]).clamp(min=0)
                maps[i]["caption map"][k] = full[i]
                maps[i]["object's own caption"][k] = alone[2 * i + words[i][k][2]]
                if shifts is not None:
                    label = f"shift-averaged ({shifts} x {shifts} shifts)"
                    maps[i].setdefault(f"contribution, {label}", {})[k] = averaged[row]
                    maps[i].setdefault(f"object's own caption, {label}", {})[k] = alone_averaged[2 * i + words[i][k][2]]
                row += 1
        results[method] = score(maps, words, masks) | {"seconds": time.perf_counter() - started}
        for size in ("small", "large"):  # the contribution's pointing by the size of the word's object
            chosen = [{"contribution": {k: m for k, m in per_word["contribution"].items()
                                        if scenes[i].objects[words[i][k][2]].size == size}}
                      for i, per_word in enumerate(maps)]
            results[method][f"contribution, {size} objects"] = score(chosen, words, masks)["contribution"]
        print(f"{method}:", json.dumps(results[method]), flush=True)
    return results


def scaled_scores(explainer, scale: torch.Tensor):
    """A copy of a gradient explainer whose explained score of text column t is multiplied by scale[t]: with
    `TextFeatures(v)`, which scores against v / |v|, and scale = |v|, the score explained is s <f / |f|, v> itself.
    (Explainers that score on their own, as decomposition, legrad and occlusion do, keep v / |v|: their maps are
    linear or min-max scaled in the score, so only the scale differs.)"""

    class Scaled(type(explainer)):
        def encode(self, adapter, inputs, pairs, differentiable):
            batch = super().encode(adapter, inputs, pairs, differentiable)
            batch.logits = batch.logits * scale.to(batch.logits)[None, :]
            return batch

    scaled = Scaled.__new__(Scaled)
    scaled.__dict__.update(explainer.__dict__)
    return scaled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offset", type=int, default=7 * 10**6, help="first scene of the 'multi-test' seed space")
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--references", nargs="+", default=["zero"])
    parser.add_argument("--layers", type=int, nargs="+", default=[-1, -3])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rule", default="gauss")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(DOCS / "results-word-pointing.json"))
    parser.add_argument("--binding", type=int, default=0,
                        help="only the binding check on this many scenes from --offset (forward passes)")
    parser.add_argument("--per-object", action="store_true",
                        help="only one caption per object ('a {colour} {shape}'), --count scenes from --offset")
    parser.add_argument("--contribution", nargs="+", default=[],
                        help="only the maps of what each word adds to the score, by these explainers")
    parser.add_argument("--shifts", type=int, default=None,
                        help="also the shift-averaged maps (ntlb.explain.shift_averaged; with --contribution, "
                             "word_contribution_maps) with this many shifts per side of a patch (zero reference only)")
    args = parser.parse_args()
    world = ntlb.load_model(device=args.device)
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    if args.contribution:
        found = contribution(world, args.offset, args.count, args.contribution, args.shifts)
        kept = existing.setdefault("contribution", {}).setdefault(f"offset {args.offset}", {})
        for key, value in found.items():  # a method's read-outs of an earlier run (another step) stay
            kept[key] = kept[key] | value if isinstance(value, dict) and isinstance(kept.get(key), dict) else value
        write_json_atomic(out, existing)
        return
    if args.binding:
        existing["binding"] = binding(world, args.offset, args.binding)
        print("binding:", existing["binding"])
        write_json_atomic(out, existing)
        return
    if args.per_object:
        found = per_object(world, args.offset, args.count, args.layers, args.steps, args.rule)
        existing = json.loads(out.read_text()) if out.exists() else {}
        existing["per_object_captions"] = found
        write_json_atomic(out, existing)
        return
    scenes = [random_scene(scene_seed("multi-test", args.offset + i), 2) for i in range(args.count)]
    rendered = [render(scene, 64) for scene in scenes]
    images = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image, _ in rendered])
    masks = [torch.from_numpy(mask) for _, mask in rendered]
    captions = [relate(scene, 0, 1, "and") for scene in scenes]
    words = [[(w.text, w.role, w.obj) for w in caption.words] for caption in captions]
    pixels = world.normalize(images).to(world.dtype)
    results: dict = {"scenes": args.count, "steps": args.steps, "rule": args.rule, "settings": {}}
    if args.shifts is not None and args.references != ["zero"]:
        raise SystemExit("--shifts moves the image, not its reference: use it with --references zero")
    for reference in args.references:
        all_references = reference_pixels(world, images, reference)
        per_layer = {}
        for layer in args.layers:
            explainer = ReferencedInteractions(start_layer_image=layer, start_layer_text=layer, steps=args.steps,
                                               rule=args.rule)
            maps, shares, started = [], [], time.perf_counter()
            for start in range(0, args.count, 10):
                chunk = list(range(start, min(start + 10, args.count)))
                explainer.references = None if all_references is None else all_references[chunk].to(world.dtype)
                with torch.no_grad():
                    explanation = explainer(world, pixels[chunk], [captions[i].text for i in chunk],
                                            pairs="diagonal")
                    averaged = None if args.shifts is None else shift_averaged(
                        explainer, world, pixels[chunk], [captions[i].text for i in chunk], "diagonal",
                        args.shifts, read=lambda e: e.interactions)[:, 0]
                for b, i in enumerate(chunk):
                    rows = explanation.interactions[explanation.key(b)].float()
                    spans = [(w.start, w.end) for w in explanation.tokens.words[explanation.text_index(b)]]
                    content = [k for k, w in enumerate(words[i]) if w[1] in ROLES]
                    maps.append(word_readouts(rows, spans, content))
                    if averaged is not None:  # the span sum of the shift-averaged rows, at pixel resolution
                        maps[-1][f"sum, shift-averaged ({args.shifts} x {args.shifts} shifts)"] = {
                            k: averaged[b, spans[k][0] : spans[k][1]].sum(0) for k in content}
                    eot = int(explanation.tokens.eot[explanation.text_index(b)])
                    size = rows.abs().sum((1, 2))
                    total = float(size.sum())
                    part = [sum(float(size[spans[k][0] : spans[k][1]].sum()) for k, w in enumerate(words[i])
                                if (w[1] in ROLES) == wanted) for wanted in (True, False)]
                    whole = float(explanation.completeness[explanation.key(b)][0])
                    shares.append([(whole - float(rows.sum())) / whole, float(size[0]) / total, part[0] / total,
                                   part[1] / total, float(size[eot]) / total])
            per_layer[layer] = maps
            mean = torch.tensor(shares).mean(0).tolist()
            results["settings"][f"{reference}, layer {layer}"] = score(maps, words, masks) | {"mass_percent": dict(zip(
                ("class_token_column_of_sum", "sot", "content_words", "filler_words", "eot"),
                [100 * v for v in mean]))} | {"seconds_per_pair": (time.perf_counter() - started) / args.count}
            print(f"{reference}, layer {layer}:", json.dumps(results["settings"][f"{reference}, layer {layer}"]),
                  flush=True)
        if len(per_layer) > 1:
            summed = [{readout: {k: sum(per_layer[layer][i][readout][k] / per_layer[layer][i][readout][k].abs().sum()
                                        .clamp_min(1e-12) for layer in per_layer) for k in by_word}
                       for readout, by_word in per_layer[args.layers[0]][i].items()} for i in range(args.count)]
            name = f"{reference}, sum of layers {' '.join(map(str, per_layer))}"
            results["settings"][name] = score(summed, words, masks)
            print(f"{name}:", json.dumps(results["settings"][name]), flush=True)
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing.setdefault("variants", {})[f"offset {args.offset}"] = results
    write_json_atomic(out, existing)


if __name__ == "__main__":
    main()
