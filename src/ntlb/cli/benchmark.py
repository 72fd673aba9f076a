"""`ntlb benchmark explainers`: every explainer measured on held-out world scenes."""

from __future__ import annotations

import argparse

from .common import add_command, add_model_arguments, add_old_name, load_adapter


def cmd_explainers(args: argparse.Namespace) -> int:
    from ..tasks.explainer_benchmark import run_explainer_benchmark

    methods = [m.strip() for m in args.explainers.split(",") if m.strip()] if args.explainers else None
    adapter = load_adapter(args.model, args.pretrained, args.device, tokenizer=args.tokenizer)
    results = run_explainer_benchmark(adapter, methods, args.count, args.out, grounding=args.grounding)
    print(results["tables"])
    print(f"wrote {args.out}/explainers.json, explainers.md, explainers.png")
    return 0


def add_commands(commands) -> None:
    benchmark = add_command(commands, "benchmark", "measure explainers on held-out world scenes",
                            "Benchmarks with known truth from the procedural world.")
    sub = benchmark.add_subparsers(dest="benchmark_command", required=True)
    bench = add_command(sub, "explainers", "localisation, faithfulness, word accuracy and time of every explainer",
                        "Pointing game, energy and Otsu IoU against the named object's mask, perturbation AUC on "
                        "patches and tokens, top-word accuracy, time per pair; 1- and 2-object scenes.")
    bench.add_argument("--count", type=int, default=100, help="scenes per setting")
    bench.add_argument("--grounding", type=int, default=0, metavar="N",
                       help="also the word-grounding test: N pairs per kind of false word (colour, shape, missing "
                            "object, swapped colours) for every explainer x logit mode x normalisation x word score "
                            "(0: off; 40 takes a few minutes)")
    bench.add_argument("--explainers", default=None, help="comma-separated explainers (default: all)")
    add_old_name(bench, "--methods", "--explainers")
    bench.add_argument("--out", default="out/benchmark", help="output folder")
    add_model_arguments(bench)
    bench.set_defaults(run=cmd_explainers)
