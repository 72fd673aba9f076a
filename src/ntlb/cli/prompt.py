"""`ntlb prompt train|eval|explain`: few-shot prompt learning with the explainability loss, from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_command,
    add_device_argument,
    add_model_arguments,
    class_name_scores,
    explainer_names,
    load_adapter,
    print_notes,
)


def cmd_train(args: argparse.Namespace) -> int:
    from ..distributed import current_world, process_device
    from ..tasks.explaining import model_notes
    from ..tasks.folders import read_image_folder
    from ..tasks.prompt_training import PromptConfig, load_learner, train_prompts

    config = PromptConfig(
        n_ctx=args.ctx, position=args.position, csc=args.csc, init=args.init, expl_weight=args.expl_weight,
        explainer=args.explainer, score=args.score, reduction=args.reduction,
        also_minimize=not args.no_also_minimize, shots=args.shots, seed=args.seed, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, augment=not args.no_augment, model=args.model,
        pretrained=args.pretrained, max_memory=args.max_memory,
    )
    data = read_image_folder(args.data, args.classnames)
    world = current_world(args.device)
    adapter = load_adapter(args.model, args.pretrained, process_device(args.device, world), tokenizer=args.tokenizer)
    if world.main:
        print_notes(model_notes(adapter))
    out = train_prompts(adapter, data, args.out, config, workers=args.workers)
    if not world.main:
        return 0
    learner, _ = load_learner(adapter, out)
    print(f"wrote {out} ({len(data.classnames)} classes, {config.shots} shot(s), M={learner.n_ctx}, "
          f"lambda={config.expl_weight}, {config.explainer}); nearest words of the context vectors:")
    for row in learner.nearest_words(adapter)[: 3 if config.csc else 1]:
        print("  " + " ".join(row))
    return 0


def _load_prompts(path: str, device: str):
    from ..tasks.prompt_training import load_learner, read_prompts

    settings = read_prompts(path)["settings"]
    adapter = load_adapter(settings["model"], settings["pretrained"], device)
    learner, _ = load_learner(adapter, path)
    return adapter, learner


def cmd_eval(args: argparse.Namespace) -> int:
    from ..io import check_output
    from ..tasks.explaining import model_notes
    from ..tasks.prompt_training import evaluate_prompts

    out = check_output(args.out or Path(args.prompts).with_suffix(".eval"))
    adapter, learner = _load_prompts(args.prompts, args.device)
    results = evaluate_prompts(adapter, learner, args.data, out, args.prompts)
    print_notes(model_notes(adapter))
    for folder, result in results.items():
        print(f"{folder}: accuracy {100 * result['accuracy']:.2f}% ({result['images']} images, "
              f"{result['classes']} classes) -> {out / result['file']}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from ..tasks.prompt_explain import explain_prompt_files
    from ..viz import words_terminal

    adapter, learner = _load_prompts(args.prompts, args.device)
    data = explain_prompt_files(adapter, learner, args.images, args.label, args.out)
    for record in data["pairs"]:
        print(f"{Path(record['image']).name} {record['class']} [{record['role']}] p={record['probability']:.2f} "
              f"{words_terminal([tuple(w) for w in record['words']])}")
    print_notes(data["notes"])
    print(f"wrote {args.out}/report.html and prompt_explanations.json")
    return 0


def add_commands(commands) -> None:
    prompt = add_command(commands, "prompt", "few-shot prompt learning (CoOp) with the explainability loss",
                         "Learn prompts on K shots per class, evaluate them, explain them.")
    sub = prompt.add_subparsers(dest="prompt_command", required=True)

    train = add_command(sub, "train", "learn context vectors on K images per class (resumes)",
                        "CoOp with lambda * (-S(c_gt) + mean S(c)) on the class name; CLIP frozen. Defaults: "
                        "the released code's score and reduction, lambda 0.1 (the paper's Eq. 2 + 3 with lambda 3 "
                        "collapses accuracy: docs/results-prompt-learning.md).")
    train.add_argument("--data", required=True, help="image folder: one sub-folder per class (classnames.txt "
                                                     "optional; ImageNet synset folders named automatically)")
    train.add_argument("--classnames", default=None,
                       help="class names file ('<folder> <name>' per line) (default: classnames.txt in --data, "
                            "else the folder names)")
    train.add_argument("--shots", type=int, default=1, help="images per class")
    train.add_argument("--ctx", type=int, default=16, help="number M of context vectors")
    train.add_argument("--position", default="middle", choices=["end", "middle", "front"],
                       help="where the class name goes")
    train.add_argument("--csc", action="store_true", help="class-specific context vectors")
    train.add_argument("--init", default=None,
                       help="initialise from words, e.g. 'a photo of a' (sets M) (default: random vectors)")
    train.add_argument("--expl-weight", type=float, default=0.1,
                       help="lambda of the explainability loss; 0 is CoOp (default 0.1: within 1 point of CoOp on "
                            "the world's shifted sets, where 1 costs up to 2.8; paper: 1 ViT-B/16, 3 others)")
    train.add_argument("--explainer", default="chefer2021", choices=explainer_names(),
                       help="explainer whose text relevance the loss reads")
    train.add_argument("--score", default="coop", choices=class_name_scores(),
                       help="S(c): the released code's share of the relevance on the class name, or the paper's Eq. 2 "
                            "ratio (unbounded: with --reduction paper and lambda 3 it collapses accuracy, "
                            "docs/results-prompt-learning.md)")
    train.add_argument("--reduction", default="released", choices=["released", "paper", "bounded"],
                       help="the term on the other classes: the released code's mean over B x C, the paper's sum over "
                            "the other classes (Eq. 3), or its mean (bounded)")
    train.add_argument("--no-also-minimize", action="store_true", help="drop the term on the wrong classes")
    train.add_argument("--epochs", type=int, default=50, help="passes over the shots")
    train.add_argument("--batch-size", type=int, default=32, help="images per step")
    train.add_argument("--lr", type=float, default=0.002, help="SGD learning rate (1 warm-up epoch, then cosine)")
    train.add_argument("--no-augment", action="store_true", help="no random resized crop and flip")
    train.add_argument("--seed", type=int, default=0, help="shots, initialisation and shuffling")
    train.add_argument("--max-memory", default=None,
                       help="memory budget of one step, e.g. 8GB: classes go through the text encoder in chunks to "
                            "fit it (default: half the memory available)")
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    add_model_arguments(train)
    train.add_argument("--out", required=True,
                       help="prompts file to write when training ends (until then the checkpoint is <out>.partial, "
                            "which a rerun resumes from)")
    train.set_defaults(run=cmd_train, out_kind="file")

    evaluate = add_command(sub, "eval", "accuracy of learned prompts on image-folder datasets",
                           "Accuracy per dataset, one JSON each; a dataset may use a subset of the classes.")
    evaluate.add_argument("--prompts", required=True, help="prompts file from 'ntlb prompt train'")
    evaluate.add_argument("--data", nargs="+", required=True, help="image folders to evaluate on")
    evaluate.add_argument("--out", default=None,
                          help="folder for one <dataset>.json per dataset (default: the prompts file's name + .eval/)")
    add_device_argument(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    explain = add_command(sub, "explain", "relevance of the learned prompt's words and the image patches",
                          "For the predicted (and --label) class: v1..vM, class-name and patch relevance "
                          "(paper Fig. 2).")
    explain.add_argument("images", nargs="+", help="image files")
    explain.add_argument("--prompts", required=True, help="prompts file from 'ntlb prompt train'")
    explain.add_argument("--label", default=None,
                         help="the true class name, explained beside the prediction (default: the prediction only)")
    explain.add_argument("--out", default="out/prompt-explain", help="output folder")
    add_device_argument(explain)
    explain.set_defaults(run=cmd_explain)
