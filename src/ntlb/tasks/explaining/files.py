"""Explaining image files and saving what a person reads: per pair a captioned overlay PNG and highlighted
words, `explanations.json` (with the settings the explainer really used), a self-contained `report.html` and a
paged `grid.png` - what `ntlb explain` and `ntlb demo` run. `compare_explainers` puts several explainers side by
side (`ntlb compare`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from ...errors import NtlbError
from ...explain import available, create
from ...explain.base import Explainer
from ...explain.explanation import Explanation
from ...explain.registry import capable
from ...explain.spec import ExplainerSpec
from ...explain.word_contributions import word_contribution_maps, word_score_drops
from ...io import OutputFolder, save_image_atomic, write_record
from ...losses.semantic_words import content_words
from ...models.adapter import ClipAdapter
from ...models.inputs import prepare_texts
from ...models.loading import DEFAULT_MODEL
from ...viz import captioned, method_comparison, overlay, picture_grid
from ...viz.report import write_report
from ...world import COLOURS, describe, random_scene, relate, render
from ...world.detector import looks_like_world_scene


def _slug(text: str, limit: int = 32) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower())[:limit].strip("-") or "text"


def model_notes(adapter: ClipAdapter, pictures: Sequence[Image.Image] = ()) -> list[str]:
    """What a reader must know about the model behind the maps: random weights; the bundled world model asked
    about pictures from outside its world."""
    notes = []
    if getattr(adapter, "random_weights", False):
        notes.append(f"model {adapter.name} has random weights: the maps show the numerics, not meaning")
    if adapter.name == DEFAULT_MODEL and not adapter.random_weights:
        outside = sum(not looks_like_world_scene(picture) for picture in pictures)
        if outside:
            notes.append(f"{outside} of {len(pictures)} image(s) do not look like scenes of ntlb's procedural world: "
                         f"the bundled {DEFAULT_MODEL} model knows only coloured shapes, so on photos its maps show "
                         "that world's notions, not what a CLIP trained on photos sees; pass --model/--pretrained "
                         "with a real CLIP checkpoint")
    return notes


def pair_record(explanation: Explanation, b: int, t: int, image: str, text: str) -> dict:
    """One pair's JSON record: score, probability, words (None without text relevance), patch map."""
    column = explanation.text_index(b, t)
    record = {"image": image, "text": text, "logit": explanation.logit(b, t),
              "probability": float(explanation.probabilities()[b, column]),
              "words": [[w, r] for w, r in explanation.words(b, t)] if explanation.has_text_relevance() else None,
              "overlay": None, "patch_map": None}
    if explanation.has_image_maps():
        patch = explanation.image[explanation.key(b, t)]
        record["patch_map"] = [[round(float(v), 6) for v in row] for row in patch]
    return record


def word_overlays(explanation: Explanation, b: int, t: int, stem: str,
                  maps: Sequence[tuple[str, torch.Tensor, float]] | None = None
                  ) -> tuple[list[dict], dict[str, Image.Image]]:
    """Per word of the pair's text, the region that word matches as a captioned overlay of the positive part of its
    map: its token x patch interactions (the record keeps its total interaction with the picture), or `maps`,
    (word, map, score drop) of what each word adds to the score (`word_contribution_maps`; the record keeps the
    cosine score the word adds, `word_score_drops`)."""
    records, pictures = [], {}
    text = explanation.tokens.words[explanation.text_index(b, t)]
    found = [(w, m, None) for w, m in explanation.word_maps(b, t)] if maps is None else maps
    for index, (word, patches, drop) in enumerate(found):
        name = f"{stem}__w{index:02d}_{_slug(word, 16)}.png"
        picture = overlay(explanation.originals[b], patches.clamp(min=0), explanation.preprocess)
        adds = "" if drop is None else f"  (adds {drop:+.3f} to the cosine score)"
        pictures[name] = captioned(picture, f'"{word}" in "{" ".join(w.text for w in text)}"{adds}')
        records.append({"word": word, "overlay": name}
                       | ({"interaction": round(float(patches.sum()), 6)} if maps is None
                          else {"cosine_drop": round(float(drop), 6)}))
    return records, pictures


def contribution_maps(explainer: Explainer, adapter: ClipAdapter, images: Sequence[str | Path],
                      texts: Sequence[str], shifts: int | None) -> list[list[tuple[str, torch.Tensor, float]]]:
    """For image i and text i: (word, map, cosine score the word adds) for each semantic word of the text (texts
    made of stop words only are left without maps)."""
    words = []
    for text in texts:
        try:
            words.append(content_words(text, tokenizer=adapter.tokenizer))
        except NtlbError:  # only stop words: nothing to map
            words.append([])
    if not any(words):
        return [[] for _ in texts]
    with torch.no_grad():
        maps = word_contribution_maps(explainer, adapter, list(images), list(texts), words,
                                      **({} if shifts is None else {"shifts": shifts}))
        drops = word_score_drops(adapter, list(images), list(texts), words)
    return [list(zip(chosen, stack, drop.tolist())) for chosen, stack, drop in zip(words, maps, drops)]


def explain_files(adapter: ClipAdapter, images: Sequence[str | Path], texts: Sequence[str], explainer: Explainer,
                  out: str | Path, batch_size: int = 8, title: str | None = None,
                  box: Sequence[float] | None = None, keep: list[Explanation] | None = None,
                  word_maps: bool = False, shifts: int | None = None) -> dict:
    """Explain every image with every text, in batches of images (each image encoded once for all texts), and
    write overlays, explanations.json, report.html and grid.png (paged above 64 pairs) to `out`. Explainers with
    token x patch interactions also write one overlay per word, and with `box` (x0, y0, x1, y1 in each picture's
    pixels) record how much each word interacts with the patches inside it; other explainers do with `word_maps`,
    each semantic word's map of what it adds to the score, averaged over `shifts` shifts per side of a patch
    (None: the library's `SHIFTS`; 1: the plain map). `keep`: a list that receives each
    batch's Explanation (for callers that ask more of it). Files an earlier run wrote to `out` are removed first.
    Returns what explanations.json holds."""
    if box is not None and not explainer.gives_interactions:
        raise NtlbError(f"--box needs the words of each region: use --explainer "
                        f"{' or '.join(capable('token x patch interactions'))}, not {explainer.name}")
    if batch_size < 1:
        raise NtlbError(f"--batch-size {batch_size}: use at least 1 image per batch")
    if not texts:
        raise NtlbError('no texts given: add at least one --text "..."')
    tokens = prepare_texts(adapter, list(texts))
    folder = OutputFolder(out)
    records, cells, pictures, originals, notes = [], [], {}, {}, []
    if word_maps and explainer.gives_interactions:
        notes.append(f"--word-maps: {explainer.name} writes its own word maps (each word's interactions), not what "
                     "each word adds to the score; use another explainer for those")
    chunks = [list(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    if not chunks:
        raise NtlbError("no images given: pass at least one image")
    # the bar counts the batches, then the grid and the report: the writing is part of the run, not a silence
    bar = tqdm(total=len(chunks) + 2, desc="explaining", unit="step", disable=len(chunks) < 2)
    for start, chunk in zip(range(0, len(images), batch_size), chunks):
        with torch.no_grad():
            explanation = explainer(adapter, chunk, tokens)
        if keep is not None:
            keep.append(explanation)
        notes += [n for n in (explanation.image_note, explanation.text_note) if n and n not in notes]
        contributions = {}
        if word_maps and explanation.interactions is None:
            pairs = explanation.pair_indices()
            found = contribution_maps(explainer, adapter, [chunk[b] for b, _ in pairs],
                                      [texts[explanation.text_index(b, t)] for b, t in pairs], shifts)
            contributions = dict(zip(pairs, found))
            for (b, t), maps in contributions.items():
                note = f"no word maps for '{texts[explanation.text_index(b, t)]}': it has only stop words"
                if not maps and note not in notes:
                    notes.append(note)
        for b, t in explanation.pair_indices():
            text = texts[explanation.text_index(b, t)]
            record = pair_record(explanation, b, t, str(chunk[b]), text)
            originals.setdefault(str(chunk[b]), explanation.originals[b])
            picture = explanation.originals[b]
            stem = f"{start + b:03d}_{_slug(Path(chunk[b]).stem, 24)}__{t:02d}_{_slug(text)}"
            if explanation.has_image_maps():
                picture = overlay(picture, explanation.image[explanation.key(b, t)], explanation.preprocess)
                pictures[f"{stem}.png"] = captioned(picture, f"{text}  (p {record['probability']:.2f})")
                save_image_atomic(folder / f"{stem}.png", pictures[f"{stem}.png"])
                record["overlay"] = f"{stem}.png"
            if explanation.interactions is not None or contributions.get((b, t)):
                record["word_maps"], word_pictures = word_overlays(explanation, b, t, stem, contributions.get((b, t)))
                for name, word_picture in word_pictures.items():
                    save_image_atomic(folder / name, word_picture)
                pictures.update(word_pictures)
                if box is not None:
                    record["box"] = list(box)
                    record["box_words"] = [[w, round(v, 6)] for w, v in explanation.region_words(b, t, box)]
            cells.append((picture, f"{Path(chunk[b]).name}: {text}\nlogit {record['logit']:.2f}  "
                                   f"p {record['probability']:.2f}"))
            records.append(record)
        bar.update()
    notes = model_notes(adapter, list(originals.values())) + notes
    method = explainer.name
    title = title or f"ntlb {method} on {adapter.name}"
    bar.set_description("writing grid")
    grids = folder.record(picture_grid(cells, len(texts), folder.root / "grid.png",
                                       title + (f" - {notes[0]}" if notes else "")))
    bar.update()
    bar.set_description("writing report")
    data = {"method": method, "logit_mode": explainer.logit_mode, "options": explainer.options(), "texts": list(texts),
            "notes": notes, "grids": [g.name for g in grids], "pairs": records}
    data = write_record(folder / "explanations.json", data, adapter, {"explainer": method,
                                                                      "logit_mode": explainer.logit_mode,
                                                                      "options": explainer.options()})
    write_report(folder / "report.html", title, records, notes, pictures, originals)
    bar.update()
    bar.close()
    return data


def compare_explainers(adapter: ClipAdapter, images: Sequence[str | Path], texts: Sequence[str],
                       methods: Sequence[str] | None, out: str | Path, logit_mode: str | None = None) -> dict:
    """The same pairs under several explainers: compare.png (rows: pairs, columns: explainers) and compare.json.
    An explainer that cannot run on the model is skipped with its reason."""
    methods = list(methods or available())
    unknown = [m for m in methods if m not in available()]
    if unknown:
        raise NtlbError(f"unknown explainer '{unknown[0]}': choose from {', '.join(available())}")
    if not texts:
        raise NtlbError('no texts given: add at least one --text "..."')
    tokens = prepare_texts(adapter, list(texts))
    explanations, skipped = {}, {}
    for method in tqdm(methods, desc="explainers", unit="method"):
        try:
            with torch.no_grad():
                spec = ExplainerSpec(method, {"logit_mode": logit_mode})  # None: the method's own
                explanations[method] = create(spec)(adapter, list(images), tokens)
        except NtlbError as error:  # e.g. clip_surgery on a convolutional tower: say so and compare the others
            skipped[method] = str(error)
    if not explanations:
        raise NtlbError(f"no explainer could run on {adapter.name}: {'; '.join(skipped.values())}")
    folder = OutputFolder(out)
    first = next(iter(explanations.values()))
    method_comparison(explanations, folder / "compare.png", list(texts))
    summary = {
        method: [{"image": str(images[b]), "text": texts[e.text_index(b, t)],
                  "words": e.words(b, t) if e.has_text_relevance() else None, "options": e.options,
                  "text_note": e.text_note, "image_note": e.image_note} for b, t in e.pair_indices()]
        for method, e in explanations.items()
    }
    data = {"notes": model_notes(adapter, first.originals), "methods": summary, "skipped": skipped}
    return write_record(folder / "compare.json", data, adapter, {"explainers": methods, "logit_mode": logit_mode})


def demo_inputs(seed: int, out: str | Path) -> tuple[Path, list[str]]:
    """A two-object world scene written to out/scene.png, with its two captions, a relation caption and a caption
    naming a colour that is not in the picture."""
    scene = random_scene(seed, 2)
    picture = save_image_atomic(Path(out) / "scene.png", Image.fromarray(render(scene, 256)[0]))
    absent = next(c for c in COLOURS if c not in {o.colour for o in scene.objects})
    texts = [describe(scene, 0).text, describe(scene, 1).text, relate(scene, 0, 1, "left").text,
             f"a {absent} {scene.objects[0].shape}"]
    return picture, texts


def explain_pair_files(adapter: ClipAdapter, query: str | Path, others: Sequence[str | Path],
                       method: ExplainerSpec | str, out: str | Path, **options) -> dict:
    """Explain the similarity of `query` with each of `others` (retrieval, near duplicates): maps on both images
    of each pair, written as pairs.png (rows: pairs) and pairs.json (similarity and both patch maps). `method`: an
    explainer name or spec (its options and `options` go to it)."""
    from ...explain.pairs import explain_pair

    spec = ExplainerSpec.of(method)
    method, options = spec.name, {**spec.given(), **options}
    if not others:
        raise NtlbError("give the query image and at least one image to compare it with")
    with torch.no_grad():
        pair = explain_pair(adapter, [query], list(others), method=method, **options)
    folder = OutputFolder(out)
    first, second = pair.first, pair.second
    cells, records = [], []
    for j, other in enumerate(others):
        on_query, on_other = pair.maps(0, j)
        similarity = float(pair.similarity[0, j])
        cells.append((overlay(first.originals[0], on_query, first.preprocess),
                      f"{Path(query).name}\nwith {Path(other).name}: similarity {similarity:.3f}"))
        cells.append((overlay(second.originals[j], on_other, second.preprocess),
                      f"{Path(other).name}\nwith {Path(query).name}"))
        records.append({"query": str(query), "image": str(other), "similarity": similarity,
                        "query_map": on_query.tolist(), "image_map": on_other.tolist()})
    notes = model_notes(adapter, [first.originals[0], *second.originals])
    title = f"ntlb {method} on {adapter.name}: image-image similarity" + (f" - {notes[0]}" if notes else "")
    grids = folder.record(picture_grid(cells, 2, folder.root / "pairs.png", title))
    data = {"method": method, "logit_mode": first.logit_mode, "options": first.options, "notes": notes,
            "grids": [g.name for g in grids], "pairs": records}
    return write_record(folder / "pairs.json", data, adapter, {"explainer": method, "options": first.options})


def explain_concept_files(adapter: ClipAdapter, images: Sequence[str | Path], classes: Sequence[str],
                          concepts: Sequence[str], out: str | Path, k: int | None = None,
                          template: str | None = None, method: ExplainerSpec | str = "chefer2021", **options) -> dict:
    """Explain each image's zero-shot class by its top concepts: concepts.png (per image, the predicted class and
    one overlay per concept with its share of the score) and concepts.json (contributions, residual, maps).
    `method`: an explainer name or spec (its options and `options` go to it); `k` and `template` None:
    `explain_with_concepts`' own."""
    from ...explain.concepts import CLASS_TEMPLATE, CONCEPTS_K, explain_with_concepts

    k, template = CONCEPTS_K if k is None else k, template or CLASS_TEMPLATE
    spec = ExplainerSpec.of(method)
    method, options = spec.name, {**spec.given(), **options}
    result = explain_with_concepts(adapter, list(images), classes, concepts, template=template, k=k, method=method,
                                   **options)
    maps = result.maps
    folder = OutputFolder(out)
    cells, records = [], []
    for b, image in enumerate(images):
        label = int(result.explained[b])
        score = float(result.scores[b, label])
        probability = float(result.scores[b].softmax(-1)[label])
        cells.append((maps.originals[b], f"{Path(image).name}\n{classes[label]} (p {probability:.2f}, score "
                                         f"{score:.2f}; residual {float(result.residual[b]):+.2f})"))
        used = result.top(b)
        for slot, (concept, contribution) in enumerate(used):
            cells.append((overlay(maps.originals[b], maps.image_map(b, slot), maps.preprocess),
                          f"{concept}: {contribution:+.2f} ({contribution / score:.0%} of the score)"))
        cells.extend((Image.new("RGB", (224, 224), "white"), "") for _ in range(k - len(used)))
        records.append({"image": str(image), "class": classes[label], "probability": probability, "score": score,
                        "residual": float(result.residual[b]),
                        "concepts": [{"concept": concept, "contribution": contribution,
                                      "weight": float(result.weights[label, concepts.index(concept)]),
                                      "map": maps.image_map(b, slot).tolist()}
                                     for slot, (concept, contribution) in enumerate(used)]})
    notes = model_notes(adapter, maps.originals)
    title = f"ntlb concepts ({method} maps) on {adapter.name}" + (f" - {notes[0]}" if notes else "")
    grids = folder.record(picture_grid(cells, k + 1, folder.root / "concepts.png", title))
    data = {"method": method, "template": template, "k": k, "logit_mode": maps.logit_mode, "options": maps.options,
            "notes": notes, "grids": [g.name for g in grids], "images": records}
    return write_record(folder / "concepts.json", data, adapter, {"explainer": method, "template": template, "k": k,
                                                                  "classes": list(classes), "concepts": list(concepts),
                                                                  "options": maps.options})
