"""Each setting is declared once, in a runner's config (ntlb.config): every command's options and every app
widget are generated from those fields and open on their defaults; the explainer travels as one spec whose None
options are the method's own; and a resource (the memory budget) is not part of a run's identity, so a run
resumes under another one."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from conftest import interrupt_prompt_training, one_line_error

from ntlb.cli import build_parser, main
from ntlb.cli.fields import dest_of, read_spec
from ntlb.config import default_of
from ntlb.config.explainer import ExplainerOptions
from ntlb.explain import create
from ntlb.explain.spec import ExplainerSpec


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, its parser) of every leaf command."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*path, name))


def _declared(parser: argparse.ArgumentParser) -> dict[str, dataclasses.Field]:
    """Each option's dest -> the config field that declared it."""
    return {dest_of(item): item for _, item in getattr(parser, "config_fields", [])}


def test_every_option_of_every_command_is_a_config_field_with_its_default():
    checked = 0
    for path, parser in _commands(build_parser()):
        declared = _declared(parser)
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.default is argparse.SUPPRESS:
                continue  # help, and the hidden old spellings (they set the same dest)
            assert action.dest in declared, f"ntlb {' '.join(path)}: {action.dest} is not declared by a config"
            item = declared[action.dest]
            expected = item.metadata["explainer"] if "explainer" in item.metadata else default_of(item)
            if item.metadata.get("required") or item.metadata.get("positional"):
                continue  # no default: the user gives it
            assert action.default == expected, f"ntlb {' '.join(path)} {action.option_strings}"
            checked += 1
    assert checked > 150


def test_each_command_builds_its_library_default_config():
    """The configs read from a command's defaults equal the library's (the explainer spec included)."""
    from ntlb.cli.fields import read_config
    from ntlb.config.explaining import ExplainConfig
    from ntlb.config.guidance import EditConfig, GenerateConfig
    from ntlb.config.layout import LayoutConfig
    from ntlb.config.prompts import PromptConfig

    parser = build_parser()
    cases = [(["prompt", "train", "--data", "d", "--out", "o.pt"], PromptConfig),
             (["edit", "x.png", "--text", "t"], EditConfig), (["generate", "--text", "t"], GenerateConfig),
             (["layout", "generate"], LayoutConfig)]
    for argv, config in cases:
        assert read_config(config, parser.parse_args(argv)) == config(), argv
    explain = parser.parse_args(["explain", "x.png"])
    spec = read_spec(next(f for f in dataclasses.fields(ExplainConfig) if f.name == "explainer"), explain)
    assert spec == ExplainerSpec("chefer2021") and spec.given() == {}


@pytest.mark.parametrize("name", ["legrad", "chefer2021", "interactions", "occlusion"])
def test_options_left_empty_are_the_methods_own(name):
    """None in a spec is the method's default (LeGrad from layer -2, not 0)."""
    own = create(name)
    made = create(ExplainerSpec(name, {option.name: None for option in dataclasses.fields(ExplainerOptions)}))
    for attribute in ("start_layer_image", "start_layer_text", "logit_mode"):
        assert getattr(made, attribute) == getattr(own, attribute)
    assert create("legrad").start_layer_image == -2 and create(ExplainerSpec("legrad")).start_layer_image == -2


def test_an_option_of_another_method_is_refused_in_one_line(capsys):
    one_line_error(capsys, ["explain", "x.png", "--text", "a", "--steps", "3"],
                   r"^ntlb: error: --steps is an option of --explainer interactions$")


def test_the_spec_travels_into_the_record_and_back():
    from ntlb.config import settings
    from ntlb.config.layout import LayoutConfig

    plain = LayoutConfig(explainer=ExplainerSpec("gradcam", {"start_layer_image": None}))
    assert settings(plain)["explainer"] == "gradcam"  # no option set: the name, as records were before specs
    config = LayoutConfig(explainer=ExplainerSpec("gradcam", {"start_layer_image": -1, "start_layer_text": None}))
    record = settings(config)
    assert record["explainer"] == {"name": "gradcam", "options": {"start_layer_image": -1}}
    assert LayoutConfig(**record).explainer.given() == config.explainer.given()
    assert LayoutConfig(**settings(plain)).explainer.given() == {} and create(config.explainer).start_layer_image == -1


def _app_widgets(world_model):
    pytest.importorskip("gradio", reason="the app needs the 'app' extra (gradio)")
    from ntlb.app import build_app

    return build_app(world_model).ntlb_widgets


def test_every_app_widget_opens_on_its_fields_default(world_model, tmp_path):
    built = _app_widgets(world_model)
    assert {tab for tab, *_ in built} == {"explain", "words", "prompts", "layout", "edit", "generate"}
    for tab, config, name, widget in built:
        item = next(f for f in dataclasses.fields(config) if f.name == name)
        app = item.metadata.get("app", {})
        value = widget.value if not isinstance(widget.value, str) or widget.value else None  # an empty text: None
        if "value" in app:
            assert app.get("why") and value == app["value"], (tab, name)  # a page's own value says why
        elif "explainer" in item.metadata:
            assert value == item.metadata["explainer"] == default_of(item).name, (tab, name)
        elif config is ExplainerOptions and default_of(item) is None:
            method = {"words": "interactions"}.get(tab, "chefer2021")
            assert value is None or value == getattr(create(method), name), (tab, name)  # the method's own
        elif getattr(widget, "value", None) is not None or default_of(item) is not None:
            assert value == default_of(item) or (widget.__class__.__name__ == "File" and value is None), (tab, name)


def test_the_app_leaves_start_layers_and_decay_to_their_defaults(world_model):
    """The drift the review found: LeGrad ran from layer 0 in the app, and its pixels decay was 1.5."""
    from ntlb.app.explain_tab import explainer_spec
    from ntlb.app.widgets import field_of, shown_value
    from ntlb.config.guidance import GeneratorChoice
    from ntlb.config.layout import LayoutConfig

    built = {(tab, name): widget for tab, _, name, widget in _app_widgets(world_model)}
    shown = [built["explain", key].value for key in ("start_layer_image", "start_layer_text", "logit_mode")]
    assert create(explainer_spec("legrad", *shown)).start_layer_image == -2
    assert "sigmoid" in [c[1] if isinstance(c, tuple) else c for c in built["explain", "logit_mode"].choices]
    layout = build_parser().parse_args(["layout", "generate"])
    assert GeneratorChoice().options("pixels") == {"decay": layout.decay} == {"decay": 1.0}
    assert built["layout", "steps"].value == shown_value(field_of(LayoutConfig, "steps")) == 100


def test_prompt_training_resumes_under_another_memory_budget(tmp_path, capsys, monkeypatch):
    from ntlb.world.datasets import export_classification

    data = export_classification(tmp_path / "data", task="shape", split="train", per_class=1, size=32)
    calls = interrupt_prompt_training(monkeypatch, at_call=2)
    prompts = tmp_path / "p.pt"
    train = ["prompt", "train", "--data", str(data), "--ctx", "2", "--epochs", "2", "--out", str(prompts)]
    one_line_error(capsys, [*train, "--max-memory", "1GB"], r"interrupted during epoch 2/2 \(1 epoch done\)",
                   code=130)
    assert (tmp_path / "p.pt.partial").is_file() and not prompts.exists()
    one_line_error(capsys, [*train, "--max-memory", "2GB", "--lr", "0.01"], r"other settings \(lr\)")
    calls.update(n=0, stop=0)
    assert main([*train, "--max-memory", "2GB"]) == 0
    assert "resuming prompt learning at epoch 2/2 (1 epoch done)" in capsys.readouterr().err
    straight = tmp_path / "straight.pt"
    assert main([*train[:-1], str(straight)]) == 0
    resumed, reference = torch.load(prompts, weights_only=False), torch.load(straight, weights_only=False)
    assert "max_memory" not in resumed["settings"] and resumed["settings"] == reference["settings"]
    assert torch.allclose(resumed["ctx"], reference["ctx"], atol=1e-6)
