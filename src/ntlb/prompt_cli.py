"""`ntlb prompt train|eval|explain`: few-shot prompt learning with the explainability loss, from the shell."""

from __future__ import annotations

import argparse
import html
import warnings
from pathlib import Path

from .errors import NtlbError


def _load(model: str | None, pretrained: str | None, device: str):
    from .models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(model, pretrained, device=device)


def cmd_train(args: argparse.Namespace) -> int:
    from .tasks.folders import read_image_folder
    from .tasks.prompt_training import PromptConfig, load_learner, train_prompts

    data = read_image_folder(args.data, args.classnames)
    config = PromptConfig(
        n_ctx=args.ctx, position=args.position, csc=args.csc, init=args.init, expl_weight=args.expl_weight,
        score=args.score, reduction=args.reduction, also_minimize=not args.no_also_minimize, shots=args.shots,
        seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=not args.no_augment,
        model=args.model, pretrained=args.pretrained,
    )
    adapter = _load(args.model, args.pretrained, args.device)
    out = train_prompts(adapter, data, args.out, config)
    learner, _ = load_learner(adapter, out)
    print(f"wrote {out} ({len(data.classnames)} classes, {config.shots} shot(s), M={learner.n_ctx}, "
          f"lambda={config.expl_weight}); nearest words of the context vectors:")
    for row in learner.nearest_words(adapter)[: 3 if config.csc else 1]:
        print("  " + " ".join(row))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .io import write_json_atomic
    from .tasks.folders import read_image_folder
    from .tasks.prompt_training import evaluate, load_learner, prompt_classifier, read_prompts

    config = read_prompts(args.prompts)["config"]
    adapter = _load(config["model"], config["pretrained"], args.device)
    learner, _ = load_learner(adapter, args.prompts)
    classifier = prompt_classifier(adapter, learner)
    results = {}
    for folder in args.data:
        data = read_image_folder(folder)
        results[str(folder)] = {"accuracy": evaluate(adapter, classifier, data, learner.classnames),
                                "images": len(data.samples), "classes": len(data.classnames)}
        print(f"{folder}: accuracy {100 * results[str(folder)]['accuracy']:.2f}% "
              f"({len(data.samples)} images, {len(data.classnames)} classes)")
    out = Path(args.out or Path(args.prompts).with_suffix(".eval.json"))
    write_json_atomic(out, {"prompts": str(args.prompts), "config": config, "results": results})
    print(f"wrote {out}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:

    from .explain.inputs import prepare_images
    from .io import save_image_atomic, write_json_atomic, write_text_atomic
    from .tasks.prompt_explain import explain_prompts
    from .tasks.prompt_training import load_learner, read_prompts
    from .viz import overlay, words_ansi, words_html

    config = read_prompts(args.prompts)["config"]
    adapter = _load(config["model"], config["pretrained"], args.device)
    learner, _ = load_learner(adapter, args.prompts)
    names = learner.classnames
    pixels, originals = prepare_images(adapter, args.images)
    true = None
    if args.label:
        if args.label not in names:
            raise NtlbError(f"--label '{args.label}' is not one of the prompts' {len(names)} classes")
        true = names.index(args.label)
    probabilities, predicted, results = explain_prompts(adapter, learner, pixels, [true] * len(args.images))
    out = Path(args.out)
    records, rows = [], []
    for b, entries in enumerate(results):
        for c, words, patch_map in entries:
            role = ("predicted" if c == predicted[b] else "") + (" true" if c == true else "")
            name = f"{b:03d}_{names[c].replace(' ', '_')}.png"
            if patch_map is not None:
                save_image_atomic(out / name, overlay(originals[b], patch_map, adapter.preprocess_config))
            records.append({"image": str(args.images[b]), "class": names[c], "role": role.strip(),
                            "probability": float(probabilities[b, c]), "words": words,
                            "overlay": name if patch_map is not None else None})
            print(f"{Path(args.images[b]).name} [{role.strip()}] p={float(probabilities[b, c]):.2f} "
                  f"{words_ansi(words)}")
            picture = f'<img src="{name}" width="160">' if patch_map is not None else ""
            rows.append(f"<tr><td>{html.escape(Path(args.images[b]).name)}</td><td>{html.escape(role)}</td>"
                        f"<td>{float(probabilities[b, c]):.2f}</td><td>{words_html(words)}</td><td>{picture}</td></tr>")
    write_json_atomic(out / "prompt_explanations.json", {"prompts": str(args.prompts), "pairs": records})
    write_text_atomic(out / "report.html", "<html><body><h3>Relevance of the learned prompt's words</h3>"
                      "<table><tr><th>image</th><th>class</th><th>p</th><th>words</th><th>map</th></tr>"
                      + "".join(rows) + "</table></body></html>\n")
    print(f"wrote {out}/report.html and prompt_explanations.json")
    return 0


def add_prompt_commands(commands) -> None:
    """Register `ntlb prompt ...` on the main parser's sub-commands."""
    prompt = commands.add_parser("prompt", help="few-shot prompt learning (CoOp) with the explainability loss",
                                 description="Learn prompts on K shots per class, evaluate them, explain them.")
    sub = prompt.add_subparsers(dest="prompt_command", required=True)

    train = sub.add_parser("train", help="learn context vectors on K images per class (resumes from --out)",
                           description="CoOp with lambda * (-S(c_gt) + sum S(c)) on the class name; CLIP frozen.")
    train.add_argument("--data", required=True, help="image folder: one sub-folder per class (classnames.txt "
                                                     "optional; ImageNet synset folders named automatically)")
    train.add_argument("--classnames", default=None, help="class names file ('<folder> <name>' per line)")
    train.add_argument("--shots", type=int, default=1, help="images per class (default 1)")
    train.add_argument("--ctx", type=int, default=16, help="number M of context vectors (default 16)")
    train.add_argument("--position", default="middle", choices=["end", "middle", "front"],
                       help="where the class name goes (default middle)")
    train.add_argument("--csc", action="store_true", help="class-specific context vectors")
    train.add_argument("--init", default=None, help="initialise from words, e.g. 'a photo of a' (sets M)")
    train.add_argument("--expl-weight", type=float, default=1.0,
                       help="lambda of the explainability loss; 0 is CoOp (paper: 1 ViT-B/16, 3 others)")
    train.add_argument("--score", default="paper", choices=["paper", "coop"],
                       help="S(c): Eq. 2 of the paper (default) or the released code's normalisation")
    train.add_argument("--reduction", default="paper", choices=["paper", "released"],
                       help="sum over the other classes (paper) or the mean over B x C (released code)")
    train.add_argument("--no-also-minimize", action="store_true", help="drop the term on the wrong classes")
    train.add_argument("--epochs", type=int, default=50)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=0.002)
    train.add_argument("--no-augment", action="store_true", help="no random resized crop and flip")
    train.add_argument("--seed", type=int, default=0, help="shots, initialisation and shuffling")
    train.add_argument("--model", default=None, help="model name/config/hf:<dir> (default: bundled ntlb-world)")
    train.add_argument("--pretrained", default=None, help="open_clip tag or checkpoint path")
    train.add_argument("--device", default="cpu")
    train.add_argument("--out", required=True, help="prompts file to write (and to resume from)")
    train.set_defaults(run=cmd_train)

    evaluate = sub.add_parser("eval", help="accuracy of learned prompts on image-folder datasets",
                              description="Accuracy per dataset; a dataset may use a subset of the classes.")
    evaluate.add_argument("--prompts", required=True, help="prompts file from 'ntlb prompt train'")
    evaluate.add_argument("--data", nargs="+", required=True, help="image folders to evaluate on")
    evaluate.add_argument("--out", default=None, help="JSON to write (default: <prompts>.eval.json)")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(run=cmd_eval)

    explain = sub.add_parser("explain", help="relevance of the learned prompt's words and the image patches",
                             description="For the predicted (and --label) class: v1..vM, class-name and patch "
                                         "relevance (paper Fig. 2).")
    explain.add_argument("images", nargs="+", help="image files")
    explain.add_argument("--prompts", required=True, help="prompts file from 'ntlb prompt train'")
    explain.add_argument("--label", default=None, help="the true class name, explained beside the prediction")
    explain.add_argument("--out", default="out/prompt-explain", help="output folder")
    explain.add_argument("--device", default="cpu")
    explain.set_defaults(run=cmd_explain)
