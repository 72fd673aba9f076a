"""world-render's exchange move, run by run: rerun the discrete refinement from finished runs' step-100 checkpoints
(folders of `benchmarks/editing_results.py`, generation or `--expl-weight N` edits) and log every exchange of two
drawn objects' colours or shapes it evaluates: the paired loss gain (mean and standard error over the copies, the
refinement's own draws), whether it passes the refinement's rule, and what the exact detector reads in the exchanged
scene. With `--without-exchange` the refinement runs without the move instead (each run's counterfactual, paired:
a run whose refinement takes no exchange ends the same by construction).

    python benchmarks/refinement_exchanges.py --cache runs/editing-exchange gen:clip:2 gen:deletion-1:10 \\
        edit:paper:colour-swap:3 [--without-exchange] [--out exchanges.json]

Runs are named gen:ROW:PROMPT (seed 0) or edit:WORD_SCORE:FAMILY:INDEX (family with '-' for spaces). The reruns are
written under --work (the checkpoints copied; the cache is only read).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _logging_exchange(log: list, state: dict):
    """world-render's `_exchange`, also scoring the current and the exchanged latents under the refinement's draws."""
    import torch

    from ntlb.generators import world_render
    from ntlb.world.detector import WorldDetector

    original = world_render._exchange

    def exchange(latent, slots, first, second, attribute):
        exchanged = original(latent, slots, first, second, attribute)
        generator, evaluate, seed = state["generator"], state["evaluate"], state["seed"]
        held = generator.latent.data.clone()
        values = []
        for candidate in (latent, exchanged):
            generator.latent.data.copy_(candidate)  # the loss may read the latent (an edit's keep cost)
            with torch.no_grad():
                images = generator.image_of(candidate).repeat_interleave(generator.copies, dim=0)
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                torch.manual_seed(seed)
                values.append(evaluate(images).detach().float().reshape(len(candidate), -1))
        generator.latent.data.copy_(held)
        gain = values[0] - values[1]
        noise = gain.std(dim=1) / gain.shape[1] ** 0.5 if gain.shape[1] > 1 else torch.zeros(len(gain))
        with torch.no_grad():
            pictures = generator.image_of(exchanged)
        for b in range(len(latent)):
            picture = (pictures[b].permute(1, 2, 0).clamp(0, 1) * 255).round().numpy().astype(np.float32)
            log.append({"latent": b, "slots": [first, second], "attribute": attribute,
                        "gain": round(float(gain[b].mean()), 5), "se": round(float(noise[b]), 5),
                        "passes_rule": bool(gain[b].mean() > world_render.EVIDENCE * noise[b]),
                        "exchanged_reads": [d.label for d in WorldDetector()(picture)]})
        return exchanged

    return exchange


def main() -> None:
    import editing_results as er  # the benchmark's prompts, cases, folders and run functions
    import torch

    from ntlb.generators import world_render
    from ntlb.io import write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="gen:ROW:PROMPT or edit:WORD_SCORE:FAMILY:INDEX")
    parser.add_argument("--cache", default=str(ROOT / "runs" / "editing-results"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=20, help="the generation benchmark's prompt count")
    parser.add_argument("--without-exchange", action="store_true", help="rerun the refinement without the move")
    parser.add_argument("--work", default=str(ROOT / "runs" / "refinement-exchanges"))
    parser.add_argument("--out", default=None, help="a JSON of every run's record (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = Path(args.cache) / "world-render" / f"steps{args.steps}"
    log: list = []
    state: dict = {}
    if args.without_exchange:
        world_render._pairs = lambda slots: []
    else:
        world_render._exchange = _logging_exchange(log, state)
    refine = world_render.WorldRender.refine_discrete

    def capturing(self, evaluate, seed):
        state.update(generator=self, evaluate=evaluate, seed=seed)
        return refine(self, evaluate, seed)

    world_render.WorldRender.refine_discrete = capturing
    prompts = er.prompts(args.prompts)
    result: dict = {"settings": vars(args), "runs": {}}
    for name in args.runs:
        kind, *rest = name.split(":")
        if kind == "gen":
            row, index = rest[0], int(rest[1])
            source = base / "generate" / er._row_folder(row) / f"prompt{index}-seed0"
            text = prompts[index][0]
            job = (er._generate, (row, text, 0, args.steps, None, "world-render"))
        else:
            score, family, index = rest[0], rest[1].replace("-", " "), int(rest[2])
            source = base / f"edit-1-{score}" / f"{family.replace(' ', '-')}-{index}"
            text = er.edit_case(family, index)["text"]
            job = (er._edit, (family, index, args.steps, None, "world-render", 1.0, score, er.SWEEP_SAMPLES))
        target = Path(args.work) / ("without-exchange" if args.without_exchange else "with-exchange") \
            / source.relative_to(base)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        shutil.copy(source / "checkpoint.pt", target / "checkpoint.pt")  # the Adam steps are done: only the refinement
        log.clear()
        function, arguments = job
        function(tuple(str(target) if a is None else a for a in arguments))
        refined = json.loads((target / "metrics.json").read_text())["refinement"]
        original = json.loads((source / "metrics.json").read_text())["refinement"]
        record = {"text": text, "refinement": refined, "same_as_run": refined == original, "exchanges": list(log)}
        result["runs"][name] = record
        print(f"{name} '{text}': same refinement as the run: {record['same_as_run']}")
        for latent in refined["latents"]:
            print(f"  loss {latent['loss_before']} -> {latent['loss_after']}; changes "
                  f"{[(c['slot'], c['attribute'], c['from'], c['to']) for c in latent['changes']]}")
        for entry in log:
            print(f"  exchange {entry['slots']} {entry['attribute']} (latent {entry['latent']}): gain "
                  f"{entry['gain']:+.4f} ± {entry['se']:.4f}{' (passes)' if entry['passes_rule'] else ''}, reads "
                  f"{entry['exchanged_reads']}")
    if args.out:
        write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
