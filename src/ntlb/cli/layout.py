"""`ntlb layout generate|evaluate`: objects placed in boxes by the explainability Dice loss, and its metrics."""

from __future__ import annotations

import argparse

from ..config.guidance import GeneratorChoice, snapshots_within
from ..config.layout import EvaluateInputs, LayoutConfig, LayoutInputs
from ..errors import NtlbError
from .common import add_command, add_model_arguments, model_adapter, print_notes
from .fields import add_config, read_config


def _layout(inputs: LayoutInputs):
    from ..tasks.layouts.layout import coco_layout, random_world_layout, read_layout

    if sum(x is not None for x in (inputs.layout, inputs.coco, inputs.world_seed)) != 1:
        raise NtlbError("give exactly one layout: --layout FILE, --coco ANN --image-id ID, or --world-seed S")
    if inputs.layout:
        return read_layout(inputs.layout)
    if inputs.coco:
        if inputs.image_id is None:
            raise NtlbError("--coco needs --image-id: the COCO image whose boxes to use")
        return coco_layout(inputs.coco, inputs.image_id)
    return random_world_layout(inputs.world_seed)


def cmd_generate(args: argparse.Namespace) -> int:
    from ..io import load_image
    from ..tasks.explaining.files import model_notes
    from ..tasks.guidance.optimisation import default_generator
    from ..tasks.layouts.generation import run_layout

    inputs, choice = read_config(LayoutInputs, args), read_config(GeneratorChoice, args)
    layout = _layout(inputs)
    config = snapshots_within(read_config(LayoutConfig, args))
    detector = inputs.detector or ("world" if inputs.world_seed is not None else "none")
    detector_options = {"model": inputs.detector_model, "weights": inputs.detector_weights} \
        if detector == "torchvision" else {}
    adapter = model_adapter(args)
    generator = choice.generator or default_generator(adapter, (layout.height, layout.width))
    print_notes(model_notes(adapter) + [f"generator: {generator}"])
    init_image = load_image(inputs.init_image) if inputs.init_image else None
    metrics = run_layout(adapter, layout, inputs.out, config, generator, choice.options(generator),
                         None if detector == "none" else detector, detector_options, init_image=init_image)
    mean = metrics["mean"]
    found = f", {len(metrics['detections'])} detections" if "detections" in metrics else ""
    if "detections" in metrics:
        print("detector: " + ", ".join(f"{o['label']} {'found in its box' if o['found'] else 'MISSING'}"
                                       for o in metrics["objects"]))
    print(f"precision {mean['precision']:.3f} recall {mean['recall']:.3f} F1 {mean['f1']:.3f} "
          f"cosine {mean['cosine']:.3f}{found}; wrote {inputs.out}/image.png, maps.png, metrics.json")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..tasks.layouts.generation import read_runs, summarize_runs, table_markdown

    print(table_markdown(summarize_runs(read_runs(read_config(EvaluateInputs, args).runs))))
    return 0


def add_commands(commands) -> None:
    layout = add_command(commands, "layout", "generate images from a box layout (paper Algorithm 1)",
                         "Objects placed in boxes through the explainability Dice loss.")
    sub = layout.add_subparsers(dest="layout_command", required=True)
    generate = add_command(sub, "generate", "optimise an image so each text appears in its box (resumes)",
                           "Algorithm 1 with the paper's Dice loss, or the masked baselines. A rerun with the same "
                           "options resumes from --out/checkpoint.pt.")
    add_config(generate, LayoutInputs)
    add_config(generate, LayoutConfig)
    add_config(generate, GeneratorChoice, skip=("size",))
    add_model_arguments(generate)
    generate.set_defaults(run=cmd_generate)

    evaluate = add_command(sub, "evaluate", "a Table 3 over runs: Otsu precision / recall / F1, AP / AR / AP50",
                           "Mean map metrics per method over folders of 'layout generate', and COCO AP, AR, AP50 "
                           "of their detections against the layout boxes.")
    add_config(evaluate, EvaluateInputs)
    evaluate.set_defaults(run=cmd_evaluate)
