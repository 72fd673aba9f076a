"""`ntlb benchmark explainers`: every explainer measured on held-out world scenes."""

from __future__ import annotations

import argparse

from ..config.world import BenchmarkConfig
from .common import add_command, add_model_arguments, model_adapter, name_list
from .fields import add_config, read_config


def cmd_explainers(args: argparse.Namespace) -> int:
    from ntlb_research.explainer_benchmark import run_explainer_benchmark

    config = read_config(BenchmarkConfig, args)
    methods = name_list(config.explainers)
    adapter = model_adapter(args)
    results = run_explainer_benchmark(adapter, methods, config.count, config.out, grounding=config.grounding)
    print(results["tables"])
    print(f"wrote {config.out}/explainers.json, explainers.md, explainers.png")
    return 0


def add_commands(commands) -> None:
    benchmark = add_command(commands, "benchmark", "measure explainers on held-out world scenes",
                            "Benchmarks with known truth from the procedural world.")
    sub = benchmark.add_subparsers(dest="benchmark_command", required=True)
    bench = add_command(sub, "explainers", "localisation, faithfulness, word accuracy and time of every explainer",
                        "Pointing game, energy and Otsu IoU against the named object's mask, perturbation AUC on "
                        "patches and tokens, top-word accuracy, time per pair; 1- and 2-object scenes.")
    add_config(bench, BenchmarkConfig)
    add_model_arguments(bench)
    bench.set_defaults(run=cmd_explainers)
