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
from ntlb.errors import NtlbError
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


def _routing(parser: argparse.ArgumentParser) -> set[str]:
    """The parsed names that say which command runs (command, world_command, ...)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest for a in subs} | {dest for a in subs for sub in a.choices.values() for dest in _routing(sub)}


def _declared(parser: argparse.ArgumentParser) -> dict[str, dataclasses.Field]:
    """Each option's dest -> the config field that declared it."""
    return {dest_of(item): item for _, item in getattr(parser, "config_fields", [])}


def _fewest_arguments(path: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    """The command line of a command with only what it requires: its positionals, then its required options."""
    positionals, options = [], []
    for action in parser._actions:
        value = "1" if action.type in (int, float) else "x"
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            positionals.append(value)
        elif action.required:
            options += [action.option_strings[0], value]
    return [*path, *positionals, *options]


def test_every_option_of_every_command_is_a_config_field_with_its_default():
    """Each option is declared by a config field, and what the command parses when the option is left out is that
    field's default: nothing else sets a value (a parser's set_defaults, a second field of the same name on one
    command, a string default converted by the option's type), and the command's configs equal the library's."""
    from ntlb.cli.fields import read_config

    parser, checked, built = build_parser(), 0, 0
    for path, command in _commands(parser):
        declared = _declared(command)
        for action in command._actions:
            if isinstance(action, argparse._HelpAction) or action.default is argparse.SUPPRESS:
                continue  # help, and the hidden old spellings (they set the same dest)
            assert action.dest in declared, f"ntlb {' '.join(path)}: {action.dest} is not declared by a config"
        parsed = vars(parser.parse_args(_fewest_arguments(path, command)))
        unknown = set(parsed) - set(declared) - _routing(parser) - {"run", "out_kind"}  # what runs, its --out kind
        assert not unknown, f"ntlb {' '.join(path)} sets {sorted(unknown)} that no config declares"
        for config, item in getattr(command, "config_fields", []):
            if item.metadata.get("required") or item.metadata.get("positional"):
                continue  # no default: the user gives it
            expected = item.metadata["explainer"] if "explainer" in item.metadata else default_of(item)
            assert parsed[dest_of(item)] == expected, f"ntlb {' '.join(path)}: {config.__name__}.{item.name}"
            checked += 1
        for config in {config for config, item in getattr(command, "config_fields", [])} - {ExplainerOptions}:
            if all(default_of(item) is not dataclasses.MISSING and not item.metadata.get("positional")
                   and not item.metadata.get("required") for item in dataclasses.fields(config)):
                made = read_config(config, argparse.Namespace(**parsed))
                assert made == config(), f"ntlb {' '.join(path)}: {config.__name__}"
                built += 1
    assert checked > 150 and built > 30


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


def test_snapshots_are_no_rarer_than_the_steps():
    """One cadence rule for the commands and the app: every `snapshot_every` steps, but at least once by the end."""
    from ntlb.config.guidance import BlendConfig, EditConfig, snapshots_within
    from ntlb.config.layout import LayoutConfig

    assert snapshots_within(EditConfig(steps=300, snapshot_every=50)).snapshot_every == 50
    assert snapshots_within(EditConfig(steps=20, snapshot_every=50)).snapshot_every == 20
    assert snapshots_within(BlendConfig(steps=7), every=3).snapshot_every == 3
    assert snapshots_within(LayoutConfig(steps=60), every=60).snapshot_every == 60  # the app: once, at the end
    assert snapshots_within(LayoutConfig(steps=60), every=0).snapshot_every == 1


@pytest.mark.parametrize("config, field, value, message", [
    ("guidance.EditConfig", "word_score", "median", "unknown word score 'median': use one of paper, .*deletion"),
    ("guidance.GenerateConfig", "method", "both", "unknown guidance 'both': use one of ntlb, clip"),
    ("layout.LayoutConfig", "dice", "other", "unknown dice 'other': use one of paper, released"),
    ("layout.LayoutConfig", "method", "boxes", r"unknown loss 'boxes': use one of ntlb, masked, masked\+full"),
    ("prompts.PromptConfig", "reduction", "max", "unknown reduction 'max': use one of released, paper, bounded"),
])
def test_a_config_refuses_a_value_outside_its_fields_choices(config, field, value, message):
    """The choices a field declares (what the flag and the widget offer) are the check of a config made in code."""
    from importlib import import_module

    module, name = config.split(".")
    made = getattr(import_module(f"ntlb.config.{module}"), name)
    item = next(f for f in dataclasses.fields(made) if f.name == field)
    assert value not in item.metadata["choices"] and all(
        getattr(made(**{field: choice}), field) == choice for choice in item.metadata["choices"])
    with pytest.raises(NtlbError, match=f"^{message}$"):
        made(**{field: value})


def test_help_names_the_library_defaults_it_does_not_restate():
    """Defaults that live in the library (StyleCLIP's l2, the concepts' k and template) are read from it when a
    help is shown: the help says the library's value."""
    from ntlb.explain.concepts import CLASS_TEMPLATE, CONCEPTS_K
    from ntlb.generators import STYLECLIP_L2

    helps = {tuple(path): " ".join(command.format_help().split()) for path, command in _commands(build_parser())}
    assert f"other generators use StyleCLIP's {STYLECLIP_L2})" in helps["edit",]
    assert f"at most this many concepts (default: {CONCEPTS_K})" in helps["explain",]
    assert f"(default: '{CLASS_TEMPLATE}')" in helps["explain",]
    assert f"(default: '{CLASS_TEMPLATE}' for classes, '{{}}' for texts)" in helps["explain-dataset",]
