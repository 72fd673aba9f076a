"""`ntlb explain`, `ntlb compare`, `ntlb demo`, `ntlb models`: explanations of images and texts, from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import NtlbError
from .common import (
    add_command,
    add_image_size_argument,
    add_model_arguments,
    add_old_name,
    explainer_names,
    interaction_rules,
    load_adapter,
    logit_modes,
    print_notes,
    read_lines,
)


def _explainer(args: argparse.Namespace):
    from ..explain import create

    options = {}
    if args.surgery_templates:
        if args.explainer != "clip_surgery":
            raise NtlbError("--surgery-templates is an option of --explainer clip_surgery")
        options["empty_templates"] = read_lines(args.surgery_templates, "template")
    for flag, key in (("--steps", "steps"), ("--rule", "rule")):
        if getattr(args, key) is not None:
            if args.explainer != "interactions":
                raise NtlbError(f"{flag} is an option of --explainer interactions")
            options[key] = getattr(args, key)
    layers = {key: value for key, value in (("start_layer_image", args.start_layer_image),
                                            ("start_layer_text", args.start_layer_text)) if value is not None}
    return create(args.explainer, logit_mode=args.logit_mode, max_memory=args.max_memory, **layers, **options)


def _explain_and_print(args: argparse.Namespace, images: list, texts: list[str]) -> int:
    from ..tasks.explaining import explain_files
    from ..viz import words_terminal

    adapter = load_adapter(args.model, args.pretrained, args.device, args.image_size, tokenizer=args.tokenizer)
    explainer = _explainer(args)
    data = explain_files(adapter, images, texts, explainer, args.out, args.batch_size, box=getattr(args, "box", None))
    if not args.quiet:
        for record in data["pairs"]:
            words = words_terminal([tuple(w) for w in record["words"]]) if record["words"] else record["text"]
            print(f"{Path(record['image']).name} | {words} | logit {record['logit']:.2f} p {record['probability']:.2f}")
            if record.get("box_words"):
                ranked = sorted(record["box_words"], key=lambda entry: -entry[1])
                print(f"  box {' '.join(f'{v:g}' for v in record['box'])} matches: "
                      + ", ".join(f"{word} {value:+.3g}" for word, value in ranked))
    notes = data["notes"]
    if args.explainer == "gradcam" and (args.start_layer_image is not None or args.start_layer_text is not None):
        notes = [*notes, "gradcam reads the last layer only: the start layers were not used"]
    print_notes(notes)
    files = ", ".join(["report.html", "explanations.json", *data["grids"]])
    print(f"wrote {len(data['pairs'])} pairs to {args.out}/ ({files})")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    texts = [*args.text, *(read_lines(args.texts, "text") if args.texts else [])]
    if args.concepts:
        return _explain_concepts(args, texts)
    if args.k is not None or args.template is not None:
        raise NtlbError("--k and --template are options of --concepts FILE")
    return _explain_and_print(args, args.images, texts)


def _explain_concepts(args: argparse.Namespace, classes: list[str]) -> int:
    from ..tasks.explaining import explain_concept_files

    if not classes:
        raise NtlbError("no classes: give --texts FILE (one class name per line) or --text CLASS, repeated")
    concepts = read_lines(args.concepts, "concept")
    layers = {key: value for key, value in (("start_layer_image", args.start_layer_image),
                                            ("start_layer_text", args.start_layer_text)) if value is not None}
    adapter = load_adapter(args.model, args.pretrained, args.device, args.image_size, tokenizer=args.tokenizer)
    data = explain_concept_files(adapter, args.images, classes, concepts, args.out, k=args.k or 5,
                                 template=args.template or "a photo of a {}.", method=args.explainer,
                                 logit_mode=args.logit_mode, max_memory=args.max_memory, **layers)
    for record in data["images"]:
        parts = [f"{c['concept']} {c['contribution'] / record['score']:.0%}" for c in record["concepts"]]
        print(f"{Path(record['image']).name}: {record['class']} (p {record['probability']:.2f}) = "
              f"{' + '.join(parts) or 'no concept'} + residual {record['residual'] / record['score']:.0%}")
    print_notes(data["notes"])
    print(f"wrote {len(data['images'])} images to {args.out}/ (concepts.json, {', '.join(data['grids'])})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Render a world scene and explain it with its own captions and a wrong one."""
    from ..tasks.explaining import demo_inputs

    picture, texts = demo_inputs(args.seed, args.out)
    return _explain_and_print(args, [str(picture)], texts)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..tasks.explaining import compare_explainers

    methods = [m.strip() for m in args.explainers.split(",") if m.strip()] if args.explainers else None
    adapter = load_adapter(args.model, args.pretrained, args.device, args.image_size, tokenizer=args.tokenizer)
    data = compare_explainers(adapter, args.images, args.text, methods, args.out, args.logit_mode)
    for method, reason in data["skipped"].items():
        print(f"skipped {method}: {reason}")
    print_notes(data["notes"])
    print(f"wrote {args.out}/compare.png and compare.json ({len(data['methods'])} explainers)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import open_clip

    from ..models import bundled_models
    from ..models.support import support_of

    print("Bundled (load with no --model, or by name):")
    for name, entry in bundled_models().items():
        state = "trained weights" if entry["weights"] else "no weights yet: random init"
        print(f"  {name:<16} {entry['config'].name} ({state})")
    groups: dict[str, list[str]] = {}
    for name in open_clip.list_models():
        support = support_of(name)
        groups.setdefault(support.what, []).append(name)
    print("\nopen_clip architectures ntlb explains (--model NAME; add --pretrained TAG|PATH):")
    for what, names in groups.items():
        if not what.startswith("not supported"):
            print(f"  {what}:\n    " + ", ".join(names))
    print("\nRefused with a one-line reason (not supported yet):")
    for what, names in groups.items():
        if what.startswith("not supported"):
            print(f"  {what.removeprefix('not supported yet: ')}:\n    " + ", ".join(names))
    print("\nPretrained tags need a network or a filled open_clip cache; with neither, pass a checkpoint path.")
    print("Also: --model path/to/config.json (open_clip model config) and --model hf:<dir> (transformers CLIPModel "
          "or SiglipModel).")
    return 0


def add_explain_options(parser: argparse.ArgumentParser, default_out: str) -> None:
    parser.add_argument("--explainer", default="chefer2021", choices=explainer_names(), help="explainer")
    add_old_name(parser, "--method", "--explainer", choices=explainer_names())
    parser.add_argument("--start-layer-image", type=int, default=None,
                        help="first image layer used: 0 = all layers, negative counts from the end, -1 = the last "
                             "layer only, as the authors' later notebook (default: the method's own: 0 for "
                             "chefer2021 and rollout, -2 for legrad)")
    parser.add_argument("--start-layer-text", type=int, default=None,
                        help="first text layer used (default: the method's own, 0 = all layers)")
    parser.add_argument("--logit-mode", default="scaled", choices=logit_modes(),
                        help="score explained: logit_scale x cosine (+ SigLIP's bias), the cosine, or SigLIP's "
                             "match probability sigmoid(s x cosine + b)")
    parser.add_argument("--surgery-templates", default=None,
                        help="clip_surgery: file of prompt templates (one per line, {} for the class) whose empty-"
                             "prompt embedding is subtracted (default: open_clip's 80; the reference code uses 85)")
    parser.add_argument("--steps", type=int, default=None,
                        help="interactions: points on the path from the reference (default: 10, as the released code)")
    parser.add_argument("--rule", default=None, choices=interaction_rules(),
                        help="interactions: the path integral's rule; riemann = the released code's (default), gauss "
                             "= Gauss-Legendre, complete to round-off")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--max-memory", default=None,
                        help="memory budget, e.g. 2GB: gradients go in chunks and pairs in tiles to fit it (default: "
                             "half the memory available)")
    parser.add_argument("--out", default=default_out, help="output folder (files of an earlier run there are replaced)")
    parser.add_argument("--quiet", action="store_true", help="do not print the highlighted words")


def add_commands(commands) -> None:
    explain = add_command(commands, "explain", "relevance maps and word relevance for images x texts",
                          "Explain the CLIP score of every image with every text: captioned overlays, "
                          "explanations.json, report.html, grid.png.")
    explain.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    explain.add_argument("--text", action="append", default=[], help="a text to explain; repeat for more")
    explain.add_argument("--texts", default=None,
                         help="file of texts (or class names), one per line, added to the --text ones (default: none)")
    explain.add_argument("--concepts", default=None,
                         help="file of concepts, one per line (examples/world-concepts.txt for the world): explain "
                              "each image's zero-shot class among the texts by at most --k concepts, each with its "
                              "share of the score and its map (concepts.png, concepts.json) (default: none)")
    explain.add_argument("--k", type=int, default=None, help="with --concepts: at most this many concepts (default: 5)")
    explain.add_argument("--template", default=None,
                         help="with --concepts: prompt template of the classes and concepts (default: 'a photo of "
                              "a {}.')")
    explain.add_argument("--box", type=float, nargs=4, default=None, metavar=("X0", "Y0", "X1", "Y1"),
                         help="with --explainer interactions: print the words that the region x0 y0 x1 y1 (pixels of "
                              "each image) matches (default: no box)")
    add_model_arguments(explain)
    add_image_size_argument(explain)
    add_explain_options(explain, default_out="out/explain")
    explain.set_defaults(run=cmd_explain)

    compare = add_command(commands, "compare", "the same images and texts under several explainers",
                          "One figure: rows are image-text pairs, columns are explainers.")
    compare.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    compare.add_argument("--text", action="append", default=[], help="a text to explain; repeat for more")
    compare.add_argument("--explainers", default=None,
                         help="comma-separated explainers (default: all registered ones)")
    add_old_name(compare, "--methods", "--explainers")
    compare.add_argument("--logit-mode", default="scaled", choices=logit_modes(), help="score explained")
    compare.add_argument("--out", default="out/compare", help="output folder")
    add_model_arguments(compare)
    add_image_size_argument(compare)
    compare.set_defaults(run=cmd_compare)

    models = add_command(commands, "models", "list bundled models and the open_clip architectures ntlb explains")
    models.set_defaults(run=cmd_models)

    demo = add_command(commands, "demo", "render a world scene and explain it with the bundled model",
                       "Render a two-object world scene and explain it with its captions and a wrong one.")
    demo.add_argument("--seed", type=int, default=7, help="scene seed")
    add_explain_options(demo, default_out="out/demo")
    demo.set_defaults(run=cmd_demo, model=None, pretrained=None, device="cpu", image_size=None, tokenizer=None)
    add_dataset_command(commands)
    add_pair_command(commands)


def cmd_explain_pair(args: argparse.Namespace) -> int:
    from ..tasks.explaining import explain_pair_files

    options = {"start_layer_image": args.start_layer_image} if args.start_layer_image is not None else {}
    if args.window is not None:
        if args.explainer != "occlusion":
            raise NtlbError("--window is an option of --explainer occlusion")
        options["window"] = args.window
    adapter = load_adapter(args.model, args.pretrained, args.device, args.image_size, tokenizer=args.tokenizer)
    data = explain_pair_files(adapter, args.images[0], args.images[1:], args.explainer, args.out,
                              max_memory=args.max_memory, **options)
    for record in data["pairs"]:
        print(f"{Path(record['query']).name} ~ {Path(record['image']).name}: similarity {record['similarity']:.3f}")
    print_notes(data["notes"])
    print(f"wrote {len(data['pairs'])} pairs to {args.out}/ (pairs.json, {', '.join(data['grids'])})")
    return 0


def add_pair_command(commands) -> None:
    pair = add_command(commands, "explain-pair", "maps on both images of a CLIP image-image similarity",
                       "Explain the similarity of the first image with each of the others (retrieval, near "
                       "duplicates): a map on each image of each pair, pairs.png and pairs.json.")
    pair.add_argument("images", nargs="+", help="the query image, then the images to compare it with")
    pair.add_argument("--explainer", default="chefer2021", choices=explainer_names(),
                      help="explainer: a gradient-attention method, or occlusion (model-agnostic baseline)")
    add_old_name(pair, "--method", "--explainer", choices=explainer_names())
    pair.add_argument("--start-layer-image", type=int, default=None,
                      help="first image layer used (default: the method's own)")
    pair.add_argument("--window", type=int, default=None, help="occlusion: window side in cells (default: 1)")
    pair.add_argument("--max-memory", default=None, help="memory budget, e.g. 2GB (default: half the memory free)")
    pair.add_argument("--out", default="out/pairs", help="output folder (files of an earlier run there are replaced)")
    add_model_arguments(pair)
    add_image_size_argument(pair)
    pair.set_defaults(run=cmd_explain_pair)


def cmd_explain_dataset(args: argparse.Namespace) -> int:
    from ..distributed import current_world, process_device
    from ..tasks.dataset_explanation import DatasetSettings, dataset_units, explain_dataset

    world = current_world(args.device)
    if args.classes and args.text:
        raise NtlbError("give either --classes FILE or --text, not both")
    texts, template = list(args.text), args.template or "{}"
    if args.classes:
        texts, template = read_lines(args.classes, "class name"), args.template or "a photo of a {}."
    elif not texts:
        _, names = dataset_units(args.data, args.shard_size)
        texts, template = names or [], args.template or "a photo of a {}."
    top = args.top_k if args.top_k is not None else (min(5, len(texts)) if args.classes or not args.text else None)
    settings = DatasetSettings(args.data, texts, template, top, args.explainer, args.start_layer_image,
                               args.start_layer_text, args.logit_mode, args.shard_size, args.model, args.pretrained)
    adapter = load_adapter(args.model, args.pretrained, process_device(args.device, world), args.image_size,
                           tokenizer=args.tokenizer)
    index = explain_dataset(adapter, settings, args.out, world, args.batch_size, args.workers, args.max_memory)
    if world.main:
        rate = index["images"] / max(index["seconds"], 1e-9)
        print(f"explained {index['images']} images x {top or len(texts)} texts in {len(index['shards'])} shards "
              f"({rate:.1f} images/s this run) -> {args.out}/index.json")
    return 0


def add_dataset_command(commands) -> None:
    dataset = add_command(commands, "explain-dataset", "explain every image of a dataset (folder, list, WebDataset)",
                          "Maps of each image's top-k classes or of the given texts, written as safetensors shards "
                          "with an index; rerun to resume; under torchrun the processes share the shards.")
    dataset.add_argument("data", help="an image folder (class folders or images), a .txt file list, or WebDataset "
                                      "shards (data-{000000..000009}.tar)")
    dataset.add_argument("--classes", default=None,
                         help="file of class names, one per line (default: the folder's classes, unless --text)")
    dataset.add_argument("--text", action="append", default=[], help="a text to explain; repeat for more")
    dataset.add_argument("--template", default=None,
                         help="prompt template (default: 'a photo of a {}.' for classes, '{}' for texts)")
    dataset.add_argument("--top-k", type=int, default=None,
                         help="explain each image's k best-scoring texts (default: 5 for classes, every --text)")
    dataset.add_argument("--explainer", default="chefer2021", choices=explainer_names(), help="explainer")
    add_old_name(dataset, "--method", "--explainer", choices=explainer_names())
    dataset.add_argument("--start-layer-image", type=int, default=None,
                         help="first image layer used (default: the method's own)")
    dataset.add_argument("--start-layer-text", type=int, default=None,
                         help="first text layer used (default: the method's own)")
    dataset.add_argument("--logit-mode", default="scaled", choices=logit_modes(), help="score explained")
    dataset.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    dataset.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per process")
    dataset.add_argument("--shard-size", type=int, default=1024, help="images per output shard (a .tar input: one "
                                                                      "shard per .tar)")
    dataset.add_argument("--max-memory", default=None,
                         help="memory budget of one batch, e.g. 6GB (default: half the memory available)")
    add_model_arguments(dataset)
    add_image_size_argument(dataset)
    dataset.add_argument("--out", required=True, help="output folder (shards/, index.json, settings.json)")
    dataset.set_defaults(run=cmd_explain_dataset)
