"""`ntlb prompt train|eval|explain`: few-shot prompt learning with the explainability loss, from the shell."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import ModelChoice
from ..config.prompts import EvalInputs, PromptConfig, PromptExplainInputs, TrainInputs, TrainResources
from .common import add_command, add_device_argument, add_model_arguments, load_adapter, model_adapter, print_notes
from .fields import add_config, read_config


def cmd_train(args: argparse.Namespace) -> int:
    from ..distributed import current_world, process_device
    from ..tasks.explaining.files import model_notes
    from ..tasks.explaining.folders import read_image_folder
    from ..tasks.prompting.training import load_learner, train_prompts

    model = read_config(ModelChoice, args)
    config = read_config(PromptConfig, args, model=model.model, pretrained=model.pretrained)
    inputs = read_config(TrainInputs, args)
    resources = read_config(TrainResources, args)
    data = read_image_folder(inputs.data, inputs.classnames)
    world = current_world(resources.device)
    adapter = model_adapter(args, process_device(resources.device, world))
    if world.main:
        print_notes(model_notes(adapter))
    out = train_prompts(adapter, data, inputs.out, config, workers=resources.workers,
                        max_memory=resources.max_memory)
    if not world.main:
        return 0
    learner, _ = load_learner(adapter, out)
    print(f"wrote {out} ({len(data.classnames)} classes, {config.shots} shot(s), M={learner.n_ctx}, "
          f"lambda={config.expl_weight}, {config.explainer}); nearest words of the context vectors:")
    for row in learner.nearest_words(adapter)[: 3 if config.csc else 1]:
        print("  " + " ".join(row))
    return 0


def _load_prompts(path: str, device: str):
    """The model a prompts file was trained with, its learned prompts on it, and its settings (the file read once)."""
    from ..tasks.prompting.training import load_learner, read_prompts

    state = read_prompts(path)
    adapter = load_adapter(state["settings"]["model"], state["settings"]["pretrained"], device)
    learner, _ = load_learner(adapter, path, state)
    return adapter, learner, state["settings"]


def cmd_eval(args: argparse.Namespace) -> int:
    from ..io import check_output
    from ..tasks.explaining.files import model_notes
    from ..tasks.prompting.training import evaluate_prompts

    inputs = read_config(EvalInputs, args)
    out = check_output(inputs.out or Path(inputs.prompts).with_suffix(".eval"))
    adapter, learner, settings = _load_prompts(inputs.prompts, args.device)
    results = evaluate_prompts(adapter, learner, inputs.data, out, inputs.prompts, settings)
    print_notes(model_notes(adapter))
    for folder, result in results.items():
        print(f"{folder}: accuracy {100 * result['accuracy']:.2f}% ({result['images']} images, "
              f"{result['classes']} classes) -> {out / result['file']}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from ..tasks.prompting.explaining import explain_prompt_files
    from ..viz import words_terminal

    inputs = read_config(PromptExplainInputs, args)
    adapter, learner, _ = _load_prompts(inputs.prompts, args.device)
    data = explain_prompt_files(adapter, learner, inputs.images, inputs.label, inputs.out)
    for record in data["pairs"]:
        print(f"{Path(record['image']).name} {record['class']} [{record['role']}] p={record['probability']:.2f} "
              f"{words_terminal([tuple(w) for w in record['words']])}")
    print_notes(data["notes"])
    print(f"wrote {inputs.out}/report.html and prompt_explanations.json")
    return 0


def add_commands(commands) -> None:
    prompt = add_command(commands, "prompt", "few-shot prompt learning (CoOp) with the explainability loss",
                         "Learn prompts on K shots per class, evaluate them, explain them.")
    sub = prompt.add_subparsers(dest="prompt_command", required=True)

    train = add_command(sub, "train", "learn context vectors on K images per class (resumes)",
                        "CoOp with lambda * (-S(c_gt) + mean S(c)) on the class name; CLIP frozen. Defaults: "
                        "the released code's score and reduction, lambda 0.1 (the paper's Eq. 2 + 3 with lambda 3 "
                        "collapses accuracy: docs/results-prompt-learning.md). A rerun resumes, also on another "
                        "device or with another --max-memory.")
    add_config(train, TrainInputs, skip=("out",))
    add_config(train, PromptConfig)
    add_config(train, TrainResources)
    add_model_arguments(train, device=False)
    add_config(train, TrainInputs, skip=("data", "classnames"))
    train.set_defaults(run=cmd_train, out_kind="file")

    evaluate = add_command(sub, "eval", "accuracy of learned prompts on image-folder datasets",
                           "Accuracy per dataset, one JSON each; a dataset may use a subset of the classes.")
    add_config(evaluate, EvalInputs)
    add_device_argument(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    explain = add_command(sub, "explain", "relevance of the learned prompt's words and the image patches",
                          "For the predicted (and --label) class: v1..vM, class-name and patch relevance "
                          "(paper Fig. 2).")
    add_config(explain, PromptExplainInputs)
    add_device_argument(explain)
    explain.set_defaults(run=cmd_explain)
