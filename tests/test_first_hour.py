"""A newcomer's first hour, each stumble fixed: output paths checked before any work, a busy port, unfinished and
foreign prompts files, messages in the command line's words, the overlay, the world-scene note."""

from __future__ import annotations

import argparse
import re

import pytest
from conftest import EXAMPLE, interrupt_prompt_training
from conftest import one_line_error as _error

from ntlb.cli import build_parser, main


def _commands_with_out(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands_with_out(sub, (*prefix, name))
    if any("--out" in action.option_strings for action in parser._actions):
        yield prefix


# the least each command needs besides --out (nothing here is read: the output check comes first)
MINIMAL = {
    ("explain",): [str(EXAMPLE), "--text", "a red circle"],
    ("compare",): [str(EXAMPLE), "--text", "a red circle"],
    ("demo",): [],
    ("explain-dataset",): ["data"],
    ("explain-pair",): [str(EXAMPLE), str(EXAMPLE)],
    ("benchmark", "explainers"): [],
    ("prompt", "eval"): ["--prompts", "p.pt", "--data", "data"],
    ("prompt", "explain"): [str(EXAMPLE), "--prompts", "p.pt"],
    ("layout", "generate"): ["--world-seed", "1"],
    ("edit",): [str(EXAMPLE), "--text", "a red circle"],
    ("generate",): ["--text", "a red circle"],
    ("blend",): [str(EXAMPLE), "--target", str(EXAMPLE)],
    ("world", "render"): [],
    ("world", "export"): [],
    ("world", "train"): [],
    ("world", "train-generator"): [],
}
FILE_OUT = {("prompt", "train"): ["--data", "data"]}


def test_every_command_with_an_output_is_checked():
    assert set(_commands_with_out(build_parser())) == {*MINIMAL, *FILE_OUT}


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model fails the test: a bad output path must be refused first."""
    import ntlb.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the output path was checked")

    monkeypatch.setattr(ntlb.models, "load_model", refuse)


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_an_output_folder_that_is_a_file_fails_before_any_work(command, tmp_path, capsys, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    _error(capsys, [*command, *MINIMAL[command], "--out", str(taken)], r"--out .*taken.txt is a file, and this "
                                                                       r"command writes a folder there")
    assert taken.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["taken.txt"]
    _error(capsys, [*command, *MINIMAL[command], "--out", str(taken / "below")], r"taken.txt is a file, not a folder")


def test_a_prompts_file_that_is_a_folder_fails_before_any_work(tmp_path, capsys, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    _error(capsys, ["prompt", "train", *FILE_OUT[("prompt", "train")], "--out", "runs"],
           r"--out runs is a folder, and this command writes a file there: give a file path, e.g. runs/prompts.pt")
    assert list((tmp_path / "runs").iterdir()) == []


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from ntlb.world.datasets import export_classification

    return export_classification(tmp_path_factory.mktemp("shapes") / "data", task="shape", split="train",
                                 per_class=1, size=32)


def test_an_interrupted_prompts_run_is_kept_apart_and_eval_refuses_it(shapes, tmp_path, capsys, monkeypatch):
    calls = interrupt_prompt_training(monkeypatch, at_call=1)
    prompts = tmp_path / "p.pt"
    train = ["prompt", "train", "--data", str(shapes), "--ctx", "2", "--epochs", "3", "--expl-weight", "0",
             "--out", str(prompts)]
    _error(capsys, train, r"^ntlb: interrupted during epoch 1/3 \(nothing saved yet\): rerun the same command to "
                          r"start again$", code=130)
    assert not prompts.exists()
    calls.update(n=0, stop=2)
    _error(capsys, train, r"interrupted during epoch 2/3 \(1 epoch done\): rerun the same command to resume$",
           code=130)
    partial = tmp_path / "p.pt.partial"
    assert not prompts.exists() and partial.is_file()
    evaluate = ["prompt", "eval", "--data", str(shapes), "--prompts"]
    for given in (prompts, partial):
        _error(capsys, [*evaluate, str(given)], r"p.pt.partial is an unfinished run \(1/3 epochs done\): rerun the "
                                                r"command that wrote it to finish it")
    calls.update(n=0, stop=0)
    assert main(train) == 0
    assert "resuming prompt learning at epoch 2/3 (1 epoch done) from" in capsys.readouterr().err
    assert prompts.is_file() and not partial.exists()
    assert main([*evaluate, str(prompts)]) == 0


def test_a_file_that_is_not_a_prompts_file_is_named_so(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8), "red").save(photo)
    line = _error(capsys, ["prompt", "eval", "--prompts", str(photo), "--data", str(tmp_path)],
                  r"photo.jpg is not an ntlb prompts file: give the prompts file that 'ntlb prompt train' wrote")
    assert "remove" not in line and photo.is_file()


def test_a_busy_port_is_one_line_before_the_model_loads(capsys, no_model):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        capsys.readouterr()
        assert main(["app", "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert re.fullmatch(rf"ntlb: error: port {port} on 127.0.0.1 is busy \(.*\): .*--port {port + 1}\n", err), err
    assert "ntlb app on" not in out


def test_messages_use_the_command_line_words(tmp_path, capsys):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    out = ["--out", str(tmp_path / "out")]
    line = _error(capsys, ["explain", str(bad), "--text", "a red circle", *out],
                  r"notes.png is not a picture ntlb can read: give a PNG, JPEG or WebP file$")
    line += _error(capsys, ["explain", str(EXAMPLE), "--text", "a red circle", "--start-layer-image", "99", *out],
                   r"start layer 99 of the image tower \(--start-layer-image\) is outside its 6 layers: use 0..5, or "
                   r"-1..-6 to count from the last$")
    layout = tmp_path / "layout.json"
    layout.write_text('{"width": 64, "height": 64, "objects": [{"box": [0, 0, 9, 9]}]}')
    line += _error(capsys, ["layout", "generate", "--layout", str(layout), *out], r"'text' is missing: expected")
    line += _error(capsys, ["prompt", "train", "--data", str(tmp_path), "--ctx", "0", "--out", str(tmp_path / "p")],
                   r"--ctx 0: use at least 1$")
    assert not re.search(r"\w+_\w+=|Error\b|KeyError", line)


def _photo_like(seed: int, width: int, height: int):
    """Smooth colour gradients and sensor-like noise, saved and read back as a JPEG."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = []
    for _ in range(3):
        a, b, p, q = rng.uniform(0.5, 4, 4)
        channels.append(0.5 + 0.3 * np.sin(a * x + p) * np.cos(b * y + q) + rng.uniform(-0.2, 0.2))
    pixels = np.clip(np.stack(channels, -1) + rng.normal(0, 0.04, (height, width, 3)), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype("uint8")).save(buffer, format="JPEG")
    return Image.open(buffer)


def test_the_world_note_fires_on_photos_and_never_on_the_worlds_own_scenes(tmp_path):
    from PIL import Image

    from ntlb.world.datasets import render_scenes
    from ntlb.world.detector import looks_like_world_scene

    render_scenes(tmp_path, count=50)  # what `ntlb world render` writes
    scenes = sorted(tmp_path.glob("scene_*.png"))
    assert len(scenes) == 50
    assert [path.name for path in scenes if not looks_like_world_scene(Image.open(path))] == []
    photos = [_photo_like(seed, 300, 200) for seed in range(10)] + [_photo_like(seed, 200, 200) for seed in range(20)]
    assert [i for i, photo in enumerate(photos) if looks_like_world_scene(photo)] == []


def test_the_explain_progress_bar_covers_the_writing_and_ends_full(tmp_path, capsys):
    capsys.readouterr()
    assert main(["explain", str(EXAMPLE), str(EXAMPLE), "--text", "a red circle", "--batch-size", "1", "--quiet",
                 "--out", str(tmp_path)]) == 0
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.match(r"writing report: 100%.* 4/4 ", last), last  # 2 batches, the grid, the report


@pytest.mark.parametrize("command, old, new, value", [
    (["explain", "x.png", "--text", "a"], "--method", "explainer", "rollout"),
    (["demo"], "--method", "explainer", "rollout"),
    (["explain-pair", "a.png", "b.png"], "--method", "explainer", "occlusion"),
    (["explain-dataset", "data", "--out", "o"], "--method", "explainer", "rollout"),
    (["compare", "x.png", "--text", "a"], "--methods", "explainers", "rollout,attention"),
    (["benchmark", "explainers"], "--methods", "explainers", "rollout"),
    (["generate", "--text", "a"], "--method", "guidance", "clip"),
    (["layout", "generate"], "--method", "loss", "masked"),
])
def test_one_flag_name_per_meaning_and_the_old_names_still_work(command, old, new, value, capsys):
    parser = build_parser()
    assert getattr(parser.parse_args([*command, f"--{new.replace('_', '-')}", value]), new) == value
    assert getattr(parser.parse_args([*command, old, value]), new) == value
    assert f"note: {old} is now --{new}" in capsys.readouterr().err
    help_text = _help(parser, command)
    assert f"--{new}" in help_text and f"{old} " not in help_text


def _help(parser: argparse.ArgumentParser, command: list[str]) -> str:
    for name in command:
        if name.startswith("-") or "." in name or name in ("a", "data", "o"):
            break
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser.format_help()
