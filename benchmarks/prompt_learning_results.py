"""Paper Table 1 and Fig. 5 on the world model: few-shot prompt learning with and without the explainability loss.

    python benchmarks/prompt_learning_results.py [--shots 1 2 4] [--seeds 0 1 2] [--epochs 50 25 12] [--jobs 2]

Trains on K shots per class of the world's 48 colour x shape classes ("train" split) and tests on held-out
scenes of the same world ("base") and its shifted variants (seed, outline, clutter, palette; the roles of
ImageNet-V2, -Sketch, -A, -R; "clutter" and "palette" use a 24-class subset, as -A and -R use 200 of 1000).
Rows: zero-shot (hand prompt, template ensemble), linear probe, CoOp M=16/4, ntlb M=16/4 (lambda = --lambda;
paper Eq. 2 score, sum over the other classes), ntlb-released M=16 (the released code's score and mean), unified
and CSC. Mean and std over seeds. Then accuracy against lambda (Fig. 5). Writes
docs/results-prompt-learning.json and prints the markdown tables.

--epochs gives one count per shot setting (default 50, 25, 12: about 100 SGD steps of batch 32 for each), so the
three tables cost the same. The trainings run in --jobs worker processes (one thread each); a finished run is
cached under --cache and not trained again.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import ntlb
from ntlb.io import write_json_atomic
from ntlb.models import text_features
from ntlb.tasks.folders import class_subset, read_image_folder
from ntlb.tasks.linear_probe import fit_linear_probe, probe_predict
from ntlb.tasks.prompt_training import (
    PromptConfig,
    accuracy,
    dataset_features,
    dataset_labels,
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
    """The training split (16 images per class to draw shots from) and every test variant as image folders
    (the subset variants keep 24 classes)."""
    paths = {"train": cache / "train"}
    if not (cache / "train" / "classnames.txt").is_file():
        export_classification(cache / "train", split="train", per_class=max(16, max_shots))  # seeds draw others
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


@dataclass(frozen=True)
class Run:
    """One prompt-learning training of the tables."""

    label: str  # "CoOp", "ntlb", "ntlb-released" (the released code's S and reduction) or "lambda{value}"
    n_ctx: int
    weight: float
    csc: bool
    shots: int
    seed: int
    epochs: int

    def path(self, cache: Path) -> Path:
        mode = "csc" if self.csc else "uni"
        return cache / "runs" / f"{self.label}-M{self.n_ctx}-{mode}-k{self.shots}-s{self.seed}-e{self.epochs}.pt"

    def config(self) -> PromptConfig:
        released = self.label == "ntlb-released"
        return PromptConfig(n_ctx=self.n_ctx, position="middle", csc=self.csc, expl_weight=self.weight,
                            score="coop" if released else "paper", reduction="released" if released else "paper",
                            shots=self.shots, seed=self.seed, epochs=self.epochs)


_WORKER: dict = {}


def _start_worker(train_root: str) -> None:
    torch.set_num_threads(1)
    _WORKER["adapter"] = ntlb.load_model()
    _WORKER["train"] = read_image_folder(train_root)


def _train(job: tuple[Run, Path]) -> Path:
    run, cache = job
    return train_prompts(_WORKER["adapter"], _WORKER["train"], run.path(cache), run.config(), progress=False)


def train_all(runs: list[Run], cache: Path, train_root: Path, jobs: int) -> None:
    """Train every run not cached yet, in `jobs` single-threaded worker processes."""
    todo = [(run, cache) for run in dict.fromkeys(runs) if not _finished(run, cache)]
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, initializer=_start_worker, initargs=(str(train_root),)) as pool:
        for _ in tqdm(pool.imap_unordered(_train, todo), total=len(todo), desc="prompt trainings", unit="run"):
            pass


def _finished(run: Run, cache: Path) -> bool:
    path = run.path(cache)
    return path.is_file() and torch.load(path, map_location="cpu", weights_only=False)["epoch"] >= run.epochs


def sensitivity_figure(sensitivity: dict[str, list[list[float]]], shots: int, path: Path) -> None:
    """Paper Fig. 5: accuracy against lambda on every test variant (mean and std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ntlb.io import save_figure_atomic

    weights = [float(w) for w in sensitivity]
    values = np.array([sensitivity[w] for w in sensitivity]) * 100  # (lambdas, seeds, variants)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for index, variant in enumerate(VARIANTS):
        ax.errorbar(weights, values[:, :, index].mean(axis=1), yerr=values[:, :, index].std(axis=1), marker="o",
                    capsize=3, label=variant)
    ax.set_xlabel("lambda (explainability loss weight)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"ntlb M=16 unified, {shots} shot: accuracy against lambda", fontsize=9)
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    save_figure_atomic(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[50, 25, 12], help="one per --shots value, or one")
    parser.add_argument("--lambda", dest="weight", type=float, default=3.0, help="ntlb's lambda (paper: 3 for B/32)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0, 0.5, 1, 2, 3, 5], help="for Fig. 5")
    parser.add_argument("--per-class-test", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the trainings")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "prompt-results"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "results-prompt-learning.json"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "results-prompt-lambda.png"))
    parser.add_argument("--quick", action="store_true", help="1 shot, 1 seed, 5 epochs: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.shots, args.seeds, args.epochs, args.lambdas = [1], [0], [5], [0, 3]
    if len(args.epochs) == 1:
        args.epochs = args.epochs * len(args.shots)
    if len(args.epochs) != len(args.shots):
        parser.error("give one --epochs value, or one per --shots value")
    epochs = dict(zip(args.shots, args.epochs))
    cache = Path(args.cache)
    paths = export_data(cache, args.per_class_test, max(args.shots))
    table = [Run(label, n_ctx, weight, csc, shots, seed, epochs[shots])
             for shots in args.shots for seed in args.seeds for n_ctx in (16, 4)
             for label, weight in (("CoOp", 0.0), ("ntlb", args.weight)) for csc in (False, True)]
    table += [Run("ntlb-released", 16, args.weight, csc, shots, seed, epochs[shots])
              for shots in args.shots for seed in args.seeds for csc in (False, True)]
    sensitivity_shots = min(args.shots)
    labels = {0.0: "CoOp", args.weight: "ntlb"}  # lambda 0 and lambda = --lambda are runs of the table
    sensitivity_runs = {weight: [Run(labels.get(weight, f"lambda{weight}"), 16, weight, False, sensitivity_shots,
                                     seed, epochs[sensitivity_shots]) for seed in args.seeds]
                        for weight in args.lambdas}
    train_all(table + [r for runs in sensitivity_runs.values() for r in runs], cache, paths["train"], args.jobs)

    adapter = ntlb.load_model()
    train = read_image_folder(paths["train"])
    names = train.classnames
    tests = {v: read_image_folder(paths[v]) for v in VARIANTS}
    features = {v: (dataset_features(adapter, d), dataset_labels(d)) for v, d in tests.items()}
    columns = {v: class_subset(names, d.classnames) for v, d in tests.items()}
    results: dict = {"settings": vars(args), "rows": {}}

    def record(row: str, shots: int, key: str, value: float) -> None:
        results["rows"].setdefault(row, {}).setdefault(str(shots), {}).setdefault(key, []).append(value)

    def prompt_accuracies(run: Run) -> list[float]:
        learner, _ = load_learner(adapter, run.path(cache))
        classifier = prompt_classifier(adapter, learner)
        return [accuracy(*features[v], classifier, columns[v]) for v in VARIANTS]

    hand = text_features(adapter, names, ("a photo of a {}.",))
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    ensemble = text_features(adapter, names, [t("{}") for t in OPENAI_IMAGENET_TEMPLATES])
    for shots in args.shots:
        for v in VARIANTS:
            record("0-shot hand prompt", shots, f"unified/{v}", accuracy(*features[v], hand, columns[v]))
            record("0-shot ensemble", shots, f"unified/{v}", accuracy(*features[v], ensemble, columns[v]))
        for seed in args.seeds:
            shot_data = train.few_shot(shots, seed)
            shot_features = dataset_features(adapter, shot_data)
            weights, bias = fit_linear_probe(shot_features, dataset_labels(shot_data), len(names))
            for v in VARIANTS:
                x, y = features[v]
                predicted = probe_predict(x, weights, bias, columns[v])
                record("linear probe", shots, f"unified/{v}", float((predicted == torch.tensor(columns[v])[y])
                                                                   .float().mean()))
    for run in table:
        for v, value in zip(VARIANTS, prompt_accuracies(run)):
            record(f"{run.label} M={run.n_ctx}", run.shots, f"{'csc' if run.csc else 'unified'}/{v}", value)
    sensitivity = {str(w): [prompt_accuracies(run) for run in runs] for w, runs in sensitivity_runs.items()}
    results["lambda_sensitivity"] = sensitivity
    results["lambda_sensitivity_shots"] = sensitivity_shots
    write_json_atomic(args.out, results)
    sensitivity_figure(sensitivity, sensitivity_shots, Path(args.figure))
    for shots in args.shots:
        print(f"\n### {shots} shot(s), {epochs[shots]} epochs: accuracy % (mean ± std over seeds {args.seeds})\n")
        header = [f"{mode} {v}" for mode in ("unified", "csc") for v in VARIANTS]
        print("| method | " + " | ".join(header) + " |\n|---|" + "---:|" * len(header))
        for row, by_shots in results["rows"].items():
            entry = by_shots.get(str(shots), {})
            cells = [mean_std(entry[k.replace(" ", "/")]) if k.replace(" ", "/") in entry else "—" for k in header]
            print(f"| {row} | " + " | ".join(cells) + " |")
    print(f"\n### lambda sensitivity (M=16, unified, {sensitivity_shots} shot; mean ± std over seeds)\n")
    print("| lambda | " + " | ".join(VARIANTS) + " |\n|---|" + "---:|" * len(VARIANTS))
    for weight, values in sensitivity.items():
        per_variant = np.array(values).T.tolist()
        print(f"| {weight} | " + " | ".join(mean_std(v) for v in per_variant) + " |")
    print(json.dumps({"out": args.out}))


if __name__ == "__main__":
    main()
