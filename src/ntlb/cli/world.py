"""`ntlb world render|export|train|train-generator`: the procedural world's scenes, datasets, CLIP and generator
training."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.world import (
    ExportConfig,
    GeneratorTrainInputs,
    GeneratorTrainResources,
    LongRunResources,
    RenderConfig,
    VQGANTrainConfig,
    WorldTrainConfig,
    WorldTrainInputs,
)
from .common import add_command
from .fields import add_config, read_config


def cmd_render(args: argparse.Namespace) -> int:
    from ..world.datasets import render_scenes

    config = read_config(RenderConfig, args)
    records = render_scenes(config.out, config.seed, config.count, config.objects, config.size)
    print(f"wrote {len(records)} scenes to {config.out}/ (scenes.json has captions, word roles and boxes)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..world import export_classification

    c = read_config(ExportConfig, args)
    root = export_classification(c.out, c.task, c.split, c.variant, c.per_class, c.size)
    print(f"wrote {c.task} {c.variant}/{c.split} to {root}/ (one folder per class, classnames.txt)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ntlb_research.world_training import export_weights, train

    config, resources = read_config(WorldTrainConfig, args), read_config(LongRunResources, args)
    checkpoint = train(args.out, **asdict(config), device=resources.device, max_minutes=resources.max_minutes,
                       checkpoint_every=resources.checkpoint_every)
    weights = export_weights(checkpoint, Path(args.out) / "weights.safetensors")
    print(f"checkpoint {checkpoint}, fp16 weights {weights}, loss curve {Path(args.out) / 'loss.png'}")
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from ntlb_research.vqgan_training import export_world_vqgan, train_world_vqgan

    config, resources = read_config(VQGANTrainConfig, args), read_config(GeneratorTrainResources, args)
    checkpoint = train_world_vqgan(args.out, config, device=resources.device, max_minutes=resources.max_minutes,
                                   checkpoint_every=resources.checkpoint_every)
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
    add_config(render, RenderConfig)
    render.set_defaults(run=cmd_render)

    export = add_command(sub, "export", "write an image-folder classification dataset",
                         "Write a world classification set as one folder per class.")
    add_config(export, ExportConfig)
    export.set_defaults(run=cmd_export)

    train = add_command(sub, "train", "train ntlb's small CLIP on world captions (resumes)",
                        "Contrastive training; checkpoints and resumes from --out.")
    add_config(train, WorldTrainInputs)
    add_config(train, WorldTrainConfig)
    add_config(train, LongRunResources, skip=("max_memory", "workers"))
    train.set_defaults(run=cmd_train)

    generator = add_command(sub, "train-generator", "train the world's VQGAN image generator (resumes)",
                            "Train a small VQGAN (taming's modules) on world scenes at 64 px: object-weighted L1, "
                            "codebook loss, optional PatchGAN; checkpoints and resumes from --out, then writes the "
                            "taming config and fp16 weights that --generator vqgan reads (the bundled world-vqgan "
                            "was made this way).")
    add_config(generator, GeneratorTrainInputs)
    add_config(generator, VQGANTrainConfig)
    add_config(generator, GeneratorTrainResources, skip=("max_memory", "workers"))
    generator.set_defaults(run=cmd_train_generator)
