"""`ntlb layout generate|evaluate`: objects placed in boxes by the explainability Dice loss, and its metrics."""

from __future__ import annotations

import argparse

from ..errors import NtlbError
from .common import (
    add_command,
    add_generator_arguments,
    add_model_arguments,
    add_old_name,
    explainer_names,
    generator_options,
    load_adapter,
    print_notes,
)


def _layout(args: argparse.Namespace):
    from ..tasks.layouts import coco_layout, random_world_layout, read_layout

    if sum(x is not None for x in (args.layout, args.coco, args.world_seed)) != 1:
        raise NtlbError("give exactly one layout: --layout FILE, --coco ANN --image-id ID, or --world-seed S")
    if args.layout:
        return read_layout(args.layout)
    if args.coco:
        if args.image_id is None:
            raise NtlbError("--coco needs --image-id: the COCO image whose boxes to use")
        return coco_layout(args.coco, args.image_id)
    return random_world_layout(args.world_seed)


def cmd_generate(args: argparse.Namespace) -> int:
    from ..io import load_image
    from ..tasks.explaining import model_notes
    from ..tasks.latent_optimisation import default_generator
    from ..tasks.layout_generation import LayoutConfig, run_layout

    layout = _layout(args)
    config = LayoutConfig(method=args.loss, steps=args.steps, lr=args.lr, views=args.views, seed=args.seed,
                          dice=args.dice, snapshot_every=max(1, min(args.snapshot_every, args.steps)),
                          explainer=args.explainer)
    detector = args.detector or ("world" if args.world_seed is not None else "none")
    detector_options = {"model": args.detector_model, "weights": args.detector_weights} \
        if detector == "torchvision" else {}
    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    generator = args.generator or default_generator(adapter, (layout.height, layout.width))
    print_notes(model_notes(adapter) + [f"generator: {generator}"])
    init_image = load_image(args.init_image) if args.init_image else None
    metrics = run_layout(adapter, layout, args.out, config, generator, generator_options(args, generator),
                         None if detector == "none" else detector, detector_options, init_image=init_image)
    mean = metrics["mean"]
    found = f", {len(metrics['detections'])} detections" if "detections" in metrics else ""
    if "detections" in metrics:
        print("detector: " + ", ".join(f"{o['label']} {'found in its box' if o['found'] else 'MISSING'}"
                                       for o in metrics["objects"]))
    print(f"precision {mean['precision']:.3f} recall {mean['recall']:.3f} F1 {mean['f1']:.3f} "
          f"cosine {mean['cosine']:.3f}{found}; wrote {args.out}/image.png, maps.png, metrics.json")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..tasks.layout_generation import read_runs, summarize_runs, table_markdown

    print(table_markdown(summarize_runs(read_runs(args.runs))))
    return 0


def add_commands(commands) -> None:
    layout = add_command(commands, "layout", "generate images from a box layout (paper Algorithm 1)",
                         "Objects placed in boxes through the explainability Dice loss.")
    sub = layout.add_subparsers(dest="layout_command", required=True)
    generate = add_command(sub, "generate", "optimise an image so each text appears in its box (resumes)",
                           "Algorithm 1 with the paper's Dice loss, or the masked baselines. A rerun with the same "
                           "options resumes from --out/checkpoint.pt.")
    generate.add_argument("--layout", default=None, help="layout JSON (width, height, objects: box + text); see "
                                                         "examples/layout.json (give exactly one layout source)")
    generate.add_argument("--coco", default=None,
                          help="COCO instances JSON, with --image-id (give exactly one layout source)")
    generate.add_argument("--image-id", type=int, default=None, help="COCO image id (needed with --coco)")
    generate.add_argument("--world-seed", type=int, default=None,
                          help="a random world layout by seed (give exactly one layout source)")
    generate.add_argument("--loss", default="ntlb", choices=["ntlb", "masked", "masked+full"],
                          help="ntlb's Dice loss, or baseline (a) masked or (b) masked + full similarity")
    add_old_name(generate, "--method", "--loss", choices=["ntlb", "masked", "masked+full"])
    generate.add_argument("--explainer", default="chefer2021", choices=explainer_names(),
                          help="explainer whose image maps the Dice loss reads (last layer, cosine score)")
    add_generator_arguments(generate, "default: world-render for 64-pixel layouts with the bundled world model, "
                                      "else pixels")
    generate.add_argument("--init-image", default=None,
                          help="start from this picture's encoding (generators with an encoder: world-render, "
                               "world-vqgan, vqgan) (default: a random latent)")
    generate.add_argument("--decay", type=float, default=1.0,
                          help="spectrum decay of the pixels generator: higher gives smoother, flatter colours "
                               "(1.5 suits the world's 64-pixel scenes)")
    generate.add_argument("--dice", default="paper", choices=["paper", "released"],
                          help="Dice of the paper, or the released code's (no false-negative term)")
    generate.add_argument("--detector", default=None, choices=["world", "torchvision", "none"],
                          help="detector for AP/AR (default: world for --world-seed layouts, else none)")
    generate.add_argument("--detector-model", default="fasterrcnn_resnet50_fpn", help="torchvision detection model")
    generate.add_argument("--detector-weights", default=None,
                          help="state dict file of the torchvision detector (needed with --detector torchvision)")
    generate.add_argument("--steps", type=int, default=300, help="optimisation steps")
    generate.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (paper: 0.1)")
    generate.add_argument("--views", type=int, default=4, help="augmented views per step")
    generate.add_argument("--snapshot-every", type=int, default=50, help="steps between snapshots and checkpoints")
    generate.add_argument("--seed", type=int, default=0, help="generator initialisation and augmentations")
    add_model_arguments(generate)
    generate.add_argument("--out", default="out/layout", help="output folder (checkpoint, snapshots, image)")
    generate.set_defaults(run=cmd_generate)

    evaluate = add_command(sub, "evaluate", "a Table 3 over runs: Otsu precision / recall / F1, AP / AR / AP50",
                           "Mean map metrics per method over folders of 'layout generate', and COCO AP, AR, AP50 "
                           "of their detections against the layout boxes.")
    evaluate.add_argument("runs", nargs="+", help="output folders of 'ntlb layout generate'")
    evaluate.set_defaults(run=cmd_evaluate)
