"""`ntlb explain`, `ntlb compare`, `ntlb demo`, `ntlb models`: explanations of images and texts, from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ModelChoice
from ..config.explaining import (
    CLASSES_TOP_K,
    CompareConfig,
    DatasetInputs,
    DatasetResources,
    DatasetSettings,
    DemoConfig,
    ExplainConfig,
    ExplainResources,
    PairConfig,
)
from ..errors import NtlbError
from .common import add_command, model_adapter, name_list, print_notes, read_lines
from .fields import add_config, read_config


def _explain_and_print(args: argparse.Namespace, config: ExplainConfig | DemoConfig, images: list,
                       texts: list[str]) -> int:
    from ..explain import create
    from ..tasks.explaining.files import explain_files
    from ..viz import words_terminal

    resources = read_config(ExplainResources, args)
    adapter = model_adapter(args)
    explainer = create(config.explainer, max_memory=resources.max_memory)
    data = explain_files(adapter, images, texts, explainer, config.out, resources.batch_size,
                         box=getattr(config, "box", None), word_maps=getattr(config, "word_maps", False),
                         shifts=getattr(config, "shifts", None))
    if not config.quiet:
        for record in data["pairs"]:
            words = words_terminal([tuple(w) for w in record["words"]]) if record["words"] else record["text"]
            print(f"{Path(record['image']).name} | {words} | logit {record['logit']:.2f} p {record['probability']:.2f}")
            if record.get("box_words"):
                ranked = sorted(record["box_words"], key=lambda entry: -entry[1])
                print(f"  box {' '.join(f'{v:g}' for v in record['box'])} matches: "
                      + ", ".join(f"{word} {value:+.3g}" for word, value in ranked))
    notes = data["notes"]
    layers = {"start_layer_image", "start_layer_text"} & set(config.explainer.given())
    if config.explainer.name == "gradcam" and layers:
        notes = [*notes, "gradcam reads the last layer only: the start layers were not used"]
    print_notes(notes)
    files = ", ".join(["report.html", "explanations.json", *data["grids"]])
    print(f"wrote {len(data['pairs'])} pairs to {config.out}/ ({files})")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    config = read_config(ExplainConfig, args)
    texts = [*config.text, *(read_lines(config.texts, "text") if config.texts else [])]
    if config.concepts:
        return _explain_concepts(args, config, texts)
    if config.k is not None or config.template is not None:
        raise NtlbError("--k and --template are options of --concepts FILE")
    if config.shifts is not None and not config.word_maps:
        raise NtlbError("--shifts is an option of --word-maps: add --word-maps, or leave --shifts out")
    return _explain_and_print(args, config, config.images, texts)


def _explain_concepts(args: argparse.Namespace, config: ExplainConfig, classes: list[str]) -> int:
    from ..tasks.explaining.files import explain_concept_files

    if not classes:
        raise NtlbError("no classes: give --texts FILE (one class name per line) or --text CLASS, repeated")
    concepts = read_lines(config.concepts, "concept")
    resources = read_config(ExplainResources, args)
    adapter = model_adapter(args)
    data = explain_concept_files(adapter, config.images, classes, concepts, config.out, k=config.k,
                                 template=config.template, method=config.explainer,
                                 max_memory=resources.max_memory)
    for record in data["images"]:
        parts = [f"{c['concept']} {c['contribution'] / record['score']:.0%}" for c in record["concepts"]]
        print(f"{Path(record['image']).name}: {record['class']} (p {record['probability']:.2f}) = "
              f"{' + '.join(parts) or 'no concept'} + residual {record['residual'] / record['score']:.0%}")
    print_notes(data["notes"])
    print(f"wrote {len(data['images'])} images to {config.out}/ (concepts.json, {', '.join(data['grids'])})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Render a world scene and explain it with its own captions and a wrong one."""
    from ..tasks.explaining.files import demo_inputs

    config = read_config(DemoConfig, args)
    picture, texts = demo_inputs(config.seed, config.out)
    return _explain_and_print(args, config, [str(picture)], texts)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..tasks.explaining.files import compare_explainers

    config = read_config(CompareConfig, args)
    methods = name_list(config.explainers)
    adapter = model_adapter(args)
    data = compare_explainers(adapter, config.images, config.text, methods, config.out, config.logit_mode)
    for method, reason in data["skipped"].items():
        print(f"skipped {method}: {reason}")
    print_notes(data["notes"])
    print(f"wrote {config.out}/compare.png and compare.json ({len(data['methods'])} explainers)")
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


def add_commands(commands) -> None:
    explain = add_command(commands, "explain", "relevance maps and word relevance for images x texts",
                          "Explain the CLIP score of every image with every text: captioned overlays, "
                          "explanations.json, report.html, grid.png.")
    add_config(explain, ExplainConfig)
    add_config(explain, ModelChoice)
    add_config(explain, ExplainResources, skip=("workers",))
    explain.set_defaults(run=cmd_explain)

    compare = add_command(commands, "compare", "the same images and texts under several explainers",
                          "One figure: rows are image-text pairs, columns are explainers.")
    add_config(compare, CompareConfig)
    add_config(compare, ModelChoice)
    add_config(compare, ExplainResources, skip=("workers", "batch_size", "max_memory"))
    compare.set_defaults(run=cmd_compare)

    models = add_command(commands, "models", "list bundled models and the open_clip architectures ntlb explains")
    models.set_defaults(run=cmd_models)

    demo = add_command(commands, "demo", "render a world scene and explain it with the bundled model",
                       "Render a two-object world scene and explain it with its captions and a wrong one.")
    add_config(demo, DemoConfig)
    add_config(demo, ExplainResources, skip=("workers", "device"))
    demo.set_defaults(run=cmd_demo)
    add_dataset_command(commands)
    add_pair_command(commands)


def cmd_explain_pair(args: argparse.Namespace) -> int:
    from ..tasks.explaining.files import explain_pair_files

    config = read_config(PairConfig, args)
    resources = read_config(ExplainResources, args)
    adapter = model_adapter(args)
    data = explain_pair_files(adapter, config.images[0], config.images[1:], config.explainer, config.out,
                              max_memory=resources.max_memory)
    for record in data["pairs"]:
        print(f"{Path(record['query']).name} ~ {Path(record['image']).name}: similarity {record['similarity']:.3f}")
    print_notes(data["notes"])
    print(f"wrote {len(data['pairs'])} pairs to {config.out}/ (pairs.json, {', '.join(data['grids'])})")
    return 0


def add_pair_command(commands) -> None:
    pair = add_command(commands, "explain-pair", "maps on both images of a CLIP image-image similarity",
                       "Explain the similarity of the first image with each of the others (retrieval, near "
                       "duplicates): a map on each image of each pair, pairs.png and pairs.json.")
    add_config(pair, PairConfig)
    add_config(pair, ModelChoice)
    add_config(pair, ExplainResources, skip=("workers", "batch_size"))
    pair.set_defaults(run=cmd_explain_pair)


def cmd_explain_dataset(args: argparse.Namespace) -> int:
    from ..distributed import current_world, process_device
    from ..explain.concepts import CLASS_TEMPLATE
    from ..tasks.explaining.dataset import dataset_units, explain_dataset

    inputs = read_config(DatasetInputs, args)
    resources = read_config(DatasetResources, args)
    model = read_config(ModelChoice, args)
    world = current_world(resources.device)
    if inputs.classes and inputs.text:
        raise NtlbError("give either --classes FILE or --text, not both")
    texts, template = list(inputs.text), inputs.template or "{}"
    if inputs.classes:
        texts, template = read_lines(inputs.classes, "class name"), inputs.template or CLASS_TEMPLATE
    elif not texts:
        _, names = dataset_units(args.data, args.shard_size)
        texts, template = names or [], inputs.template or CLASS_TEMPLATE
    top = inputs.top_k if inputs.top_k is not None else \
        (min(CLASSES_TOP_K, len(texts)) if inputs.classes or not inputs.text else None)
    settings = read_config(DatasetSettings, args, texts=texts, template=template, top_k=top, model=model.model,
                           pretrained=model.pretrained)
    adapter = model_adapter(args, process_device(resources.device, world))
    index = explain_dataset(adapter, settings, inputs.out, world, resources.batch_size, resources.workers,
                            resources.max_memory)
    if world.main:
        rate = index["images"] / max(index["seconds"], 1e-9)
        print(f"explained {index['images']} images x {top or len(texts)} texts in {len(index['shards'])} shards "
              f"({rate:.1f} images/s this run) -> {inputs.out}/index.json")
    return 0


def add_dataset_command(commands) -> None:
    dataset = add_command(commands, "explain-dataset", "explain every image of a dataset (folder, list, WebDataset)",
                          "Maps of each image's top-k classes or of the given texts, written as safetensors shards "
                          "with an index; rerun to resume; under torchrun the processes share the shards.")
    add_config(dataset, DatasetSettings)
    add_config(dataset, DatasetInputs)
    add_config(dataset, DatasetResources)
    add_config(dataset, ModelChoice)
    dataset.set_defaults(run=cmd_explain_dataset)
