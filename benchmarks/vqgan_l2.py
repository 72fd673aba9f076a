"""Is the true edit the optimum of the editing loss? The l2 weight of the world VQGAN's latent, derived and checked.

    python benchmarks/vqgan_l2.py [--scenes 5] [--steps 100] [--weights 0.008 default] [--starts 20]
                                  [--generate 0] [--no-optimise]

The editing loss at lambda = 0 is StyleCLIP's `L(z) = 1 - cos(G(z), t) + l2 ||z - z0||^2`. An edit can only be found
if the *true edit* -- z*, the VQGAN encoding of the correctly edited world scene (`true_edit`: the scene redrawn with
the requested colour, shape or size, same place and background) -- has a lower loss than the alternatives the
optimiser has: the start itself (z0, no edit) and "start + patch", the latent the optimiser ends at (a run of
`ntlb.tasks.guidance.editing.edit` at lambda = 0 with that l2). Per weight this prints, over the editing benchmark's
cases (benchmarks/editing_results.py, the first --scenes of each family): how often L(z*) < L(z0), how often
L(z*) < L(z_patch), and how often the optimiser's own result is a correct edit (the world detector, as the benchmark
scores it).

The derivation (`ntlb_research.vqgan_training.calibrate_l2`, on 128 scenes of the train seed space, none of them a
benchmark case): l2 = mean CLIP gain of a scene's own caption over unrelated scenes' / mean squared latent distance
between unrelated scenes. Also: how many latent cells a one-object change moves (`changed_cells`), and generation's
start drawn from the bank of encoded world scenes against random codes (`start_table`) and, with --generate,
generation itself from both (`generation_runs`). Writes
docs/results-vqgan-l2.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from editing_results import FAMILIES, SIZE, edit_case, score_edit

from ntlb.io import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def true_edit(case: dict):
    """The case's scene as the text asks it: the edited object with the requested colour and shape (and the large
    radius where "large" is asked), in its place, on the same background."""
    from ntlb.world.scene import Scene

    scene, index = case["scene"], case["edited"]
    label, size = case["want"][index]
    colour, shape = label.split()
    objects = list(scene.objects)
    large = {"size": "large", "radius": 0.21} if size == "large" else {}
    objects[index] = dataclasses.replace(objects[index], colour=colour, shape=shape, **large)
    return Scene(objects, scene.seed, scene.style)


def picture(scene) -> torch.Tensor:
    """(1, 3, SIZE, SIZE) in [0, 1] of a scene."""
    from ntlb.world.scene import render

    return torch.from_numpy(render(scene, SIZE)[0]).permute(2, 0, 1)[None].float() / 255


def cosines(adapter, generator, latents: torch.Tensor, text: str) -> torch.Tensor:
    """cos(G(z), t) of latents (N, ...): the CLIP term of the editing loss, 1 - cos."""
    from ntlb.models.inputs import prepare_texts

    tokens = prepare_texts(adapter, [text])
    with torch.no_grad():
        texts = F.normalize(adapter.encode_text(tokens.ids, tokens.eot).features.float(), dim=-1)
        pixels = adapter.normalize(generator.image_of(latents).to(adapter.dtype))
        images = F.normalize(adapter.encode_image(pixels).features.float(), dim=-1)
    return (images @ texts.T)[:, 0]


def losses(cos: torch.Tensor, latents: torch.Tensor, z0: torch.Tensor, l2: float) -> torch.Tensor:
    """StyleCLIP's editing loss at lambda = 0 (ntlb.tasks.guidance.editing.edit's, identity off)."""
    return 1 - cos + l2 * (latents - z0).pow(2).flatten(1).sum(dim=1)


def check_case(adapter, family: str, index: int, weights: list[float], steps: int, cache: Path | None) -> dict:
    """One benchmark case: the true edit's and the start's loss under each weight, and (with `cache`) the
    optimiser's result under each weight."""
    from ntlb.generators import create_generator
    from ntlb.tasks.guidance.editing import EditConfig, edit
    from ntlb.world.scene import render

    case = edit_case(family, index)
    generator = create_generator("world-vqgan", (SIZE, SIZE))
    z0, z_true = generator.encode(picture(case["scene"])), generator.encode(picture(true_edit(case)))
    cos = cosines(adapter, generator, torch.cat([z0, z_true]), case["text"])
    record = {"family": family, "index": index, "text": case["text"], "cos_start": float(cos[0]),
              "cos_true": float(cos[1]), "distance_true": float((z_true - z0).pow(2).sum()),
              "cells_changed": int((generator.vqgan.nearest_codes(z_true) != generator.vqgan.nearest_codes(z0)).sum()),
              "weights": {}}
    original, masks = render(case["scene"], SIZE)
    original = torch.from_numpy(original).permute(2, 0, 1).float() / 255
    for l2 in weights:
        start, true = losses(cos, torch.cat([z0, z_true]), z0, l2).tolist()
        row = {"loss_start": start, "loss_true": true, "true_beats_start": true < start}
        if cache is not None:
            folder = cache / f"l2-{l2:g}" / f"{family.replace(' ', '-')}-{index}"
            optimised = create_generator("world-vqgan", (SIZE, SIZE))
            if (folder / "latent.pt").is_file():
                z_patch = torch.load(folder / "latent.pt")
            else:
                edit(adapter, optimised, picture(case["scene"]), case["text"], folder,
                     EditConfig(steps=steps, l2=l2, expl_weight=0.0, snapshot_every=steps), progress=False)
                z_patch = optimised.latent.detach().clone()
                torch.save(z_patch, folder / "latent.pt")
            cos_patch = cosines(adapter, optimised, z_patch, case["text"])
            patch = float(losses(cos_patch, z_patch, z0, l2)[0])
            with torch.no_grad():
                image = optimised.image_of(z_patch)[0]
            score = score_edit(case, image, original, masks)
            row.update({"loss_patch": patch, "cos_patch": float(cos_patch[0]),
                        "distance_patch": float((z_patch - z0).pow(2).sum()), "true_beats_patch": true < patch,
                        "optimiser_quality": score["quality"], "optimiser_unchanged": score["unchanged"]})
        record["weights"][f"{l2:g}"] = row
    return record


def changed_cells(generator, count: int) -> dict:
    """Over the first `count` cases of each family: latent cells whose code changes when the scene is re-encoded
    with the one edited object changed, against cells (4 x 4 pixels at f = 4) where the drawn picture changes."""
    codes, drawn = [], []
    for family in FAMILIES:
        for index in range(count):
            case = edit_case(family, index)
            before, after = picture(case["scene"]), picture(true_edit(case))
            with torch.no_grad():
                z0, z1 = generator.encode(before), generator.encode(after)
            codes.append(int((generator.vqgan.nearest_codes(z1) != generator.vqgan.nearest_codes(z0)).sum()))
            f = generator.vqgan.factor
            drawn.append(int(F.max_pool2d((after - before).abs().amax(dim=1, keepdim=True), f).gt(0).sum()))
    cells = generator.grid[0] * generator.grid[1]
    return {"cases": len(codes), "cells": cells, "codes_changed": [min(codes), float(np.median(codes)), max(codes)],
            "pixels_changed": [min(drawn), float(np.median(drawn)), max(drawn)]}


def start_table(adapter, count: int, candidates: int = 8) -> dict:
    """Generation's start (the best of `candidates` by CLIP cosine, `_best_start`) for `count` two-object prompts of
    the generation benchmark, drawn from the bank of encoded world scenes against uniformly random codes: its
    cosine, and how often the world detector finds one / both requested objects and anything at all in it."""
    from editing_results import prompts

    from ntlb.generators import create_generator
    from ntlb.models.inputs import prepare_texts
    from ntlb.tasks.guidance.editing import GenerateConfig, _best_start, word_explainer
    from ntlb.world.detector import WorldDetector

    generator = create_generator("world-vqgan", (SIZE, SIZE))
    explainer = word_explainer("chefer2021", "cosine")
    table = {}
    for source in ("bank", "random codes"):
        if source == "random codes":
            generator.bank = None  # sample_latent falls back to random codes
        rows = []
        for text, labels in prompts(count):
            start = _best_start(adapter, generator, explainer, prepare_texts(adapter, [text]),
                                lambda e: (e.logits[:, 0], e.logits[:, 0] * 0), 0.0,
                                GenerateConfig(candidates=candidates))
            with torch.no_grad():
                image = generator.image_of(start)
            found = {d.label for d in WorldDetector()(image[0])}
            rows.append((float(cosines(adapter, generator, start, text)[0]), sum(lab in found for lab in labels),
                         len(found)))
        table[source] = {"prompts": count, "cosine": float(np.mean([r[0] for r in rows])),
                         "one_found": float(np.mean([r[1] >= 1 for r in rows])),
                         "both_found": float(np.mean([r[1] == 2 for r in rows])),
                         "any_object": float(np.mean([r[2] > 0 for r in rows]))}
    return table


def generation_runs(adapter, count: int, steps: int, cache: Path) -> dict:
    """Multi-word generation (`generate_from_text`, the generation benchmark's settings: 8 candidates, 2 views) for
    `count` two-object prompts, CLIP alone and ntlb, started from the bank against random codes: how often the
    detector finds both requested objects, and one of them."""
    from editing_results import prompts

    from ntlb.generators import create_generator
    from ntlb.tasks.guidance.editing import GenerateConfig, generate_from_text
    from ntlb.world.detector import WorldDetector

    table = {}
    for source in ("bank", "random codes"):
        for method in ("clip", "ntlb"):
            found = []
            for index, (text, labels) in enumerate(prompts(count)):
                folder = cache / "generate" / source.replace(" ", "-") / method / f"prompt{index}"
                generator = create_generator("world-vqgan", (SIZE, SIZE))
                if source == "random codes":
                    generator.bank = None
                    generator.latent.data = generator.sample_latent(0)
                config = GenerateConfig(method=method, steps=steps, views=2, candidates=8, snapshot_every=steps)
                images = generate_from_text(adapter, generator, text, folder, config, progress=False)["images"]
                labels_found = {d.label for d in WorldDetector()(images[0])}
                found.append(sum(label in labels_found for label in labels))
            table[f"{source}, {method}"] = {"prompts": count, "both_found": float(np.mean([f == 2 for f in found])),
                                            "one_found": float(np.mean([f >= 1 for f in found]))}
            print(f"generation from {source}, {method}: {table[f'{source}, {method}']}", flush=True)
    return table


def summary(records: list[dict]) -> dict:
    """Per weight: counts of cases where the true edit wins, and the optimiser's edit quality."""
    out = {}
    for key in records[0]["weights"]:
        rows = [r["weights"][key] for r in records]
        out[key] = {"cases": len(rows), "true_beats_start": sum(r["true_beats_start"] for r in rows)}
        if "loss_patch" in rows[0]:
            out[key].update({
                "true_beats_patch": sum(r["true_beats_patch"] for r in rows),
                "true_beats_both": sum(r["true_beats_patch"] and r["true_beats_start"] for r in rows),
                "optimiser_quality": sum(r["optimiser_quality"] for r in rows),
                "optimiser_unchanged": sum(r["optimiser_unchanged"] for r in rows),
                "cos_patch_mean": float(np.mean([r["cos_patch"] for r in rows])),
                "distance_patch_mean": float(np.mean([r["distance_patch"] for r in rows]))})
    return out


def main() -> None:
    import ntlb
    from ntlb.generators import create_generator
    from ntlb_research.vqgan_training import calibrate_l2

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=5, help="cases per editing family")
    parser.add_argument("--steps", type=int, default=100, help="steps of the optimiser's run")
    parser.add_argument("--weights", nargs="+", default=["0.008", "default"],
                        help="l2 weights to compare ('default': world-vqgan's own)")
    parser.add_argument("--starts", type=int, default=20, help="two-object prompts for the generation-start table")
    parser.add_argument("--generate", type=int, default=0,
                        help="two-object prompts to generate from the bank and from random codes (0: none)")
    parser.add_argument("--no-optimise", action="store_true", help="only the true edit against the start")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "vqgan-l2"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-vqgan-l2.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    adapter = ntlb.load_model()
    generator = create_generator("world-vqgan", (SIZE, SIZE))
    weights = [generator.l2_weight if w == "default" else float(w) for w in args.weights]
    calibration = calibrate_l2(adapter, generator)
    print(f"derived l2: gain {calibration['gain']:.3f} / distance {calibration['distance']:.1f} = "
          f"{calibration['l2']:.2e} (world-vqgan's l2_weight: {generator.l2_weight:g})")
    cells = changed_cells(generator, 20)
    print(f"one-object change, {cells['cases']} cases: cells whose code changes (min, median, max) "
          f"{cells['codes_changed']} of {cells['cells']}; cells whose pixels change {cells['pixels_changed']}")
    starts = start_table(adapter, args.starts) if args.starts else {}
    for source, row in starts.items():
        print(f"generation start from {source}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()))
    generation = generation_runs(adapter, args.generate, args.steps, Path(args.cache)) if args.generate else {}
    cache = None if args.no_optimise else Path(args.cache) / f"steps{args.steps}"
    records = []
    for family in FAMILIES:
        for index in range(args.scenes):
            record = check_case(adapter, family, index, weights, args.steps, cache)
            records.append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "weights"}), flush=True)
            for key, row in record["weights"].items():
                print(f"  l2 {key}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in row.items()), flush=True)
    table = summary(records)
    print(json.dumps(table, indent=1))
    write_json_atomic(args.out, {"settings": vars(args), "calibration": calibration, "changed_cells": cells,
                                 "generation_starts": starts, "generation": generation,
                                 "summary": table,
                                 "records": records})


if __name__ == "__main__":
    main()
