"""`ntlb world render|export|train|train-generator`: the procedural world's scenes, datasets, CLIP and generator
training."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_command, add_device_argument


def cmd_render(args: argparse.Namespace) -> int:
    from ..world.datasets import render_scenes

    records = render_scenes(args.out, args.seed, args.count, args.objects, args.size)
    print(f"wrote {len(records)} scenes to {args.out}/ (scenes.json has captions, word roles and boxes)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..world import export_classification

    root = export_classification(args.out, args.task, args.split, args.variant, args.per_class, args.size)
    print(f"wrote {args.task} {args.variant}/{args.split} to {root}/ (one folder per class, classnames.txt)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..world.train import export_weights, train

    checkpoint = train(args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, device=args.device,
                       max_minutes=args.max_minutes, checkpoint_every=args.checkpoint_every, init=args.init)
    weights = export_weights(checkpoint, Path(args.out) / "weights.safetensors")
    print(f"checkpoint {checkpoint}, fp16 weights {weights}, loss curve {Path(args.out) / 'loss.png'}")
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from ..tasks.vqgan_training import VQGANTrainConfig, export_world_vqgan, train_world_vqgan

    config = VQGANTrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, n_embed=args.codes,
                              object_weight=args.object_weight, adversarial_weight=args.adversarial_weight,
                              adversarial_start=args.adversarial_start, warmup=args.warmup, init=args.init)
    checkpoint = train_world_vqgan(args.out, config, device=args.device, max_minutes=args.max_minutes,
                                   checkpoint_every=args.checkpoint_every)
    yaml, weights = export_world_vqgan(checkpoint, args.out)
    print(f"checkpoint {checkpoint}, config {yaml}, fp16 weights {weights}, bank of encoded world scenes "
          f"{weights.with_name(weights.stem + '-bank.safetensors')}, loss curve {Path(args.out) / 'loss.png'}"
          f"\nuse it with: --generator vqgan --vqgan-config {yaml} --vqgan-checkpoint {weights}")
    return 0


def add_commands(commands) -> None:
    world = add_command(commands, "world", "the procedural world: scenes, datasets, training",
                        "Scenes with known truth, classification sets, CLIP training.")
    sub = world.add_subparsers(dest="world_command", required=True)
    render = add_command(sub, "render", "write scenes with captions, word roles and boxes",
                         "Write world scenes and a scenes.json with their truth.")
    render.add_argument("--seed", type=int, default=0, help="first scene seed")
    render.add_argument("--count", type=int, default=12, help="number of scenes")
    render.add_argument("--objects", type=int, default=None, help="objects per scene (default: 1 to 4 at random)")
    render.add_argument("--size", type=int, default=128,
                        help="image side in pixels: 128 to look at; the world's models read 64, the size export, "
                             "layouts and generation use")
    render.add_argument("--out", default="out/world", help="output folder")
    render.set_defaults(run=cmd_render)

    export = add_command(sub, "export", "write an image-folder classification dataset",
                         "Write a world classification set as one folder per class.")
    export.add_argument("--task", default="colour-shape", choices=["colour-shape", "shape"],
                        help="48 colour x shape classes, or the 6 shapes")
    export.add_argument("--split", default="test", choices=["train", "test"], help="seed space of the scenes")
    export.add_argument("--variant", default="base",
                        choices=["base", "seed", "outline", "clutter", "palette", "cue", "cue-swapped"],
                        help="seed, outline, clutter, palette play ImageNet-V2, -Sketch, -A, -R; cue tints each "
                             "background by its class (a spurious cue), cue-swapped by another class")
    export.add_argument("--per-class", type=int, default=10, help="images per class")
    export.add_argument("--size", type=int, default=64,
                        help="image side in pixels (64: the world's models' input size; render's 128 is for looking)")
    export.add_argument("--out", required=True, help="output folder")
    export.set_defaults(run=cmd_export)

    train = add_command(sub, "train", "train ntlb's small CLIP on world captions (resumes)",
                        "Contrastive training; checkpoints and resumes from --out.")
    train.add_argument("--out", default="runs/world", help="run folder (checkpoint, loss curve, weights)")
    train.add_argument("--steps", type=int, default=2000, help="training steps")
    train.add_argument("--batch-size", type=int, default=128, help="captioned scenes per step")
    train.add_argument("--lr", type=float, default=5e-4, help="peak AdamW learning rate (warm-up, then cosine)")
    train.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="stop (resumably) after this long (default: no limit)")
    train.add_argument("--init", default=None,
                       help="weights to start from (.safetensors/.pt) (default: random initialisation)")
    add_device_argument(train)
    train.set_defaults(run=cmd_train)

    generator = add_command(sub, "train-generator", "train the world's VQGAN image generator (resumes)",
                            "Train a small VQGAN (taming's modules) on world scenes at 64 px: object-weighted L1, "
                            "codebook loss, optional PatchGAN; checkpoints and resumes from --out, then writes the "
                            "taming config and fp16 weights that --generator vqgan reads (the bundled world-vqgan "
                            "was made this way).")
    generator.add_argument("--out", default="runs/world-vqgan", help="run folder (checkpoint, loss curve, weights)")
    generator.add_argument("--steps", type=int, default=12000, help="training steps")
    generator.add_argument("--batch-size", type=int, default=16, help="scenes per step")
    generator.add_argument("--lr", type=float, default=4e-4, help="peak Adam learning rate (warm-up, then cosine)")
    generator.add_argument("--codes", type=int, default=512, help="codebook size")
    generator.add_argument("--object-weight", type=float, default=4.0,
                           help="extra weight of object pixels in the L1 loss")
    generator.add_argument("--adversarial-weight", type=float, default=0.0,
                           help="weight of the PatchGAN generator loss (0: none)")
    generator.add_argument("--adversarial-start", type=int, default=0, help="step from which the PatchGAN trains")
    generator.add_argument("--warmup", type=int, default=200, help="learning-rate warm-up steps")
    generator.add_argument("--init", default=None,
                           help="start from these weights (a run's checkpoint.pt or its .safetensors) on a fresh "
                                "schedule (default: a random initialisation)")
    generator.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    generator.add_argument("--max-minutes", type=float, default=None,
                           help="stop (resumably) after this long (default: no limit)")
    add_device_argument(generator)
    generator.set_defaults(run=cmd_train_generator)
