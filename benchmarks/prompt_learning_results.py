"""Paper Table 1 and Fig. 5 on the world model: few-shot prompt learning with and without the explainability loss,
under two protocols.

    python benchmarks/prompt_learning_results.py --protocol standard|cue [--shots 1 2 4] [--seeds 0 1 2] [--jobs 2]

"standard": K shots per class of the world's 48 colour x shape classes ("train" split); 50 / 25 / 12 epochs for
1 / 2 / 4 shots (about 100 SGD steps each). "cue": the same classes, but every training image's background is
tinted by its class (a spurious cue, `world` variant "cue"), and 50 epochs for every shot count: the protocol where
CoOp over-fits (class-specific context, many epochs, a cue that goes with the label in the shots only).

Tests: held-out scenes of the base test split and the shifted variants (seed, outline, clutter, palette: the roles
of ImageNet-V2, -Sketch, -A, -R; clutter and palette keep 24 of the 48 classes, as -A and -R keep 200 of 1000); the
cue protocol adds test sets with the class's own tint (cue) and with another class's (cue-swapped).

Rows: zero-shot (hand prompt, 80-template ensemble), linear probe, CoOp, and three explainability losses: "ntlb"
(the default: the released code's score and mean, lambda = --expl-weight), "ntlb-paper" (Eq. 2's score, Eq. 3's sum,
lambda 3), "ntlb-bounded" (Eq. 2's score, the mean over the other classes, lambda 3), and the default loss at the
paper's ViT-B/16 lambda 1; M = 16 and 4 (the variants at M = 16), unified and CSC. Mean and std over seeds, and
each loss against CoOp paired by seed. Then accuracy against lambda (Fig. 5, default loss, M = 16,
CSC for the cue protocol) with what the loss raises, the true class's share of relevance on its name (S(c_gt) on the
base test set), and the class name at the end. Writes docs/results-prompt-learning-<protocol>.json and
docs/results-prompt-lambda-<protocol>.png and prints the markdown tables. Trainings run in --jobs worker processes
(one thread each); finished runs are cached under --cache and not trained again.
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
from ntlb.cli.common import add_old_name
from ntlb.io import save_figure_atomic, write_json_atomic
from ntlb.models import text_features
from ntlb.tasks.explaining.folders import class_subset, read_image_folder
from ntlb.tasks.prompting.linear_probe import fit_linear_probe, probe_predict
from ntlb.tasks.prompting.training import (
    PromptConfig,
    accuracy,
    class_name_shares,
    dataset_features,
    dataset_labels,
    load_learner,
    prompt_classifier,
    read_prompts,
    train_prompts,
)
from ntlb.world import class_names
from ntlb.world.datasets import export_classification

ROOT = Path(__file__).resolve().parents[1]
SUBSET = {"clutter", "palette"}
PROTOCOLS = {
    "standard": {"train": "base", "tests": ("base", "seed", "outline", "clutter", "palette"), "epochs": [50, 25, 12]},
    "cue": {"train": "cue", "tests": ("base", "cue", "cue-swapped", "seed", "outline", "clutter", "palette"),
            "epochs": [50, 50, 50]},
}
PAPER_LAMBDA = 1.0  # the paper's lambda for ViT-B/16, the library default before 0.1: a row of its own at M = 16
LOSSES = {  # label: (score, reduction, lambda; None = --expl-weight)
    "CoOp": ("coop", "released", 0.0),
    "ntlb": ("coop", "released", None),
    "ntlb-paper": ("paper", "paper", 3.0),
    "ntlb-bounded": ("paper", "bounded", 3.0),
}


def export_data(cache: Path, protocol: dict, per_class_test: int, max_shots: int) -> dict[str, Path]:
    """The training split (16 images per class to draw shots from) and every test set as image folders (the
    subset variants keep 24 classes)."""
    paths = {"train": cache / f"train-{protocol['train']}"}
    if not (paths["train"] / "classnames.txt").is_file():
        export_classification(paths["train"], split="train", variant=protocol["train"], per_class=max(16, max_shots))
    keep = set(class_names()[::2])
    for variant in protocol["tests"]:
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

    label: str  # a key of LOSSES
    n_ctx: int
    weight: float
    csc: bool
    shots: int
    seed: int
    epochs: int
    position: str = "middle"

    def path(self, cache: Path) -> Path:
        mode = "csc" if self.csc else "uni"
        return (cache / "runs" / f"{self.label}-w{self.weight:g}-M{self.n_ctx}-{mode}-{self.position}-k{self.shots}"
                f"-s{self.seed}-e{self.epochs}.pt")

    def config(self) -> PromptConfig:
        score, reduction, _ = LOSSES[self.label]
        return PromptConfig(n_ctx=self.n_ctx, position=self.position, csc=self.csc, expl_weight=self.weight,
                            score=score, reduction=reduction, shots=self.shots, seed=self.seed, epochs=self.epochs)


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
    return path.is_file() and read_prompts(path, finished=False)["done"] >= run.epochs


def sensitivity_figure(results: dict, path: Path) -> None:
    """Paper Fig. 5: accuracy against lambda on every test set (mean and std over seeds), beside it the change
    from lambda = 0 (CoOp) paired by seed, where effects of a point or two are visible, and what the loss raises:
    the true class's share of relevance on its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sensitivity, shares = results["lambda_sensitivity"], results.get("class_name_share")
    tests, setting = results["settings"]["tests"], results["lambda_sensitivity_setting"]
    title = (f"{results['settings']['protocol']} protocol: default loss, M={setting['n_ctx']} "
             f"{'CSC' if setting['csc'] else 'unified'}, {setting['shots']} shot")
    weights = [float(w) for w in sensitivity]
    values = np.array([sensitivity[w] for w in sensitivity]) * 100  # (lambdas, seeds, tests)
    change = values - values[weights.index(0.0)] if 0.0 in weights else None
    panels = [(values, "accuracy (%)", tests)]
    if change is not None:
        panels.append((change, "change from CoOp, paired by seed (points)", tests))
    if shares is not None:
        panels.append((np.array([shares[w] for w in sensitivity])[:, :, None] * 100,
                       "class-name share S(c_gt), base test (%)", ("base",)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (data, label, names) in zip(axes[0], panels):
        for index, variant in enumerate(names):
            ax.errorbar(weights, data[:, :, index].mean(axis=1), yerr=data[:, :, index].std(axis=1), marker="o",
                        capsize=3, label=variant, color=f"C{tests.index(variant)}")
        ax.set_xscale("symlog", linthresh=0.1)  # lambda 0 and the small weights stay apart from 1 to 5
        ax.set_xticks(weights, [f"{w:g}" for w in weights], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("lambda (explainability loss weight, symlog scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if change is not None:
        axes[0][1].axhspan(-1, 1, color="grey", alpha=0.12, label="within 1 point")
    axes[0][0].legend(fontsize=7, ncol=4, loc="center", bbox_to_anchor=(0.5, 0.3))  # where no line runs
    fig.suptitle(title, fontsize=9)
    save_figure_atomic(fig, path)


def print_report(results: dict) -> None:
    """The markdown tables of a results JSON: accuracy per shot count, Fig. 5, and the default loss against CoOp and
    CoOp against zero-shot, paired by seed."""
    settings, rows = results["settings"], results["rows"]
    tests, seeds, protocol = settings["tests"], settings["seeds"], settings["protocol"]
    modes = ("unified", "csc")
    for shots in settings["shots"]:
        print(f"\n### {protocol}, {shots} shot(s), {settings['epochs'][str(shots)]} epochs: accuracy % (mean ± std "
              f"over seeds {seeds})\n")
        header = [f"{mode} {v}" for mode in modes for v in tests]
        print("| method | " + " | ".join(header) + " |\n|---|" + "---:|" * len(header))
        for row, by_shots in rows.items():
            entry = by_shots.get(str(shots), {})
            cells = [mean_std(entry[k.replace(" ", "/")]) if k.replace(" ", "/") in entry else "—" for k in header]
            if any(c != "—" for c in cells):
                print(f"| {row} | " + " | ".join(cells) + " |")
    setting = results["lambda_sensitivity_setting"]
    print(f"\n### {protocol}, Fig. 5: lambda sensitivity (default loss, M={setting['n_ctx']}, "
          f"{'CSC' if setting['csc'] else 'unified'}, {setting['shots']} shot; mean ± std over seeds)\n")
    shares = results.get("class_name_share", {})
    extra = ["S(c_gt) on base"] if shares else []
    print("| lambda | " + " | ".join(list(tests) + extra) + " |\n|---|" + "---:|" * (len(tests) + len(extra)))
    for w, values in results["lambda_sensitivity"].items():
        cells = [mean_std(v) for v in np.array(values).T.tolist()] + ([mean_std(shares[w])] if shares else [])
        print(f"| {w} | " + " | ".join(cells) + " |")

    def points(row: str, shots: int, key: str) -> np.ndarray:
        """Per-seed accuracies in points."""
        return np.array(rows[row][str(shots)][key]) * 100

    def paired_table(row: str, contexts: tuple[int, ...], title: str) -> None:
        """`row` (with {M} for the number of context vectors) - CoOp, per seed, in every setting."""
        print(f"\n### {protocol}: {title} - CoOp, paired by seed: points, mean [min, max] over seeds\n")
        print("| M | shots | prompts | " + " | ".join(tests) + " |\n|---:|---:|---|" + "---:|" * len(tests))
        means = []
        for n_ctx in contexts:
            for shots in settings["shots"]:
                if str(shots) not in rows[row.format(M=n_ctx)]:
                    continue  # a variant row trained at fewer shot counts (--variant-shots)
                for mode in modes:
                    cells = []
                    for v in tests:
                        key = f"{mode}/{v}"
                        diff = points(row.format(M=n_ctx), shots, key) - points(f"CoOp M={n_ctx}", shots, key)
                        means.append(diff.mean())
                        cells.append(f"{diff.mean():+.1f} [{diff.min():+.1f}, {diff.max():+.1f}]")
                    print(f"| {n_ctx} | {shots} | {mode} | " + " | ".join(cells) + " |")
        means = np.round(np.array(means), 1)  # as the table shows them
        print(f"\nNo more than 1 point below CoOp (mean over seeds) in {int((means >= -1.0).sum())} of {len(means)} "
              f"cells (within 1 point either way in {int((np.abs(means) <= 1.0).sum())}); worst {means.min():+.1f}, "
              f"best {means.max():+.1f}, mean {means.mean():+.2f} points.")

    paired_table("ntlb M={M}", (16, 4), f"Default loss (lambda {settings['weight']:g})")
    lambda_row = f"ntlb M=16, lambda {PAPER_LAMBDA:g}"
    if lambda_row in rows:
        paired_table(lambda_row, (16,), f"The released loss at the paper's lambda {PAPER_LAMBDA:g}")
    def mean_points(row: str, shots: int, mode: str) -> np.ndarray:
        return np.array([points(row, shots, f"{mode}/{v}").mean() for v in tests])

    with_lambda = lambda_row in rows
    print(f"\n### {protocol}: CoOp - zero-shot hand prompt, and the explainability loss - CoOp (points, mean over "
          "seeds)\n")
    columns = ["CoOp - zero-shot", f"lambda {settings['weight']:g} - CoOp"] + (
        [f"lambda {PAPER_LAMBDA:g} - CoOp"] if with_lambda else [])
    print("| M | shots | prompts | " + " | ".join(f"{c}: " + " / ".join(tests) for c in columns) + " |\n"
          "|---:|---:|---|" + "---|" * len(columns))
    for n_ctx in (16, 4):
        for shots in settings["shots"]:
            for mode in modes:
                coop = mean_points(f"CoOp M={n_ctx}", shots, mode)
                zero = np.array([points("0-shot hand prompt", shots, f"unified/{v}")[0] for v in tests])
                cells = [coop - zero, mean_points(f"ntlb M={n_ctx}", shots, mode) - coop]
                if with_lambda:
                    trained = n_ctx == 16 and str(shots) in rows[lambda_row]
                    cells.append(mean_points(lambda_row, shots, mode) - coop if trained else None)
                print(f"| {n_ctx} | {shots} | {mode} | " + " | ".join(
                    "—" if c is None else " / ".join(f"{d:+.1f}" for d in c) for c in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="standard", choices=list(PROTOCOLS))
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=None,
                        help="one per --shots value, or one (default: the protocol's)")
    parser.add_argument("--expl-weight", type=float, default=PromptConfig.expl_weight,
                        help="the default loss's lambda (default: the library's, %(default)s)")
    parser.add_argument("--expl-weights", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0],
                        help="the lambdas of Fig. 5")
    add_old_name(parser, "--lambda", "--expl-weight", type=float)
    add_old_name(parser, "--lambdas", "--expl-weights", type=float, nargs="+")
    parser.add_argument("--per-class-test", type=int, default=10)
    parser.add_argument("--variant-shots", type=int, nargs="+", default=None,
                        help="shot counts for the ntlb-paper, ntlb-bounded and lambda-1 rows (default: every --shots)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the trainings")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "prompt-results"))
    parser.add_argument("--quick", action="store_true",
                        help="1 shot, 1 seed, 5 epochs: a smoke run (writes under --cache, not docs/)")
    parser.add_argument("--report", default=None,
                        help="print the tables of a results JSON this script wrote, redraw its figure beside it, "
                             "and stop")
    args = parser.parse_args()
    if args.report:
        results = json.loads(Path(args.report).read_text())
        figure = Path(args.report).parent / f"results-prompt-lambda-{results['settings']['protocol']}.png"
        sensitivity_figure(results, figure)  # beside the JSON
        print_report(results)
        return
    protocol = PROTOCOLS[args.protocol]
    tests = protocol["tests"]
    epochs_given = args.epochs or protocol["epochs"]
    if args.quick:
        args.shots, args.seeds, epochs_given, args.expl_weights = [1], [0], [5], [0, 3]
    if len(epochs_given) == 1:
        epochs_given = epochs_given * len(args.shots)
    if len(epochs_given) != len(args.shots):
        parser.error("give one --epochs value, or one per --shots value")
    epochs = dict(zip(args.shots, epochs_given))
    cache = Path(args.cache) / args.protocol
    paths = export_data(Path(args.cache), protocol, args.per_class_test, max(args.shots))

    def weight(label: str) -> float:
        return args.expl_weight if LOSSES[label][2] is None else LOSSES[label][2]

    table = [Run(label, n_ctx, weight(label), csc, shots, seed, epochs[shots])
             for shots in args.shots for seed in args.seeds for n_ctx in (16, 4) for csc in (False, True)
             for label in ("CoOp", "ntlb")]
    variant_shots = [k for k in args.shots if args.variant_shots is None or k in args.variant_shots]
    table += [Run(label, 16, weight(label), csc, shots, seed, epochs[shots])
              for shots in variant_shots for seed in args.seeds for csc in (False, True)
              for label in ("ntlb-paper", "ntlb-bounded")]
    paper_lambda_runs = [Run("ntlb", 16, PAPER_LAMBDA, csc, shots, seed, epochs[shots])
                         for shots in variant_shots for seed in args.seeds for csc in (False, True)]
    first = min(args.shots)
    sweep_csc = args.protocol == "cue"  # where CoOp over-fits
    sensitivity_runs = {w: [Run("CoOp" if w == 0 else "ntlb", 16, w, sweep_csc, first, seed, epochs[first])
                            for seed in args.seeds] for w in args.expl_weights}
    end_runs = [Run(label, 16, weight(label), csc, first, seed, epochs[first], position="end")
                for label in ("CoOp", "ntlb") for csc in (False, True) for seed in args.seeds]
    train_all(table + paper_lambda_runs + [r for runs in sensitivity_runs.values() for r in runs] + end_runs, cache,
              paths["train"], args.jobs)

    adapter = ntlb.load_model()
    train = read_image_folder(paths["train"])
    names = train.classnames
    data = {v: read_image_folder(paths[v]) for v in tests}
    features = {v: (dataset_features(adapter, d), dataset_labels(d)) for v, d in data.items()}
    columns = {v: class_subset(names, d.classnames) for v, d in data.items()}
    results: dict = {"settings": {**vars(args), "epochs": {str(k): v for k, v in epochs.items()}, "tests": list(tests)},
                     "rows": {}}

    def record(row: str, shots: int, key: str, value: float) -> None:
        results["rows"].setdefault(row, {}).setdefault(str(shots), {}).setdefault(key, []).append(value)

    def prompt_accuracies(run: Run) -> list[float]:
        learner, _ = load_learner(adapter, run.path(cache))
        classifier = prompt_classifier(adapter, learner)
        return [accuracy(*features[v], classifier, columns[v]) for v in tests]

    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    hand = text_features(adapter, names, ("a photo of a {}.",))
    ensemble = text_features(adapter, names, [t("{}") for t in OPENAI_IMAGENET_TEMPLATES])
    for shots in args.shots:
        for v in tests:
            record("0-shot hand prompt", shots, f"unified/{v}", accuracy(*features[v], hand, columns[v]))
            record("0-shot ensemble", shots, f"unified/{v}", accuracy(*features[v], ensemble, columns[v]))
        for seed in args.seeds:
            shot_data = train.few_shot(shots, seed)
            shot_features = dataset_features(adapter, shot_data)
            weights, bias = fit_linear_probe(shot_features, dataset_labels(shot_data), len(names))
            for v in tests:
                x, y = features[v]
                predicted = probe_predict(x, weights, bias, columns[v])
                record("linear probe", shots, f"unified/{v}", float((predicted == torch.tensor(columns[v])[y])
                                                                   .float().mean()))
    for run in table:
        for v, value in zip(tests, prompt_accuracies(run)):
            record(f"{run.label} M={run.n_ctx}", run.shots, f"{'csc' if run.csc else 'unified'}/{v}", value)
    for run in paper_lambda_runs:
        for v, value in zip(tests, prompt_accuracies(run)):
            record(f"ntlb M=16, lambda {PAPER_LAMBDA:g}", run.shots, f"{'csc' if run.csc else 'unified'}/{v}", value)
    for run in end_runs:
        for v, value in zip(tests, prompt_accuracies(run)):
            record(f"{run.label} M=16, name at the end", run.shots, f"{'csc' if run.csc else 'unified'}/{v}", value)
    sensitivity = {str(w): [prompt_accuracies(run) for run in runs] for w, runs in sensitivity_runs.items()}
    results["lambda_sensitivity"] = sensitivity
    results["lambda_sensitivity_setting"] = {"shots": first, "csc": sweep_csc, "n_ctx": 16}
    base_features, base_labels = features["base"]
    base_labels = torch.tensor(columns["base"])[base_labels]  # as indices of the training classes

    def share(run: Run) -> float:
        learner, _ = load_learner(adapter, run.path(cache))
        return float(class_name_shares(adapter, learner, base_features, base_labels, run.config()).mean())

    shares = {str(w): [share(run) for run in tqdm(runs, desc=f"class-name share, lambda {w:g}", leave=False)]
              for w, runs in sensitivity_runs.items()}
    results["class_name_share"] = shares
    docs = Path(args.cache) if args.quick else ROOT / "docs"  # a smoke run leaves the measured results alone
    write_json_atomic(docs / f"results-prompt-learning-{args.protocol}.json", results)
    sensitivity_figure(results, docs / f"results-prompt-lambda-{args.protocol}.png")
    print_report(results)
    print(json.dumps({"out": str(docs / f"results-prompt-learning-{args.protocol}.json")}))


if __name__ == "__main__":
    main()
