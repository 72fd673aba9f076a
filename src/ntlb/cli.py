"""The `ntlb` command: explain images and texts, list models."""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from pathlib import Path

from tqdm import tqdm

from .errors import NtlbError


def _slug(text: str, limit: int = 32) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "text"


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="open_clip architecture (ViT-B-32), model-config .json, hf:<dir>, or a bundled "
                             "name; default: the bundled ntlb-world model")
    parser.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint path (.pt/.safetensors)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default: cpu)")


def _load(args: argparse.Namespace):
    from .models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(args.model, args.pretrained, device=args.device)


def _explain_in_batches(explainer, adapter, images: list[str], texts: list[str], batch_size: int):
    """(paths, explanation) per batch of images, each image encoded once for all texts."""
    import torch

    tokens = adapter.tokenizer(texts)
    chunks = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with torch.no_grad():
        return [(chunk, explainer(adapter, chunk, tokens))
                for chunk in tqdm(chunks, desc="explaining", unit="batch", disable=len(chunks) < 2)]


def _pair_record(explanation, b: int, t: int, image_path: str, index: int, text: str, out: Path) -> dict:
    """One pair's JSON record; writes its overlay PNG when the model gives image maps."""
    from .io import save_image_atomic
    from .viz import overlay

    words = explanation.words(b, t, normalize="visual")
    record = {
        "image": str(image_path), "text": text,
        "logit": float(explanation.logits[b, t]), "probability": float(explanation.probabilities()[b, t]),
        "words": [[w, r] for w, r in words], "overlay": None, "patch_map": None,
    }
    if explanation.has_image_maps():
        name = f"{index:03d}_{_slug(Path(image_path).stem, 24)}__{t:02d}_{_slug(text)}.png"
        save_image_atomic(out / name, overlay(explanation.originals[b], explanation.image[b, t],
                                              explanation.preprocess))
        record["overlay"] = name
        record["patch_map"] = [[round(float(v), 6) for v in row] for row in explanation.image[b, t]]
    return record


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import create
    from .io import write_json_atomic
    from .viz import explanation_grid, words_ansi
    from .viz.report import write_report

    if not args.text:
        raise NtlbError("no texts given: add at least one --text \"...\"")
    adapter = _load(args)
    explainer = create(args.method, start_layer_image=args.start_layer_image,
                       start_layer_text=args.start_layer_text, logit_mode=args.logit_mode)
    batches = _explain_in_batches(explainer, adapter, args.images, args.text, args.batch_size)
    notes = []
    if adapter.random_weights:
        notes.append(f"model {adapter.name} has random weights: the maps show the numerics, not meaning")
    if not batches[0][1].has_image_maps():
        notes.append(batches[0][1].image_note)
    if batches[0][1].text_note:
        notes.append(batches[0][1].text_note)
    out, records, offset = Path(args.out), [], 0
    for chunk, explanation in batches:
        for b, t in explanation.pair_indices():
            record = _pair_record(explanation, b, t, chunk[b], offset + b, args.text[t], out)
            records.append(record)
            if not args.quiet:
                print(f"{Path(chunk[b]).name} | {words_ansi(explanation.words(b, t))} | "
                      f"logit {record['logit']:.2f} p {record['probability']:.2f}")
        offset += len(chunk)
    if len(batches) == 1 and len(records) <= 64:
        explanation_grid(batches[0][1], out / "grid.png", texts=args.text)
    write_json_atomic(out / "explanations.json", {
        "model": adapter.name, "random_weights": adapter.random_weights, "method": args.method,
        "logit_mode": args.logit_mode, "start_layer_image": args.start_layer_image,
        "start_layer_text": args.start_layer_text, "texts": args.text, "notes": notes, "pairs": records,
    })
    write_report(out / "report.html", f"ntlb {args.method} on {adapter.name}", records, notes)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {len(records)} pairs to {out}/ (report.html, explanations.json"
          f"{', grid.png' if (out / 'grid.png').exists() else ''})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    from .explain import available, create
    from .io import write_json_atomic
    from .viz import method_comparison

    if not args.text:
        raise NtlbError("no texts given: add at least one --text \"...\"")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else available()
    unknown = [m for m in methods if m not in available()]
    if unknown:
        raise NtlbError(f"unknown explainer '{unknown[0]}': choose from {', '.join(available())}")
    adapter = _load(args)
    tokens = adapter.tokenizer(args.text)
    explanations, skipped = {}, {}
    for method in tqdm(methods, desc="explainers", unit="method"):
        try:
            with torch.no_grad():
                explanations[method] = create(method, logit_mode=args.logit_mode)(adapter, args.images, tokens)
        except NtlbError as error:  # e.g. clip_surgery on a ResNet tower: say so and compare the others
            skipped[method] = str(error)
    if not explanations:
        raise NtlbError(f"no explainer could run on {adapter.name}: {'; '.join(skipped.values())}")
    out = Path(args.out)
    figure = method_comparison(explanations, out / "compare.png", args.text)
    summary = {
        method: [{"image": args.images[b], "text": args.text[t], "words": e.words(b, t),
                  "text_note": e.text_note, "image_note": e.image_note} for b, t in e.pair_indices()]
        for method, e in explanations.items()
    }
    write_json_atomic(out / "compare.json", {"model": adapter.name, "methods": summary, "skipped": skipped})
    for method, reason in skipped.items():
        print(f"skipped {method}: {reason}")
    print(f"wrote {figure} and {out / 'compare.json'} ({len(explanations)} explainers)")
    return 0


def cmd_benchmark_explainers(args: argparse.Namespace) -> int:
    from .explain import available
    from .io import write_json_atomic, write_text_atomic
    from .metrics.explainer_benchmark import benchmark_explainers, comparison_figure, markdown_table

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else available()
    unknown = [m for m in methods if m not in available()]
    if unknown:
        raise NtlbError(f"unknown explainer '{unknown[0]}': choose from {', '.join(available())}")
    if args.count < 1:
        raise NtlbError(f"--count {args.count}: use at least 1 scene per setting")
    adapter = _load(args)
    results = benchmark_explainers(adapter, methods, count=args.count)
    results["model"] = adapter.name
    out = Path(args.out)
    write_json_atomic(out / "explainers.json", results)
    tables = "\n\n".join(f"### {setting.replace('_', ' ')} scenes\n\n{markdown_table(results, setting)}"
                          for setting in ("1_object", "2_object"))
    write_text_atomic(out / "explainers.md", tables + "\n")
    comparison_figure(adapter, methods, out / "explainers.png")
    print(tables)
    print(f"wrote {out}/explainers.json, explainers.md, explainers.png")
    return 0


def cmd_world_render(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    from PIL import Image

    from .io import save_image_atomic, write_text_atomic
    from .world import box_of, random_caption, random_scene, render

    out = Path(args.out)
    records = []
    for seed in tqdm(range(args.seed, args.seed + args.count), desc="rendering", disable=args.count < 50):
        scene = random_scene(seed, args.objects)
        image, masks = render(scene, args.size)
        name = f"scene_{seed:06d}.png"
        save_image_atomic(out / name, Image.fromarray(image))
        caption = random_caption(scene, np.random.default_rng(seed + 1))
        records.append({
            "image": name, "seed": seed, "caption": caption.text,
            "words": [[w.text, w.role, w.obj] for w in caption.words],
            "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "box": box_of(m)}
                        for o, m in zip(scene.objects, masks)],
        })
    write_text_atomic(out / "scenes.json", json.dumps(records, indent=1) + "\n")
    print(f"wrote {len(records)} scenes to {out}/ (scenes.json has captions, word roles and boxes)")
    return 0


def cmd_world_export(args: argparse.Namespace) -> int:
    from .world import export_classification

    root = export_classification(args.out, args.task, args.split, args.variant, args.per_class, args.size)
    print(f"wrote {args.task} {args.variant}/{args.split} to {root}/ (one folder per class, classnames.txt)")
    return 0


def cmd_world_train(args: argparse.Namespace) -> int:
    from .world.train import export_weights, train

    checkpoint = train(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device,
                       max_minutes=args.max_minutes, checkpoint_every=args.checkpoint_every, init=args.init)
    weights = export_weights(checkpoint, Path(args.out) / "weights.safetensors")
    print(f"checkpoint {checkpoint}, fp16 weights {weights}, loss curve {Path(args.out) / 'loss.png'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Render a world scene and explain it with its own captions and a wrong one."""
    from PIL import Image

    from .io import save_image_atomic
    from .world import COLOURS, describe, random_scene, relate, render

    scene = random_scene(args.seed, 2)
    image, _ = render(scene, 256)
    picture = Path(args.out) / "scene.png"
    save_image_atomic(picture, Image.fromarray(image))
    absent = next(c for c in COLOURS if c not in {o.colour for o in scene.objects})
    texts = [describe(scene, 0).text, describe(scene, 1).text, relate(scene, 0, 1, "left").text,
             f"a {absent} {scene.objects[0].shape}"]  # a colour that is not in the picture
    args.images, args.text = [str(picture)], texts
    return cmd_explain(args)


def cmd_models(args: argparse.Namespace) -> int:
    import open_clip

    from .models import bundled_models

    print("Bundled (load with no --model, or by name):")
    for name, entry in bundled_models().items():
        state = "trained weights" if entry["weights"] else "no weights yet: random init"
        print(f"  {name:<16} {entry['config'].name} ({state})")
    print("\nopen_clip architectures (--model NAME; add --pretrained TAG|PATH):")
    names = open_clip.list_models()
    print("  " + ", ".join(names))
    print("\nPretrained tags need a network or a filled open_clip cache; with neither, pass a checkpoint path.")
    print("Also: --model path/to/config.json (open_clip model config) and --model hf:<dir> (transformers CLIPModel).")
    return 0


def _add_explain_options(parser: argparse.ArgumentParser, default_out: str) -> None:
    from .explain import available

    parser.add_argument("--method", default="chefer2021", choices=available(), help="explainer (default chefer2021)")
    parser.add_argument("--start-layer-image", type=int, default=0,
                        help="first image layer used (negative counts from the end; -1 = last only)")
    parser.add_argument("--start-layer-text", type=int, default=0, help="first text layer used")
    parser.add_argument("--logit-mode", default="scaled", choices=["scaled", "cosine"])
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument("--quiet", action="store_true", help="do not print highlighted words")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntlb", description="CLIP explains its own similarity scores.")
    commands = parser.add_subparsers(dest="command", required=True)

    explain = commands.add_parser("explain", help="relevance maps and word relevance for images x texts",
                                  description="Explain the CLIP score of every image with every text.")
    explain.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    explain.add_argument("--text", action="append", default=[], help="a text to explain; repeat for more")
    _add_model_arguments(explain)
    _add_explain_options(explain, default_out="out/explain")
    explain.set_defaults(run=cmd_explain)

    compare = commands.add_parser("compare", help="the same images and texts under several explainers",
                                  description="One figure: rows are image-text pairs, columns are explainers.")
    compare.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    compare.add_argument("--text", action="append", default=[], help="a text to explain; repeat for more")
    compare.add_argument("--methods", default=None,
                         help="comma-separated explainers (default: all registered ones)")
    compare.add_argument("--logit-mode", default="scaled", choices=["scaled", "cosine"])
    compare.add_argument("--out", default="out/compare", help="output folder (default out/compare)")
    _add_model_arguments(compare)
    compare.set_defaults(run=cmd_compare)

    benchmark = commands.add_parser("benchmark", help="measure explainers on held-out world scenes",
                                    description="Benchmarks with known truth from the procedural world.")
    benchmark_commands = benchmark.add_subparsers(dest="benchmark_command", required=True)
    bench = benchmark_commands.add_parser(
        "explainers", help="localisation, faithfulness, word accuracy and time of every explainer",
        description="Pointing game, energy and Otsu IoU against the named object's mask, perturbation AUC on "
                    "patches and tokens, top-word accuracy, time per pair; 1- and 2-object scenes.")
    bench.add_argument("--count", type=int, default=100, help="scenes per setting (default 100)")
    bench.add_argument("--methods", default=None, help="comma-separated explainers (default: all)")
    bench.add_argument("--out", default="out/benchmark", help="output folder (default out/benchmark)")
    _add_model_arguments(bench)
    bench.set_defaults(run=cmd_benchmark_explainers)

    from .layout_cli import add_layout_commands
    from .prompt_cli import add_prompt_commands

    add_prompt_commands(commands)
    add_layout_commands(commands)

    models = commands.add_parser("models", help="list loadable and bundled models",
                                 description="List bundled models and open_clip architectures.")
    models.set_defaults(run=cmd_models)

    demo = commands.add_parser("demo", help="render a world scene and explain it with the bundled model",
                               description="Render a two-object world scene, explain it with its captions.")
    demo.add_argument("--seed", type=int, default=7, help="scene seed (default 7)")
    _add_explain_options(demo, default_out="out/demo")
    demo.set_defaults(run=cmd_demo, model=None, pretrained=None, device="cpu")

    world = commands.add_parser("world", help="the procedural world: scenes, datasets, training",
                                description="Scenes with known truth, classification sets, CLIP training.")
    world_commands = world.add_subparsers(dest="world_command", required=True)
    render = world_commands.add_parser("render", help="write scenes with captions, word roles and boxes",
                                       description="Write world scenes and a scenes.json with their truth.")
    render.add_argument("--seed", type=int, default=0, help="first scene seed")
    render.add_argument("--count", type=int, default=12, help="number of scenes")
    render.add_argument("--objects", type=int, default=None, help="objects per scene (default 1 to 4)")
    render.add_argument("--size", type=int, default=128, help="image side in pixels")
    render.add_argument("--out", default="out/world", help="output folder")
    render.set_defaults(run=cmd_world_render)
    export = world_commands.add_parser("export", help="write an image-folder classification dataset",
                                       description="Write a world classification set as one folder per class.")
    export.add_argument("--task", default="colour-shape", choices=["colour-shape", "shape"])
    export.add_argument("--split", default="test", choices=["train", "test"])
    export.add_argument("--variant", default="base", choices=["base", "seed", "outline", "clutter", "palette"])
    export.add_argument("--per-class", type=int, default=10, help="images per class")
    export.add_argument("--size", type=int, default=64, help="image side in pixels")
    export.add_argument("--out", required=True, help="output folder")
    export.set_defaults(run=cmd_world_export)
    train = world_commands.add_parser("train", help="train ntlb's small CLIP on world captions (resumes)",
                                      description="Contrastive training; checkpoints and resumes from --out.")
    train.add_argument("--out", default="runs/world", help="run folder (checkpoint, loss curve, weights)")
    train.add_argument("--steps", type=int, default=2000)
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--checkpoint-every", type=int, default=100)
    train.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this long")
    train.add_argument("--init", default=None, help="weights to start from (.safetensors/.pt) instead of random")
    train.add_argument("--device", default="cpu")
    train.set_defaults(run=cmd_world_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except NtlbError as err:
        print(f"ntlb: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
