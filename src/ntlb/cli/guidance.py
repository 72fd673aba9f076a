"""`ntlb edit | generate | blend`: text-guided editing with the semantic-word loss, multi-word text-to-image
guidance, and image-guided essence transfer."""

from __future__ import annotations

import argparse

from ..config.guidance import (
    BlendConfig,
    BlendInputs,
    EditConfig,
    EditInputs,
    GenerateConfig,
    GenerateInputs,
    GeneratorChoice,
    snapshots_within,
)
from .common import add_command, add_model_arguments, model_adapter, print_notes
from .fields import add_config, read_config


def _generator(args: argparse.Namespace, adapter, seed: int):
    from ..tasks.guidance.optimisation import generator_for

    choice = read_config(GeneratorChoice, args)
    size = (choice.size, choice.size) if choice.size else None
    return generator_for(adapter, choice.generator, size, seed, choice.options)


def cmd_edit(args: argparse.Namespace) -> int:
    from ..io import load_image
    from ..tasks.explaining.files import model_notes
    from ..tasks.guidance.editing import edit
    from ..world.detector import found_line

    config, inputs = snapshots_within(read_config(EditConfig, args)), read_config(EditInputs, args)
    picture = load_image(inputs.image)
    adapter = model_adapter(args)
    name, generator = _generator(args, adapter, config.seed)
    print_notes(model_notes(adapter, [picture]) + [f"generator: {name}"])
    metrics = edit(adapter, generator, picture, inputs.text, inputs.out, config, inputs.words, inputs.neglected_only)
    print_notes(metrics["notes"])
    print(found_line(metrics["world_detector"]))
    scores = ", ".join(f"{row['expl_weight']:g}: {row['clip']:.2f}" for row in metrics["expl_weights"])
    print(f"semantic words {metrics['semantic_words']}; CLIP score by lambda {scores}; chose lambda "
          f"{metrics['chosen_expl_weight']:g} (CLIP {metrics['before']['clip']:.2f} -> "
          f"{metrics['after']['clip']:.2f}); "
          f"wrote {inputs.out}/edited.png, compare.png, metrics.json")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ..tasks.explaining.files import model_notes
    from ..tasks.guidance.editing import generate_from_text
    from ..world.detector import found_line

    config, inputs = snapshots_within(read_config(GenerateConfig, args)), read_config(GenerateInputs, args)
    adapter = model_adapter(args)
    name, generator = _generator(args, adapter, config.seed)
    print_notes(model_notes(adapter) + [f"generator: {name}"])
    metrics = generate_from_text(adapter, generator, inputs.text, inputs.out, config, inputs.words)
    print(found_line(metrics["world_detector"]))
    words = " ".join(f"{w}({r:.2f})" for w, r in metrics["after"]["words"])
    print(f"CLIP {metrics['before']['clip']:.2f} -> {metrics['after']['clip']:.2f}; words after: {words}; wrote "
          f"{inputs.out}/image.png, metrics.json")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from ..io import load_image
    from ..tasks.guidance.blending import blend

    config, inputs = snapshots_within(read_config(BlendConfig, args)), read_config(BlendInputs, args)
    sources = [load_image(path) for path in inputs.sources]
    target = load_image(inputs.target)
    adapter = model_adapter(args)
    name, generator = _generator(args, adapter, config.seed)
    print_notes([f"generator: {name}"])
    metrics = blend(adapter, generator, sources, target, inputs.out, config)
    print_notes(metrics["notes"])
    found = metrics["world_detector"]
    print(f"world detector: target {', '.join(found['target']) or 'nothing'}; results: "
          + "; ".join(f"{i + 1}: {', '.join(labels) or 'nothing'}" for i, labels in enumerate(found["results"])))
    before = sum(metrics["cos_to_target_before"]) / len(sources)
    after = sum(metrics["cos_to_target_after"]) / len(sources)
    print(f"cosine to the target {before:.3f} -> {after:.3f} over {len(sources)} sources; wrote "
          f"{inputs.out}/blend.png, direction.pt, metrics.json")
    return 0


def _command(commands, name: str, help: str, description: str, inputs: type, config: type, run) -> None:
    parser = add_command(commands, name, help, description)
    add_config(parser, inputs)
    add_config(parser, config)
    add_config(parser, GeneratorChoice)
    add_model_arguments(parser)
    parser.set_defaults(run=run)


def add_commands(commands) -> None:
    _command(commands, "edit", "edit an image towards a text, keeping every semantic word relevant",
             "StyleCLIP latent optimisation from the image's latent plus the paper's Eq. 3 word term. With "
             "--expl-weight auto, lambda = 0, 0.5, ..., 3.5 run side by side and the result CLIP scores highest is "
             "kept. A rerun with the same options resumes.", EditInputs, EditConfig, cmd_edit)
    _command(commands, "generate", "generate an image for a multi-word text (every word counts)",
             "From the best of --candidates start latents, optimise the image for the text over augmented views: "
             "CLIP alone (--guidance clip) or with the word term (ntlb). Resumes.", GenerateInputs, GenerateConfig,
             cmd_generate)
    _command(commands, "blend", "carry a target image's essence onto source images",
             "One latent direction b such that CLIP sees each G(z_s + b) as the target while it stays close to its "
             "source (image-guided essence transfer). Resumes.", BlendInputs, BlendConfig, cmd_blend)
