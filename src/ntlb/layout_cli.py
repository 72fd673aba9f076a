"""`ntlb layout generate|evaluate`: objects placed in boxes by the explainability Dice loss, and its metrics."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

from .errors import NtlbError


def _maps_figure(image, maps, layout, path: Path) -> None:

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .io import save_figure_atomic

    count = len(layout.texts)
    fig, axes = plt.subplots(1, count + 1, figsize=(2.6 * (count + 1), 2.9), squeeze=False)
    picture = image[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    axes[0][0].imshow(picture)
    axes[0][0].set_title("generated", fontsize=8)
    sy, sx = picture.shape[0] / layout.height, picture.shape[1] / layout.width
    for j, text in enumerate(layout.texts):
        ax = axes[0][j + 1]
        ax.imshow(picture)
        ax.imshow(maps[j].cpu().numpy(), cmap="jet", alpha=0.5)
        x0, y0, x1, y1 = layout.boxes[j]
        for target in (ax, axes[0][0]):
            target.add_patch(Rectangle((x0 * sx - 0.5, y0 * sy - 0.5), (x1 - x0) * sx, (y1 - y0) * sy,
                                       fill=False, edgecolor="white", lw=1.5))
        ax.set_title(text, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    save_figure_atomic(fig, path)


def cmd_generate(args: argparse.Namespace) -> int:
    from .io import write_json_atomic
    from .models import load_model
    from .tasks.generators import create_generator
    from .tasks.layout_generation import LayoutConfig, evaluate_image, generate
    from .tasks.layouts import coco_layout, random_world_layout, read_layout

    sources = [args.layout is not None, args.coco is not None, args.world_seed is not None]
    if sum(sources) != 1:
        raise NtlbError("give exactly one layout: --layout FILE, --coco ANN --image-id ID, or --world-seed S")
    if args.layout:
        layout = read_layout(args.layout)
    elif args.coco:
        if args.image_id is None:
            raise NtlbError("--coco needs --image-id: the COCO image whose boxes to use")
        layout = coco_layout(args.coco, args.image_id)
    else:
        layout = random_world_layout(args.world_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = load_model(args.model, args.pretrained, device=args.device)
    size = (layout.height, layout.width)
    generator_options = {"config": args.vqgan_config, "checkpoint": args.vqgan_checkpoint} \
        if args.generator == "vqgan" else {"decay": args.decay} if args.generator == "pixels" else {}
    generator = create_generator(args.generator, size, seed=args.seed, **generator_options).to(adapter.device)
    config = LayoutConfig(method=args.method, steps=args.steps, lr=args.lr, views=args.views, seed=args.seed,
                          dice=args.dice, snapshot_every=max(1, min(args.snapshot_every, args.steps)))
    detector_name = args.detector or ("world" if args.world_seed is not None else "none")
    detector = None
    if detector_name != "none":
        from .tasks.detectors import create_detector

        options = {"model": args.detector_model, "weights": args.detector_weights} \
            if detector_name == "torchvision" else {}
        detector = create_detector(detector_name, **options)
    out = Path(args.out)
    image = generate(adapter, layout, generator, out, config)
    metrics = evaluate_image(adapter, layout, image, detector)
    _maps_figure(image, metrics.pop("maps"), layout, out / "maps.png")
    write_json_atomic(out / "metrics.json", {"method": args.method, "generator": args.generator,
                                             **generator_options, "dice": args.dice, "seed": args.seed,
                                             "steps": args.steps, "model": adapter.name, "detector": detector_name,
                                             "random_weights": adapter.random_weights, **metrics})
    mean = metrics["mean"]
    found = f", {len(metrics['detections'])} detections" if "detections" in metrics else ""
    print(f"precision {mean['precision']:.3f} recall {mean['recall']:.3f} F1 {mean['f1']:.3f} "
          f"cosine {mean['cosine']:.3f}{found}; wrote {out}/image.png, maps.png, metrics.json")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .tasks.layout_generation import TABLE_COLUMNS, summarize_runs

    results = []
    for folder in args.runs:
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise NtlbError(f"{path} not found: give folders written by 'ntlb layout generate'")
        results.append(json.loads(path.read_text()))
    print("| method | runs | " + " | ".join(TABLE_COLUMNS) + " | cosine |\n|---|" + "---:|" * (len(TABLE_COLUMNS) + 2))
    for method, row in summarize_runs(results).items():
        cells = [f"{100 * row[k]:.1f}" if k in row else "—" for k in TABLE_COLUMNS]
        print(f"| {method} | {row['runs']} | " + " | ".join(cells) + f" | {row['cosine']:.3f} |")
    return 0


def add_layout_commands(commands) -> None:
    """Register `ntlb layout ...` on the main parser's sub-commands."""
    layout = commands.add_parser("layout", help="generate images from a box layout (paper Algorithm 1)",
                                 description="Objects placed in boxes through the explainability Dice loss.")
    sub = layout.add_subparsers(dest="layout_command", required=True)
    generate = sub.add_parser("generate", help="optimise an image so each text appears in its box (resumes)",
                              description="Algorithm 1 with the paper's Dice loss, or the masked baselines.")
    generate.add_argument("--layout", default=None, help="layout JSON (width, height, objects: box + text)")
    generate.add_argument("--coco", default=None, help="COCO instances JSON (with --image-id)")
    generate.add_argument("--image-id", type=int, default=None, help="COCO image id")
    generate.add_argument("--world-seed", type=int, default=None, help="a random world layout by seed")
    generate.add_argument("--method", default="ntlb", choices=["ntlb", "masked", "masked+full"])
    generate.add_argument("--generator", default="pixels", help="pixels (weights-free, default) or vqgan")
    generate.add_argument("--decay", type=float, default=1.0,
                          help="spectrum decay of the pixels generator: higher gives smoother, flatter colours "
                               "(1.5 suits the world's 64-pixel scenes)")
    generate.add_argument("--vqgan-config", default=None, help="taming VQGAN YAML (with --generator vqgan)")
    generate.add_argument("--vqgan-checkpoint", default=None, help="taming VQGAN .ckpt (with --generator vqgan)")
    generate.add_argument("--dice", default="paper", choices=["paper", "released"])
    generate.add_argument("--detector", default=None, choices=["world", "torchvision", "none"],
                          help="detector for AP/AR (default: world for --world-seed layouts, else none)")
    generate.add_argument("--detector-model", default="fasterrcnn_resnet50_fpn", help="torchvision detection model")
    generate.add_argument("--detector-weights", default=None, help="state dict file of the torchvision detector")
    generate.add_argument("--steps", type=int, default=300)
    generate.add_argument("--lr", type=float, default=0.1, help="Adam learning rate (paper: 0.1)")
    generate.add_argument("--views", type=int, default=4, help="augmented views per step")
    generate.add_argument("--snapshot-every", type=int, default=50)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--model", default=None, help="model (default: bundled ntlb-world)")
    generate.add_argument("--pretrained", default=None)
    generate.add_argument("--device", default="cpu")
    generate.add_argument("--out", default="out/layout", help="output folder (checkpoint, snapshots, image)")
    generate.set_defaults(run=cmd_generate)
    evaluate = sub.add_parser("evaluate", help="a Table 3 over runs: Otsu precision / recall / F1, AP / AR / AP50",
                              description="Mean map metrics per method over folders of 'layout generate', and "
                                          "COCO AP, AR, AP50 of their detections against the layout boxes.")
    evaluate.add_argument("runs", nargs="+", help="output folders of 'ntlb layout generate'")
    evaluate.set_defaults(run=cmd_evaluate)
