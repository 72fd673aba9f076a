"""Paper Table 1 and Fig. 5 on the world model: few-shot prompt learning with and without the explainability loss.

    python benchmarks/prompt_learning_results.py [--shots 1 2 4] [--seeds 0 1 2] [--epochs 50] [--quick]

Trains on K shots per class of the world's 48 colour x shape classes ("train" split) and tests on held-out
scenes of the same world ("base") and its shifted variants (seed, outline, clutter, palette; the roles of
ImageNet-V2, -Sketch, -A, -R; "clutter" and "palette" use a 24-class subset, as -A and -R use 200 of 1000).
Rows: zero-shot (hand prompt, template ensemble), linear probe, CoOp M=16/4, ntlb M=16/4 (lambda = --lambda),
unified and CSC. Mean and std over seeds. Then accuracy against lambda (Fig. 5). Writes
docs/results-prompt-learning.json and prints the markdown tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

import ntlb
from ntlb.io import write_json_atomic
from ntlb.tasks import text_classifier
from ntlb.tasks.folders import class_subset, read_image_folder
from ntlb.tasks.linear_probe import fit_linear_probe, probe_predict
from ntlb.tasks.prompt_training import (
    PromptConfig,
    accuracy,
    dataset_features,
    load_learner,
    prompt_classifier,
    train_prompts,
)
from ntlb.world import class_names
from ntlb.world.datasets import export_classification

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("base", "seed", "outline", "clutter", "palette")
SUBSET = {"clutter", "palette"}


def export_data(cache: Path, per_class_test: int, max_shots: int) -> dict[str, Path]:
    """The training split and every test variant as image folders (the subset variants keep 24 classes)."""
    paths = {"train": cache / "train"}
    if not (cache / "train" / "classnames.txt").is_file():
        export_classification(cache / "train", split="train", per_class=max_shots)
    keep = set(class_names()[::2])
    for variant in VARIANTS:
        path = cache / f"test-{variant}"
        if not (path / "classnames.txt").is_file():
            export_classification(path, split="test", variant=variant, per_class=per_class_test)
            if variant in SUBSET:
                for folder in path.iterdir():
                    if folder.is_dir() and folder.name.replace("_", " ") not in keep:
                        shutil.rmtree(folder)
        paths[variant] = path
    return paths


def mean_std(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}" if len(values) > 1 else f"{100 * values[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lambda", dest="weight", type=float, default=3.0, help="ntlb's lambda (paper: 3 for B/32)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0, 0.5, 1, 2, 3, 5], help="for Fig. 5")
    parser.add_argument("--per-class-test", type=int, default=10)
    parser.add_argument("--cache", default=str(ROOT / "runs" / "prompt-results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-prompt-learning.json"))
    parser.add_argument("--quick", action="store_true", help="1 shot, 1 seed, 5 epochs: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.shots, args.seeds, args.epochs, args.lambdas = [1], [0], 5, [0, 3]
    cache = Path(args.cache)
    adapter = ntlb.load_model()
    paths = export_data(cache, args.per_class_test, max(args.shots))
    train = read_image_folder(paths["train"])
    names = train.classnames
    tests = {v: read_image_folder(paths[v]) for v in VARIANTS}
    features = {v: dataset_features(adapter, d) for v, d in tests.items()}
    columns = {v: class_subset(names, d.classnames) for v, d in tests.items()}
    results: dict = {"settings": vars(args), "rows": {}}

    def record(row: str, shots: int, key: str, values: list[float]) -> None:
        results["rows"].setdefault(row, {}).setdefault(str(shots), {})[key] = values

    hand = text_classifier(adapter, names, ("a photo of a {}.",))
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    ensemble = text_classifier(adapter, names, [t("{}") for t in OPENAI_IMAGENET_TEMPLATES])
    for shots in args.shots:
        for v in VARIANTS:
            record("0-shot hand prompt", shots, f"unified/{v}", [accuracy(*features[v], hand, columns[v])])
            record("0-shot ensemble", shots, f"unified/{v}", [accuracy(*features[v], ensemble, columns[v])])
        for seed in args.seeds:
            shot_data = train.few_shot(shots, seed)
            shot_features, shot_labels = dataset_features(adapter, shot_data)
            weights, bias = fit_linear_probe(shot_features, shot_labels, len(names))
            for v in VARIANTS:
                x, y = features[v]
                predicted = probe_predict(x, weights, bias, columns[v])
                hit = float((predicted == torch.tensor(columns[v])[y]).float().mean())
                results["rows"].setdefault("linear probe", {}).setdefault(str(shots), {}).setdefault(
                    f"unified/{v}", []).append(hit)
            for n_ctx in (16, 4):
                for weight, label in ((0.0, "CoOp"), (args.weight, "ntlb")):
                    for csc in (False, True):
                        config = PromptConfig(n_ctx=n_ctx, position="middle", csc=csc, expl_weight=weight,
                                              shots=shots, seed=seed, epochs=args.epochs)
                        out = cache / "runs" / f"{label}-M{n_ctx}-{'csc' if csc else 'uni'}-k{shots}-s{seed}.pt"
                        train_prompts(adapter, train, out, config)
                        learner, _ = load_learner(adapter, out)
                        classifier = prompt_classifier(adapter, learner)
                        for v in VARIANTS:
                            key = f"{'csc' if csc else 'unified'}/{v}"
                            results["rows"].setdefault(f"{label} M={n_ctx}", {}).setdefault(str(shots), {}) \
                                .setdefault(key, []).append(accuracy(*features[v], classifier, columns[v]))
            write_json_atomic(args.out, results)
    sensitivity = {}
    for weight in args.lambdas:
        values = []
        for seed in args.seeds:
            config = PromptConfig(n_ctx=16, position="middle", expl_weight=weight, shots=1, seed=seed,
                                  epochs=args.epochs)
            out = cache / "runs" / f"lambda{weight}-M16-uni-k1-s{seed}.pt"
            train_prompts(adapter, train, out, config)
            learner, _ = load_learner(adapter, out)
            values.append([accuracy(*features[v], prompt_classifier(adapter, learner), columns[v]) for v in VARIANTS])
        sensitivity[str(weight)] = values
    results["lambda_sensitivity"] = sensitivity
    write_json_atomic(args.out, results)
    for shots in args.shots:
        print(f"\n### {shots} shot(s): accuracy % (mean ± std over seeds {args.seeds})\n")
        header = [f"{mode} {v}" for mode in ("unified", "csc") for v in VARIANTS]
        print("| method | " + " | ".join(header) + " |\n|---|" + "---:|" * len(header))
        for row, by_shots in results["rows"].items():
            entry = by_shots.get(str(shots), {})
            cells = [mean_std(entry[k.replace(" ", "/")]) if k.replace(" ", "/") in entry else "—" for k in header]
            print(f"| {row} | " + " | ".join(cells) + " |")
    print("\n### lambda sensitivity (M=16, unified, 1 shot; mean over seeds)\n")
    print("| lambda | " + " | ".join(VARIANTS) + " |\n|---|" + "---:|" * len(VARIANTS))
    for weight, values in sensitivity.items():
        print(f"| {weight} | " + " | ".join(f"{100 * m:.1f}" for m in np.mean(values, axis=0)) + " |")
    print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
