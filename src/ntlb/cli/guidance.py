"""`ntlb edit | generate | blend`: text-guided editing with the semantic-word loss, multi-word text-to-image
guidance, and image-guided essence transfer."""

from __future__ import annotations

import argparse

from .common import (
    add_command,
    add_generator_arguments,
    add_model_arguments,
    add_old_name,
    explainer_names,
    generator_options,
    load_adapter,
    print_notes,
    word_scores,
)

DEFAULT_GENERATOR = "default: world-vqgan with the bundled world model, else pixels (which cannot edit)"


def _generator(args: argparse.Namespace, adapter):
    from ..tasks.latent_optimisation import generator_for

    size = (args.size, args.size) if args.size else None
    return generator_for(adapter, args.generator, size, args.seed,
                         **(generator_options(args, args.generator) if args.generator else {}))


def _lambda(value: str) -> float | None:
    if value == "auto":
        return None
    try:
        weight = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--expl-weight {value!r}: use 'auto' or a number >= 0") from None
    return weight


def cmd_edit(args: argparse.Namespace) -> int:
    from ..io import load_image
    from ..tasks.explaining import model_notes
    from ..tasks.text_guidance import EditConfig, edit

    config = EditConfig(steps=args.steps, lr=args.lr, l2=args.l2, identity_weight=args.identity_weight,
                        expl_weight=args.expl_weight, word_score=args.word_score, explainer=args.explainer,
                        seed=args.seed, snapshot_every=max(1, min(args.snapshot_every, args.steps)))
    picture = load_image(args.image)
    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    name, generator = _generator(args, adapter)
    print_notes(model_notes(adapter, [picture]) + [f"generator: {name}"])
    metrics = edit(adapter, generator, picture, args.text, args.out, config, args.words, args.neglected_only)
    scores = ", ".join(f"{row['lambda']:g}: {row['clip']:.2f}" for row in metrics["lambdas"])
    print(f"semantic words {metrics['semantic_words']}; CLIP score by lambda {scores}; chose lambda "
          f"{metrics['chosen_lambda']:g} (CLIP {metrics['before']['clip']:.2f} -> {metrics['after']['clip']:.2f}); "
          f"wrote {args.out}/edited.png, compare.png, metrics.json")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ..tasks.explaining import model_notes
    from ..tasks.text_guidance import GenerateConfig, generate_from_text

    config = GenerateConfig(method=args.guidance, steps=args.steps, lr=args.lr, views=args.views,
                            expl_weight=args.expl_weight, candidates=args.candidates, word_score=args.word_score,
                            explainer=args.explainer, seed=args.seed,
                            snapshot_every=max(1, min(args.snapshot_every, args.steps)))
    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    name, generator = _generator(args, adapter)
    print_notes(model_notes(adapter) + [f"generator: {name}"])
    metrics = generate_from_text(adapter, generator, args.text, args.out, config, args.words)
    words = " ".join(f"{w}({r:.2f})" for w, r in metrics["after"]["words"])
    print(f"CLIP {metrics['before']['clip']:.2f} -> {metrics['after']['clip']:.2f}; words after: {words}; wrote "
          f"{args.out}/image.png, metrics.json")
    return 0


def cmd_blend(args: argparse.Namespace) -> int:
    from ..io import load_image
    from ..tasks.blending import BlendConfig, blend

    config = BlendConfig(steps=args.steps, lr=args.lr, consistency=args.consistency, identity=args.identity,
                         seed=args.seed, snapshot_every=max(1, min(args.snapshot_every, args.steps)))
    sources = [load_image(path) for path in args.sources]
    target = load_image(args.target)
    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    name, generator = _generator(args, adapter)
    print_notes([f"generator: {name}"])
    metrics = blend(adapter, generator, sources, target, args.out, config)
    before = sum(metrics["cos_to_target_before"]) / len(sources)
    after = sum(metrics["cos_to_target_after"]) / len(sources)
    print(f"cosine to the target {before:.3f} -> {after:.3f} over {len(sources)} sources; wrote {args.out}/blend.png, "
          "direction.pt, metrics.json")
    return 0


def _common(parser: argparse.ArgumentParser, steps: int, lr: float) -> None:
    parser.add_argument("--steps", type=int, default=steps, help="optimisation steps")
    parser.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0, help="random latents and augmentations")
    parser.add_argument("--snapshot-every", type=int, default=50, help="steps between snapshots and checkpoints")
    parser.add_argument("--size", type=int, default=None,
                        help="generated image side in pixels (default: 64 with the bundled model, else the model's "
                             "input size)")
    add_generator_arguments(parser, DEFAULT_GENERATOR)
    add_model_arguments(parser)


def _words(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--words", nargs="+", default=None,
                        help="the semantic words to keep relevant (default: the text's content words, spaCy's stop "
                             "words removed)")
    parser.add_argument("--word-score", default="paper", choices=word_scores(),
                        help="paper: max over a word's tokens, mean over words; released: the released code's "
                             "weighted token sum")
    parser.add_argument("--explainer", default="chefer2021", choices=explainer_names(),
                        help="explainer of the word relevance (needs text relevance)")


def add_commands(commands) -> None:
    edit = add_command(commands, "edit", "edit an image towards a text, keeping every semantic word relevant",
                       "StyleCLIP latent optimisation from the image's latent plus the paper's Eq. 3 word term. "
                       "With --expl-weight auto, lambda = 0, 0.5, ..., 3.5 run side by side and the result CLIP "
                       "scores highest is kept. A rerun with the same options resumes.")
    edit.add_argument("image", help="the picture to edit")
    edit.add_argument("--text", required=True, help="what the edited picture should show")
    edit.add_argument("--out", default="out/edit", help="output folder (edited.png, compare.png, metrics.json)")
    edit.add_argument("--expl-weight", type=_lambda, default=None,
                      help="lambda of the word term: 'auto' (the paper's sweep) or a number (default: auto)")
    edit.add_argument("--neglected-only", action="store_true",
                      help="keep only the semantic words CLIP neglects on the input (relevance below 0.7 of the "
                           "top word)")
    edit.add_argument("--l2", type=float, default=None,
                      help="weight of ||z - z0||^2 (default: the generator's own: world-vqgan's is derived from its "
                           "latent, other generators use StyleCLIP's 0.008)")
    edit.add_argument("--identity-weight", type=float, default=0.0,
                      help="weight of 1 - CLIP image-image cosine to the input (0: off, as StyleCLIP's default)")
    _words(edit)
    _common(edit, steps=300, lr=0.1)
    edit.set_defaults(run=cmd_edit)

    generate = add_command(commands, "generate", "generate an image for a multi-word text (every word counts)",
                           "From the best of --candidates random latents, optimise the image for the text over "
                           "augmented views: CLIP alone (--guidance clip) or with the word term (ntlb). Resumes.")
    generate.add_argument("--text", required=True, help="the text to generate")
    generate.add_argument("--out", default="out/generate", help="output folder (image.png, metrics.json)")
    generate.add_argument("--guidance", default="ntlb", choices=["ntlb", "clip"],
                          help="ntlb: CLIP + the word term; clip: the CLIP-only baseline")
    add_old_name(generate, "--method", "--guidance", choices=["ntlb", "clip"])
    generate.add_argument("--expl-weight", type=float, default=1.0, help="lambda of the word term")
    generate.add_argument("--candidates", type=int, default=16, help="random latents ranked for the start")
    generate.add_argument("--views", type=int, default=4, help="augmented views per step")
    _words(generate)
    _common(generate, steps=300, lr=0.1)
    generate.set_defaults(run=cmd_generate)

    blend = add_command(commands, "blend", "carry a target image's essence onto source images",
                        "One latent direction b such that CLIP sees each G(z_s + b) as the target while it stays "
                        "close to its source (image-guided essence transfer). Resumes.")
    blend.add_argument("sources", nargs="+", help="source pictures")
    blend.add_argument("--target", required=True, help="the picture whose essence to transfer")
    blend.add_argument("--out", default="out/blend", help="output folder (blend.png, direction.pt, metrics.json)")
    blend.add_argument("--consistency", type=float, default=0.5,
                       help="weight of the same CLIP shift for every source")
    blend.add_argument("--identity", type=float, default=0.5, help="weight of closeness to each source")
    _common(blend, steps=200, lr=0.05)
    blend.set_defaults(run=cmd_blend)

