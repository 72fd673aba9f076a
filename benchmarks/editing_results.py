"""Text-guided editing, multi-word generation and essence transfer on the world: the measurable counterpart of the
paper's Table 2 user study and of its supplementary compound-noun study.

    python benchmarks/editing_results.py [--scenes 20] [--steps 100] [--prompts 100] [--seeds 0 1] [--jobs 2]
                                         [--generator world-render] [--expl-weight auto] [--sweep-samples 2]
                                         [--quick] [--families ...] [--word-scores paper deletion] [--figure-tag TAG]

Editing (`ntlb.tasks.guidance.editing.edit`, the bundled world CLIP and --generator (world-render, the default, or
world-vqgan), the automatic lambda sweep of 0, 0.5, ..., 3.5 in one batched run (world-render drawing
--sweep-samples pictures per lambda and step, 0: its own 8, the full sweep), or --expl-weight 0 alone): 4 prompt
families on held-out scenes, as the paper's prompts change one attribute ("purple hair"), add a part ("a beard"),
change two at once, or one object of two: colour ("a purple circle" for a red circle), shape ("a red star" for a red
circle), two attributes ("a large blue circle" for a small red one), one object of a two-object scene ("a red circle
and a green square" for a red circle and a blue square). Quality: the world's exact detector finds the requested
object(s) (colour and shape; size from the box where named). Identity: what the text does not ask to change is kept
(the edited object's box IoU >= 0.5 with its original, or its centre within 6 px when the size changes; the other
object still found in place; counted only where the requested object is found), the share where the edited object is
still found as it was (old colour and shape, box IoU >= 0.5: the edit did not take), and the mean pixel change
outside the edited object's box. Three more families where CLIP alone may fail on the world's own pictures: one
object of three changed (the text names all three), two objects whose colours the text swaps (the pairs the bundled
CLIP confuses most, SWAP_PAIRS; `--swap-pairs` prints how they were chosen) and one small object whose size, colour
and shape all change. Rows: lambda = 0 (StyleCLIP), then per word score (--word-scores, one sweep each) ntlb with the
automatic lambda, ntlb lambda = 1, and the subset where the automatic rule picked lambda != 0 (as the paper reports),
all read from the same sweep (--expl-weight N: lambda = 0 and N of one run), and the cases each row edits correctly
where lambda = 0 does not (and the reverse), paired by case.

Multi-word generation (`generate_from_text`): two-object prompts "a {colour} {shape} and a {colour} {shape}" from
random latents, CLIP alone against ntlb (--generation-rows: the default word score or a chosen one, at lambda 1 or
3; generation has no automatic lambda); share of images where the detector finds both objects, and each word's
relevance. Essence transfer (`blend`): a target's colour onto sources of other shapes; share where the detector
sees the target's colour with the source's shape.

Runs go through worker processes (one thread each) and are cached per folder under --cache. Writes
--out (docs/results-editing.json) and beside it results-editing-examples.png, results-generation-examples.png and
results-blend-examples.png (with --figure-tag TAG: results-editing-examples-TAG.png, ...), and prints markdown
tables.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ntlb.config.guidance import SWEEP_SAMPLES, WORD_SCORE_DEFAULT
from ntlb.errors import NtlbError
from ntlb.io import save_figure_atomic, write_json_atomic
from ntlb.losses.semantic_words import WORD_SCORES
from ntlb.world.scene import COLOURS, SHAPES, Scene, SceneObject

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("colour", "shape", "two attributes", "two objects")
# families where CLIP alone may fail on the world's own pictures (issue 26, item 6)
HARD_FAMILIES = ("three objects", "colour swap", "size + colour + shape")
ALL_FAMILIES = FAMILIES + HARD_FAMILIES
RESIZED = ("two attributes", "size + colour + shape")  # families whose text changes the object's size
SIZE = 64
LARGE_SIDE = 21  # boxes of large objects are 24-32 px, of small ones 13-18 px at 64 px
# The colour-swap family's (c1, s1, c2, s2): "a c1 s1 and a c2 s2" on the scene "c2 s1, c1 s2". The ten of the 840
# (colour pair x ordered shape pair) with the smallest margin cos(true scene, text) - cos(swapped scene, text) of
# the bundled CLIP, mean over two selection backgrounds (`python benchmarks/editing_results.py --swap-pairs`).
SWAP_PAIRS = (("yellow", "square", "orange", "circle"), ("blue", "cross", "cyan", "diamond"),
              ("green", "diamond", "cyan", "triangle"), ("blue", "star", "cyan", "triangle"),
              ("yellow", "diamond", "orange", "star"), ("yellow", "star", "orange", "triangle"),
              ("blue", "square", "cyan", "circle"), ("purple", "star", "pink", "cross"),
              ("yellow", "diamond", "orange", "triangle"), ("blue", "triangle", "cyan", "star"))
SWAP_SELECTION_SEED = 2 * 10**8 + 98_000  # backgrounds of the selection scenes (none is a benchmark scene)


def _a(words: str) -> str:
    """'a red circle', 'an orange circle'."""
    return ("an " if words[0] in "aeiou" else "a ") + words


def _scene_seed(family: str, index: int) -> int:
    """The background seed of a benchmark scene: the four first families from 90,000, the others from 97,000 of the
    test space (essence transfer uses 95,000-96,999, the colour-swap selection 98,000-98,001)."""
    position = ALL_FAMILIES.index(family)
    if position < len(FAMILIES):
        return 2 * 10**8 + 90_000 + 1000 * position + index
    return 2 * 10**8 + 97_000 + 100 * (position - len(FAMILIES)) + index


def edit_case(family: str, index: int) -> dict:
    """A held-out scene, the text that edits it, what must be found (in the scene's object order), the object the
    text edits ("edited") and every object it changes ("changed")."""
    rng = np.random.default_rng(7_000_000 + 1000 * ALL_FAMILIES.index(family) + index)
    if family in HARD_FAMILIES:
        return _hard_case(family, index, rng)
    colours, shapes = list(COLOURS), list(SHAPES)
    c, s = colours[rng.integers(8)], shapes[rng.integers(6)]
    other_c = [x for x in colours if x != c][rng.integers(7)]
    other_s = [x for x in shapes if x != s][rng.integers(5)]
    size = "small" if family == "two attributes" else "large"
    radius = 0.12 if size == "small" else 0.21
    first = SceneObject(s, c, size, 0.3 if family == "two objects" else 0.5, 0.5, radius, float(rng.uniform(-.3, .3)))
    objects = [first]
    if family == "colour":
        text, want = _a(f"{other_c} {s}"), [(f"{other_c} {s}", None)]
    elif family == "shape":
        text, want = _a(f"{c} {other_s}"), [(f"{c} {other_s}", None)]
    elif family == "two attributes":
        text, want = f"a large {other_c} {s}", [(f"{other_c} {s}", "large")]
    else:
        second_c = [x for x in colours if x not in (c,)][rng.integers(7)]
        new_c = [x for x in colours if x not in (c, second_c)][rng.integers(6)]
        second = SceneObject(other_s, second_c, "large", 0.72, 0.5, 0.19, float(rng.uniform(-.3, .3)))
        objects.append(second)
        text = f"{_a(f'{c} {s}')} and {_a(f'{new_c} {other_s}')}"
        want = [(f"{c} {s}", None), (f"{new_c} {other_s}", None)]
    edited = len(objects) - 1
    return {"scene": Scene(objects, seed=_scene_seed(family, index)), "text": text, "want": want, "edited": edited,
            "changed": [edited], "family": family}


def _hard_case(family: str, index: int, rng: np.random.Generator) -> dict:
    """The families where CLIP alone may fail: one object of three (its colour for even cases, its shape for odd
    ones; the text names all three), two objects whose colours the text swaps (SWAP_PAIRS: the scene shows the
    binding error), and one small object whose size, colour and shape all change."""
    angle = lambda: float(rng.uniform(-.3, .3))  # noqa: E731
    if family == "three objects":
        colours = [str(x) for x in rng.choice(list(COLOURS), 4, replace=False)]
        shapes = [str(x) for x in rng.choice(list(SHAPES), 4, replace=False)]
        objects = [SceneObject(shapes[i], colours[i], "small", 0.2 + 0.3 * i, float(rng.uniform(0.35, 0.65)), 0.13,
                               angle()) for i in range(3)]
        edited = int(rng.integers(3))
        labels = [f"{o.colour} {o.shape}" for o in objects]
        labels[edited] = f"{colours[3]} {shapes[edited]}" if index % 2 == 0 else f"{colours[edited]} {shapes[3]}"
        text = f"{_a(labels[0])}, {_a(labels[1])} and {_a(labels[2])}"
        want, changed = [(label, None) for label in labels], [edited]
    elif family == "colour swap":
        c1, s1, c2, s2 = SWAP_PAIRS[index % len(SWAP_PAIRS)]
        objects = [SceneObject(s1, c2, "large", 0.3, 0.5, 0.19, angle()),
                   SceneObject(s2, c1, "large", 0.72, 0.5, 0.19, angle())]
        text, want, edited, changed = f"{_a(f'{c1} {s1}')} and {_a(f'{c2} {s2}')}", \
            [(f"{c1} {s1}", None), (f"{c2} {s2}", None)], 0, [0, 1]
    else:
        c, s = list(COLOURS)[rng.integers(8)], SHAPES[rng.integers(6)]
        new_c = [x for x in COLOURS if x != c][rng.integers(7)]
        new_s = [x for x in SHAPES if x != s][rng.integers(5)]
        objects = [SceneObject(s, c, "small", 0.5, 0.5, 0.12, angle())]
        text, want, edited, changed = f"a large {new_c} {new_s}", [(f"{new_c} {new_s}", "large")], 0, [0]
    return {"scene": Scene(objects, seed=_scene_seed(family, index)), "text": text, "want": want, "edited": edited,
            "changed": changed, "family": family}


def swap_cases() -> list[tuple]:
    """Every colour pair and ordered shape pair (c1, s1, c2, s2) of the colour-swap selection."""
    import itertools

    return [(c1, s1, c2, s2) for c1, c2 in itertools.combinations(COLOURS, 2)
            for s1, s2 in itertools.permutations(SHAPES, 2)]


def binding_confusion(world, layouts: int = 2, cases: list[tuple] | None = None) -> list[tuple]:
    """How the bundled CLIP tells "a c1 s1 and a c2 s2" on its scene from the colour-swapped scene (c2 s1, c1 s2),
    for `cases` (default: every colour pair and ordered shape pair, `swap_cases`; two large objects at the
    colour-swap family's places, angle 0, on `layouts` selection backgrounds): (mean margin in cos, c1, s1, c2, s2),
    smallest (most confused) first."""
    import torch

    from ntlb.models.features import image_features, text_features
    from ntlb.world.scene import render

    cases = swap_cases() if cases is None else list(cases)

    def picture(left: tuple, right: tuple, seed: int):
        objects = [SceneObject(left[1], left[0], "large", 0.3, 0.5, 0.19),
                   SceneObject(right[1], right[0], "large", 0.72, 0.5, 0.19)]
        return torch.from_numpy(render(Scene(objects, seed=seed), SIZE)[0]).permute(2, 0, 1).float() / 255

    with torch.no_grad():
        texts = text_features(world, [f"a {c1} {s1} and a {c2} {s2}" for c1, s1, c2, s2 in cases])
        margins = torch.zeros(len(cases))
        for layout in range(layouts):
            seed = SWAP_SELECTION_SEED + layout
            true = torch.stack([picture((c1, s1), (c2, s2), seed) for c1, s1, c2, s2 in cases])
            swapped = torch.stack([picture((c2, s1), (c1, s2), seed) for c1, s1, c2, s2 in cases])
            features = [image_features(world, world.normalize(x).to(world.dtype)) for x in (true, swapped)]
            margins += ((features[0] - features[1]) * texts).sum(-1).float().cpu() / layouts
    return sorted((float(m), *case) for m, case in zip(margins.tolist(), cases))


def partial_scores(world, family: str, index: int) -> dict[str, float]:
    """The bundled CLIP's scaled score of the case's text on the scene with part of the edit done: for "size +
    colour + shape" every subset of C (colour), S (shape), Z (size; "-" the start, "CSZ" the true edit); for
    "colour swap" the start, the true swap and both objects in either colour (the one-object steps between them);
    for "three objects" the start and the true edit.
    Shows whether single changes lead towards the edit (a path the optimiser can follow)."""
    import dataclasses
    import itertools

    import torch

    from ntlb.models.features import image_features, text_features
    from ntlb.world.scene import render

    case = edit_case(family, index)
    scene, objects = case["scene"], case["scene"].objects
    variants = {}
    if family == "size + colour + shape":
        colour, shape = case["want"][0][0].split()
        for subset in itertools.product((0, 1), repeat=3):
            change = {**({"colour": colour} if subset[0] else {}), **({"shape": shape} if subset[1] else {}),
                      **({"radius": 0.21, "size": "large"} if subset[2] else {})}
            name = "".join(k for k, used in zip("CSZ", subset) if used) or "-"
            variants[name] = [dataclasses.replace(objects[0], **change)]
    elif family == "colour swap":
        c1, c2 = (label.split()[0] for label, _ in case["want"])
        for name, (x, y) in (("start", (c2, c1)), ("true", (c1, c2)), (f"both {c1}", (c1, c1)),
                             (f"both {c2}", (c2, c2))):
            variants[name] = [dataclasses.replace(objects[0], colour=x), dataclasses.replace(objects[1], colour=y)]
    elif family == "three objects":
        colour, shape = case["want"][case["edited"]][0].split()
        edited = list(objects)
        edited[case["edited"]] = dataclasses.replace(objects[case["edited"]], colour=colour, shape=shape)
        variants = {"start": list(objects), "true": edited}
    else:
        raise ValueError(f"no partial edits for {family!r}")
    pictures = torch.stack([torch.from_numpy(render(Scene(v, scene.seed, scene.style), SIZE)[0]).permute(2, 0, 1)
                            for v in variants.values()]).float() / 255
    with torch.no_grad():
        scores = image_features(world, world.normalize(pictures).to(world.dtype)) @ \
            text_features(world, [case["text"]]).T * world.logit_scale
    return {name: round(float(v), 2) for name, v in zip(variants, scores[:, 0].tolist())}


@functools.cache
def _world():
    import ntlb

    return ntlb.load_model()


def _edit(job: tuple) -> str:
    import torch
    from PIL import Image

    from ntlb.generators import create_generator
    from ntlb.tasks.guidance.editing import EditConfig, edit
    from ntlb.world.scene import render

    family, index, steps, folder, generator, weight, score, sweep_samples = job
    torch.set_num_threads(1)
    if not (Path(folder) / "metrics.json").is_file() and not (Path(folder) / "refused.json").is_file():
        case = edit_case(family, index)
        picture = Image.fromarray(render(case["scene"], SIZE)[0])
        try:
            result = edit(_world(), create_generator(generator, (SIZE, SIZE)), picture, case["text"], folder,
                          EditConfig(steps=steps, snapshot_every=steps, expl_weight=weight, word_score=score,
                                     sweep_samples=sweep_samples),
                          progress=False)
        except NtlbError as error:  # the generator cannot read the scene (world-render's encoder): kept as refused
            write_json_atomic(Path(folder) / "refused.json", {"error": str(error)})
            return folder
        _save_images(result["images"], Path(folder) / "images.pt")
    return folder


def _save_images(images, path: Path) -> None:
    import io

    import torch

    from ntlb.io import write_bytes_atomic

    buffer = io.BytesIO()
    torch.save(images.cpu(), buffer)
    write_bytes_atomic(path, buffer.getvalue())


def _final_images(folder: Path):
    """The run's final images (the sweep's in lambda order)."""
    import torch

    return torch.load(folder / "images.pt")


def score_edit(case: dict, image, original, masks) -> dict:
    """Quality and identity of one edited image (3, H, W) against the scene it came from."""
    from ntlb.metrics.boxes import box_iou
    from ntlb.world.detector import WorldDetector
    from ntlb.world.scene import box_of

    found = WorldDetector()(image)
    boxes = [box_of(m) for m in masks]
    ok, kept = True, True
    for position, (label, size) in enumerate(case["want"]):
        hits = [d for d in found if d.label == label]
        if size == "large":
            hits = [d for d in hits if max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= LARGE_SIDE]
        ok &= bool(hits)
        original_box = boxes[position]
        if case["family"] in RESIZED:
            centre = np.array([(original_box[0] + original_box[2]) / 2, (original_box[1] + original_box[3]) / 2])
            near = [d for d in hits if np.hypot(*(np.array([(d.box[0] + d.box[2]) / 2,
                                                              (d.box[1] + d.box[3]) / 2]) - centre)) <= 6]
            kept &= bool(near)
        else:
            kept &= any(box_iou(d.box, original_box) >= 0.5 for d in hits)
    objects = case["scene"].objects
    unchanged = all(any(d.label == f"{objects[i].colour} {objects[i].shape}" and box_iou(d.box, boxes[i]) >= 0.5
                        for d in found) for i in case["changed"])  # every changed object still as it was
    outside = np.ones((SIZE, SIZE), dtype=bool)
    for i in case["changed"]:
        x0, y0, x1, y1 = boxes[i]
        outside[y0:y1, x0:x1] = False
    change = float((image - original).abs().mean(dim=0).numpy()[outside].mean())
    return {"quality": bool(ok), "identity": bool(kept and ok), "kept": bool(kept), "unchanged": bool(unchanged),
            "outside_change": change}


def edit_records(cases: dict) -> list[dict]:
    """Per edit run (sweep): its case, lambdas, chosen lambda and each lambda's scores (cases the generator refused
    to read are left out: `refused`)."""
    import torch

    from ntlb.world.scene import render

    records = []
    for (family, index), folder in cases.items():
        if (folder / "refused.json").is_file():
            continue
        case = edit_case(family, index)
        picture, masks = render(case["scene"], SIZE)
        original = torch.from_numpy(picture).permute(2, 0, 1).float() / 255
        metrics = json.loads((folder / "metrics.json").read_text())
        images = _final_images(folder)
        lambdas = [row["expl_weight"] for row in metrics["expl_weights"]]
        scores = [score_edit(case, images[i], original, masks) for i in range(len(lambdas))]
        records.append({"family": family, "index": index, "text": case["text"], "lambdas": lambdas,
                        "chosen": metrics["chosen_expl_weight"], "automatic": metrics["automatic"], "scores": scores,
                        "word_score": metrics["word_score"], "words_before": metrics["before"]["words"],
                        "clip": [r["clip"] for r in metrics["expl_weights"]]})
    return records


def edit_table(runs: dict[str, dict], families: tuple[str, ...]) -> tuple[dict, dict]:
    """Rows x families of quality, identity, unchanged, pixel change, and the per-run records, from one sweep per
    word score (`runs`: word score -> its cases' folders). lambda = 0 is read from the first score's sweep (each
    sweep holds it; `lambda0_agree` counts the cases where the others' lambda = 0 scores the same)."""
    records = {score: edit_records(cases) for score, cases in runs.items()}
    first = next(iter(records.values()))
    rows = {"lambda = 0 (CLIP alone)": _summary(first, lambda r: 0.0, families)}
    for score, scored in records.items():
        if not all(r["automatic"] for r in scored):  # --expl-weight N: the rows lambda = 0 and N of one run
            weight = max(scored[0]["lambdas"])
            rows[f"{score}, lambda = {weight:g}"] = _summary(scored, lambda r: max(r["lambdas"]), families)
            continue
        changed = [r for r in scored if r["chosen"] != 0.0]
        rows[f"{score}, automatic lambda"] = _summary(scored, lambda r: r["chosen"], families)
        rows[f"{score}, lambda = 1"] = _summary(scored, lambda r: 1.0, families)
        rows[f"lambda = 0, where {score} auto chose lambda != 0"] = _summary(changed, lambda r: 0.0, families)
        rows[f"{score} auto, where it chose lambda != 0"] = _summary(changed, lambda r: r["chosen"], families)
    agree = {score: sum(a["scores"][a["lambdas"].index(0.0)] == b["scores"][b["lambdas"].index(0.0)]
                        for a, b in zip(first, scored)) for score, scored in records.items()}
    refused = [f"{family} {index}" for (family, index), folder in next(iter(runs.values())).items()
               if (folder / "refused.json").is_file()]
    return rows, {"records": records, "lambda0_agree": agree, "cases": len(first), "refused": refused,
                  "paired": paired_counts(records, families)}


def paired_counts(records: dict[str, list[dict]], families: tuple[str, ...]) -> dict:
    """Per word score and family, paired by case against lambda = 0 (quality): cases the score's automatic lambda
    and its lambda = 1 (or the one lambda of --expl-weight N) edit correctly where lambda = 0 does not (wins), and
    the reverse (losses)."""
    out = {}
    for score, scored in records.items():
        for family in families:
            cell = {}
            picks = (("auto", lambda r: r["chosen"]), ("lambda 1", lambda r: 1.0)) \
                if all(r["automatic"] for r in scored) else ((f"lambda {max(scored[0]['lambdas']):g}",
                                                               lambda r: max(r["lambdas"])),)
            for name, pick in picks:
                pairs = [(r["scores"][r["lambdas"].index(0.0)]["quality"], r["scores"][r["lambdas"].index(pick(r))]
                          ["quality"]) for r in scored if r["family"] == family and pick(r) in r["lambdas"]]
                cell[name] = {"wins": sum(b and not a for a, b in pairs), "losses": sum(a and not b for a, b in pairs),
                              "n": len(pairs)}
            out.setdefault(score, {})[family] = cell
    return out


def _summary(records: list[dict], pick, families: tuple[str, ...] = FAMILIES) -> dict:
    out = {}
    for family in families:
        chosen = [r["scores"][r["lambdas"].index(pick(r))] for r in records
                  if r["family"] == family and pick(r) in r["lambdas"]]
        out[family] = {"n": len(chosen),
                       **{key: float(np.mean([c[key] for c in chosen])) if chosen else float("nan")
                          for key in ("quality", "identity", "unchanged", "outside_change")}}
    return out


GENERATION_ROWS = {  # row: (method, word score (None: the default), lambda); generation has no automatic lambda
    "clip": ("clip", None, 0.0), "ntlb": ("ntlb", None, 1.0),
    **{f"{score}-{weight:g}": ("ntlb", score, weight) for score in ("paper", "deletion") for weight in (1.0, 3.0)}}
UNREFINED = "-unrefined"  # a row's suffix: world-render without its discrete refinement (refine=0)
GENERATION_ROWS.update({row + UNREFINED: setting for row, setting in list(GENERATION_ROWS.items())})


def _generate(job: tuple) -> str:
    import torch

    from ntlb.generators import create_generator
    from ntlb.tasks.guidance.editing import GenerateConfig, generate_from_text

    row, text, seed, steps, folder, generator = job
    method, score, weight = GENERATION_ROWS[row]
    torch.set_num_threads(1)
    if not (Path(folder) / "metrics.json").is_file():
        config = GenerateConfig(method=method, steps=steps, seed=seed, views=2, candidates=8, snapshot_every=steps,
                                expl_weight=weight, **({"word_score": score} if score else {}))
        options = {"refine": 0} if row.endswith(UNREFINED) and generator == "world-render" else {}
        generate_from_text(_world(), create_generator(generator, (SIZE, SIZE), seed=seed, **options), text, folder,
                           config, progress=False)
    return folder


def _row_folder(row: str) -> str:
    """The cache folder of a generation row, named by its word score (the default's may change)."""
    method, score, weight = GENERATION_ROWS[row]
    suffix = UNREFINED if row.endswith(UNREFINED) else "-refined"  # world-render's rows (others ignore refine)
    if method == "clip":
        return "clip" + suffix
    return f"{score or WORD_SCORE_DEFAULT}-{weight:g}{suffix}"


def prompts(count: int) -> list[tuple[str, list[str]]]:
    """Two-object prompts with distinct colours and shapes, and the two labels that must be found."""
    rng = np.random.default_rng(11)
    out = []
    while len(out) < count:
        c = rng.choice(list(COLOURS), 2, replace=False)
        s = rng.choice(list(SHAPES), 2, replace=False)
        out.append((f"{_a(f'{c[0]} {s[0]}')} and {_a(f'{c[1]} {s[1]}')}", [f"{c[0]} {s[0]}", f"{c[1]} {s[1]}"]))
    return out


def generation_table(runs: dict) -> dict:
    from PIL import Image

    from ntlb.world.detector import WorldDetector

    table = {}
    for method in dict.fromkeys(kind for kind, *_ in runs):
        both, any_one, words_before, words_after = [], [], [], []
        for (kind, text, labels, seed), folder in runs.items():
            if kind != method:
                continue
            image = np.asarray(Image.open(folder / "image.png"), dtype=np.float32)
            detected = [d.label for d in WorldDetector()(image)]
            both.append(all(label in detected for label in labels))
            any_one.append(any(label in detected for label in labels))
            metrics = json.loads((folder / "metrics.json").read_text())
            refined = (metrics.get("refinement") or {}).get("latents", [{}])[0]
            table.setdefault(f"{method}_runs", []).append(  # per run, for pairing rows by prompt
                {"text": text, "seed": seed, "both_found": both[-1], "one_found": any_one[-1], "detected": detected,
                 "refinement_changes": [f"slot {c['slot']} {c['attribute']} {c['from']} -> {c['to']}"
                                        for c in refined.get("changes", [])]})
            content = set(metrics["semantic_words"])
            words_before.append(np.mean([r for w, r in metrics["before"]["words"] if w in content]))
            words_after.append(np.mean([r for w, r in metrics["after"]["words"] if w in content]))
            table.setdefault(f"{method}_by_seed", {}).setdefault(seed, []).append(both[-1])
        table[method] = {"runs": len(both), "both_found": float(np.mean(both)), "one_found": float(np.mean(any_one)),
                         "content_word_relevance_before": float(np.mean(words_before)),
                         "content_word_relevance_after": float(np.mean(words_after))}
        by_seed = table.pop(f"{method}_by_seed")
        table[method]["both_found_std_over_seeds"] = float(np.std([np.mean(v) for v in by_seed.values()]))
        table[method]["runs_detail"] = table.pop(f"{method}_runs")
    return table


def _blend(job: tuple) -> str:
    import torch
    from PIL import Image

    from ntlb.generators import create_generator
    from ntlb.tasks.guidance.blending import BlendConfig, blend
    from ntlb.world.scene import render

    target, sources, steps, folder, generator = job
    torch.set_num_threads(1)
    if not (Path(folder) / "metrics.json").is_file():
        pictures = [Image.fromarray(render(scene, SIZE)[0]) for scene in sources]
        result = blend(_world(), create_generator(generator, (SIZE, SIZE)), pictures,
                       Image.fromarray(render(target, SIZE)[0]), folder, BlendConfig(steps=steps, snapshot_every=steps),
                       progress=False)
        _save_images(result["images"], Path(folder) / "images.pt")
    return folder


def blend_cases(count: int, per_target: int = 4) -> list[tuple]:
    rng = np.random.default_rng(13)
    cases = []
    for i in range(count):
        colour = list(COLOURS)[rng.integers(8)]
        target = Scene([SceneObject("circle", colour, "large", 0.5, 0.5, 0.21)], seed=2 * 10**8 + 95_000 + i)
        sources = []
        for j in range(per_target):
            shape = [s for s in SHAPES if s != "circle"][rng.integers(5)]
            other = [c for c in COLOURS if c != colour][rng.integers(7)]
            sources.append(Scene([SceneObject(shape, other, "large", 0.5, 0.5, 0.21, float(rng.uniform(-.3, .3)))],
                                 seed=2 * 10**8 + 96_000 + 10 * i + j))
        cases.append((target, sources))
    return cases


def blend_table(cases: list[tuple], folders: list[Path]) -> dict:
    from ntlb.world.detector import WorldDetector

    hits, before, after = [], [], []
    for (target, sources), folder in zip(cases, folders):
        metrics = json.loads((folder / "metrics.json").read_text())
        before += metrics["cos_to_target_before"]
        after += metrics["cos_to_target_after"]
        for scene, image in zip(sources, _final_images(folder)):
            labels = {d.label for d in WorldDetector()(image)}
            hits.append(f"{target.objects[0].colour} {scene.objects[0].shape}" in labels)
    return {"transfers": len(hits), "target_colour_with_source_shape": float(np.mean(hits)),
            "cos_to_target_before": float(np.mean(before)), "cos_to_target_after": float(np.mean(after))}


def examples_figure(cases: dict, families: tuple[str, ...], path: Path, label: str = "ntlb") -> None:
    """Fig. 3 style: per family one scene (the first where lambda = 0 and ntlb differ in quality, else the first where
    lambda = 0 misses the requested objects, else the first), its lambda = 0 edit and ntlb's edit (the automatic
    lambda, or the one lambda of --expl-weight N) with `cases`' word score, each titled with whether the detector
    finds the edit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntlb.world.scene import render

    records = {(r["family"], r["index"]): r for r in edit_records(cases)}
    fig, axes = plt.subplots(len(families), 3, figsize=(7, 2.4 * len(families)), squeeze=False)
    for row, family in enumerate(families):
        indices = [i for fam, i in cases if fam == family]
        quality = {i: [s["quality"] for s in records[family, i]["scores"]] if (family, i) in records else [True]
                   for i in indices}  # (refused cases are never shown)
        chosen = {i: records[family, i]["lambdas"].index(records[family, i]["chosen"]) for i in indices
                  if (family, i) in records}
        index = next((i for i in chosen if quality[i][0] != quality[i][chosen[i]]),
                     next((i for i in chosen if not quality[i][0]), next(iter(chosen))))
        case, record, folder = edit_case(family, index), records[family, index], cases[family, index]
        images = _final_images(folder)
        chosen = record["lambdas"].index(record["chosen"])
        panels = [(render(case["scene"], SIZE)[0], f"input\n'{case['text']}'"),
                  (images[0].permute(1, 2, 0).numpy(), "lambda = 0 (CLIP alone)", record["scores"][0]),
                  (images[chosen].permute(1, 2, 0).numpy(),
                   f"{label} ({'auto ' if record['automatic'] else ''}lambda = {record['chosen']:g})",
                   record["scores"][chosen])]
        for column, (picture, title, *score) in enumerate(panels):
            if score:
                title += "\nedit found" if score[0]["quality"] else "\nedit not found"
            axes[row][column].imshow(picture)
            axes[row][column].set_title(title, fontsize=7)
            axes[row][column].axis("off")
    save_figure_atomic(fig, path)


def _figure_grid(rows: list[list[tuple]], path: Path, width: float = 2.3) -> None:
    """Rows of (picture (H, W, 3), title) panels, saved atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(width * columns, 2.4 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(columns):
            axes[r][c].axis("off")
            if c < len(row):
                axes[r][c].imshow(row[c][0])
                axes[r][c].set_title(row[c][1], fontsize=7)
    save_figure_atomic(fig, path)


def generation_figure(runs: dict, path: Path, count: int = 4) -> None:
    """Multi-word generation: per prompt (seed 0) CLIP alone beside ntlb, with what the detector found."""
    from PIL import Image

    from ntlb.world.detector import WorldDetector

    rows = []
    texts = list(dict.fromkeys(text for (_, text, _, seed) in runs if seed == min(s for *_, s in runs)))[:count]
    for text in texts:
        row = []
        for method in dict.fromkeys(kind for kind, *_ in runs):
            folder = next(f for (m, t, _, s), f in runs.items() if m == method and t == text)
            image = np.asarray(Image.open(folder / "image.png"))
            detections = WorldDetector()(image.astype(np.float32))
            labels = next(lab for (m, t, lab, _), _f in runs.items() if m == method and t == text)
            both = all(label in {d.label for d in detections} for label in labels)
            row.append((image, f"{method}: '{text}'\nboth found: {'yes' if both else 'no'} "
                               f"({len(detections)} detections)"))
        rows.append(row)
    _figure_grid(rows, path, width=3.2)


def blend_figure(cases: list[tuple], folders: list[Path], path: Path, count: int = 2) -> None:
    """Essence transfer: the target, then each source above its transferred image."""
    from ntlb.world.scene import render

    rows = []
    for (target, sources), folder in list(zip(cases, folders))[:count]:
        images = _final_images(folder)
        rows.append([(render(target, SIZE)[0], "target")] + [(render(s, SIZE)[0], "source") for s in sources])
        rows.append([(np.ones((SIZE, SIZE, 3)), "")] +
                    [(image.permute(1, 2, 0).numpy(), "transferred") for image in images])
    _figure_grid(rows, path)


def _pool(function, jobs: list, workers: int, desc: str) -> None:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for _ in tqdm(pool.imap_unordered(function, jobs), total=len(jobs), desc=desc, unit="run"):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=20, help="scenes per editing family")
    parser.add_argument("--steps", type=int, default=100, help="optimisation steps of every run")
    parser.add_argument("--prompts", type=int, default=100, help="two-object prompts for multi-word generation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="generation seeds")
    parser.add_argument("--targets", type=int, default=10, help="essence-transfer targets (4 sources each)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--generation-rows", nargs="+", default=["clip", "ntlb"], choices=list(GENERATION_ROWS),
                        help="generation settings: clip (lambda = 0), ntlb (the default word score, lambda = 1), "
                             "or a word score and lambda (paper-1, deletion-3, ...); with -unrefined, world-render "
                             "without its discrete refinement")
    parser.add_argument("--parts", nargs="+", default=["edit", "generate", "blend"])
    parser.add_argument("--cache", default=str(ROOT / "runs" / "editing-results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-editing.json"))
    parser.add_argument("--generator", default="world-render", help="world-render (default) or world-vqgan")
    parser.add_argument("--expl-weight", default="auto", help="'auto' (the sweep) or one lambda, run beside 0")
    parser.add_argument("--sweep-samples", type=int, default=SWEEP_SAMPLES,
                        help="world-render's pictures per lambda and step in the automatic sweep (0: its own 8, the "
                             "full sweep)")
    parser.add_argument("--quick", action="store_true", help="2 scenes, 2 prompts, 1 seed, 1 target, 4 steps")
    parser.add_argument("--families", nargs="+", default=list(ALL_FAMILIES), choices=list(ALL_FAMILIES),
                        help="editing families (default: all)")
    parser.add_argument("--word-scores", nargs="+", default=[WORD_SCORE_DEFAULT], choices=list(WORD_SCORES),
                        help="editing: one sweep per word score, side by side (lambda = 0 read from the first)")
    parser.add_argument("--figure-tag", default="", help="appended to the figures' names (results-*-examples-TAG.png)")
    parser.add_argument("--swap-pairs", action="store_true",
                        help="only print the colour pairs the bundled CLIP confuses most (how SWAP_PAIRS was chosen)")
    parser.add_argument("--partial", type=int, default=0,
                        help="only print CLIP's score of partly done edits on this many cases of each family where "
                             "CLIP alone may fail (`partial_scores`)")
    args = parser.parse_args()
    if args.partial:
        for family in HARD_FAMILIES:
            for index in range(args.partial):
                print(family, index, edit_case(family, index)["text"], partial_scores(_world(), family, index))
        return
    if args.swap_pairs:
        for margin, *case in binding_confusion(_world())[:20]:
            print(f"{margin:+.4f}  a {case[0]} {case[1]} and a {case[2]} {case[3]}")
        return
    if args.quick:
        args.scenes, args.prompts, args.seeds, args.targets, args.steps = 2, 2, [0], 1, 4
    weight = None if args.expl_weight == "auto" else float(args.expl_weight)
    cache = Path(args.cache) / args.generator / f"steps{args.steps}"
    docs, tag = Path(args.out).parent, f"-{args.figure_tag}" if args.figure_tag else ""
    families = tuple(args.families)
    results = {"settings": vars(args)}
    if "edit" in args.parts:
        # the full sweep keeps the folders of the runs before --sweep-samples
        samples = f"-samples{args.sweep_samples}" if weight is None and args.sweep_samples else ""
        runs = {score: {(family, i): cache / f"edit-{args.expl_weight}{samples}-{score}"
                        / f"{family.replace(' ', '-')}-{i}"
                        for family in families for i in range(args.scenes)} for score in args.word_scores}
        jobs = [(f, i, args.steps, str(folder), args.generator, weight, score, args.sweep_samples)
                for score, cases in runs.items() for (f, i), folder in cases.items()]
        # case by case (every family and score of scene 0 first): a run stopped early leaves complete first scenes
        jobs.sort(key=lambda job: (job[1], families.index(job[0]), args.word_scores.index(job[6])))
        _pool(_edit, jobs, args.jobs, "edits")
        rows, details = edit_table(runs, families)
        results["editing"] = rows
        results["editing_runs"] = details
        shown = args.word_scores[-1]
        examples_figure(runs[shown], families, docs / f"results-editing-examples{tag}.png", f"ntlb, {shown}")
        print("\n### editing: quality / identity / edited object unchanged / mean pixel change outside its box\n")
        print("| row | " + " | ".join(families) + " |\n|---|" + "---|" * len(families))
        for row, cells in rows.items():
            print(f"| {row} | " + " | ".join(f"{100 * v['quality']:.0f} / {100 * v['identity']:.0f} / "
                                              f"{100 * v['unchanged']:.0f} / {v['outside_change']:.3f} (n {v['n']})"
                                              for v in cells.values()) + " |")
        print("\npaired by case against lambda = 0 (wins / losses):", json.dumps(details["paired"]))
        print("lambda = 0 identical across the sweeps:", details["lambda0_agree"], "of", details["cases"])
        print("refused by the generator (left out):", details["refused"] or "none")
    if "generate" in args.parts:
        runs = {(row, text, tuple(labels), seed): cache / "generate" / _row_folder(row) / f"prompt{i}-seed{seed}"
                for i, (text, labels) in enumerate(prompts(args.prompts)) for seed in args.seeds
                for row in args.generation_rows}
        _pool(_generate, [(m, t, s, args.steps, str(f), args.generator) for (m, t, _, s), f in runs.items()],
              args.jobs, "generations")
        results["generation"] = generation_table(runs)
        generation_figure(runs, docs / f"results-generation-examples{tag}.png")
        print("\n### multi-word generation\n")
        print(json.dumps(results["generation"], indent=1))
    if "blend" in args.parts:
        cases = blend_cases(args.targets)
        folders = [cache / "blend" / f"target{i}" for i in range(len(cases))]
        _pool(_blend, [(t, s, args.steps, str(f), args.generator) for (t, s), f in zip(cases, folders)], args.jobs,
              "transfers")
        results["blend"] = blend_table(cases, folders)
        blend_figure(cases, folders, docs / f"results-blend-examples{tag}.png")
        print("\n### essence transfer\n")
        print(json.dumps(results["blend"], indent=1))
    write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
