"""Every runner's JSON goes through the one record writer (`ntlb.io.write_record`) and carries its provenance
header: model, pretrained weights, random weights or not, ntlb version, the settings that define the result."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import EXAMPLE, ROOT

from ntlb.cli import main
from ntlb.io import HEADER, ntlb_version, write_record

SRC = ROOT / "src"
PACKAGE = SRC / "ntlb"
# JSON written by the application layers that is not a runner's result, each with why
NOT_RECORDS = {
    ("tasks/layouts/layout.py", "write_layout"): "a layout file: the user's input format, read back by "
                                                 "`layout generate`",
    ("tasks/explaining/dataset.py", "_claim"): "the settings a resumed dataset run must match, compared whole",
    ("tasks/explaining/dataset.py", "write_shard"): "a shard's key list in its safetensors metadata",
}


def _calls(path: Path, names: set[str]) -> list[tuple[str, str]]:
    """(enclosing function, called name) of each call of one of `names` in a module."""
    found, scope = [], []

    class Finder(ast.NodeVisitor):
        def visit_FunctionDef(self, node):
            scope.append(node.name)
            self.generic_visit(node)
            scope.pop()

        def visit_Call(self, node):
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name in names:
                found.append((".".join(scope), name))
            self.generic_visit(node)

    Finder().visit(ast.parse(path.read_text()))
    return found


def test_every_runner_writes_its_json_through_the_record_writer():
    """No JSON is written by hand in tasks/, cli/, app/ or ntlb_research but the listed non-results; the runners
    that write results all call write_record (a new runner's `json.dump` or `write_json_atomic` fails here)."""
    by_hand, writers = [], set()
    for folder in (PACKAGE / "tasks", PACKAGE / "cli", PACKAGE / "app", SRC / "ntlb_research"):
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(SRC).as_posix().removeprefix("ntlb/")
            for function, name in _calls(path, {"write_json_atomic", "dump", "dumps", "write_record"}):
                if name == "write_record":
                    writers.add(relative)
                elif name != "write_record" and (relative, function) not in NOT_RECORDS:
                    by_hand.append(f"{relative}: {name} in {function}")
    assert not by_hand, "JSON results written without the record header:\n" + "\n".join(by_hand)
    assert writers == {"tasks/explaining/files.py", "tasks/prompting/explaining.py", "tasks/prompting/training.py",
                       "tasks/guidance/editing.py", "tasks/guidance/blending.py", "tasks/layouts/generation.py",
                       "tasks/explaining/dataset.py", "ntlb_research/explainer_benchmark.py"}


@dataclass
class _Settings:
    steps: int = 3
    path: Path = Path("a/b")


class _Adapter:
    name, pretrained, random_weights = "tiny", "/weights/tiny.safetensors", True


def test_the_header_by_hand(tmp_path):
    record = write_record(tmp_path / "r.json", {"accuracy": 0.5}, _Adapter(), _Settings())
    written = json.loads((tmp_path / "r.json").read_text())
    assert record["accuracy"] == 0.5
    assert written == {"model": "tiny", "pretrained": "/weights/tiny.safetensors", "random_weights": True,
                       "ntlb_version": ntlb_version(), "settings": {"steps": 3, "path": "a/b"}, "accuracy": 0.5}
    assert list(written)[: len(HEADER)] == list(HEADER)
    assert write_record(tmp_path / "none.json", {}, None, {"k": 1})["model"] is None  # a run without a model
    with pytest.raises(ValueError, match="model"):
        write_record(tmp_path / "clash.json", {"model": "other"}, _Adapter())


@pytest.mark.slow
def test_every_runners_json_carries_the_header(tmp_path):
    """Each runner, run tiny through the command line: its JSON starts with the header, filled in."""
    from PIL import Image

    from ntlb.models.loading import bundled_models
    from ntlb.tasks.layouts.layout import Layout, write_layout
    from ntlb.world.datasets import export_classification
    from ntlb.world.scene import random_scene, render

    torch.manual_seed(0)
    data = export_classification(tmp_path / "shapes", task="shape", split="train", per_class=1, size=32)
    scene = tmp_path / "scene.png"
    Image.fromarray(render(random_scene(3, 1), 64)[0]).save(scene)
    layout = write_layout(Layout(64, 64, [(2, 2, 30, 30)], ["a photo of a red circle"]), tmp_path / "layout.json")
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("red\ncircle\n")
    out = tmp_path / "out"
    runs = {
        "explain/explanations.json": ["explain", str(EXAMPLE), "--text", "a red circle"],
        "compare/compare.json": ["compare", str(EXAMPLE), "--text", "a red circle", "--explainers",
                                 "chefer2021,rollout"],
        "pair/pairs.json": ["explain-pair", str(EXAMPLE), str(scene)],
        "concepts/concepts.json": ["explain", str(EXAMPLE), "--text", "circle", "--text", "square", "--concepts",
                                   str(concepts), "--k", "1"],
        "dataset/index.json": ["explain-dataset", str(data), "--top-k", "1", "--workers", "0"],
        "layout/metrics.json": ["layout", "generate", "--layout", str(layout), "--steps", "1", "--views", "1"],
        "edit/metrics.json": ["edit", str(scene), "--text", "a purple circle", "--steps", "1"],
        "generate/metrics.json": ["generate", "--text", "a green circle", "--steps", "1", "--candidates", "1",
                                  "--views", "1"],
        "blend/metrics.json": ["blend", str(scene), "--target", str(scene), "--steps", "1"],
        "prompts.eval/shapes.json": None,  # after `prompt train`
        "prompt-explain/prompt_explanations.json": ["prompt", "explain", str(EXAMPLE), "--prompts",
                                                    str(out / "prompts.pt")],
        "benchmark/explainers.json": ["benchmark", "explainers", "--count", "1", "--explainers", "rollout"],
    }
    assert main(["prompt", "train", "--data", str(data), "--ctx", "2", "--epochs", "1", "--expl-weight", "0",
                 "--out", str(out / "prompts.pt")]) == 0
    runs["prompts.eval/shapes.json"] = ["prompt", "eval", "--data", str(data), "--prompts", str(out / "prompts.pt")]
    weights = str(bundled_models()["ntlb-world"]["weights"])
    for file, command in runs.items():
        folder = out / file.split("/")[0]
        flags = [] if file.startswith("prompts.eval") else ["--out", str(folder)]
        assert main([*command, *flags]) == 0, command
        record = json.loads((out / file).read_text())
        assert list(record)[: len(HEADER)] == list(HEADER), file
        assert (record["model"], record["pretrained"], record["random_weights"], record["ntlb_version"]) == \
            ("ntlb-world", weights, False, ntlb_version()), file
        assert isinstance(record["settings"], dict) and record["settings"], file
    assert json.loads((out / "prompts.eval" / "shapes.json").read_text())["settings"]["n_ctx"] == 2
    assert json.loads((out / "edit" / "metrics.json").read_text())["settings"]["steps"] == 1
