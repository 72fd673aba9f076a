"""What a new user hit, each fixed: one-line errors, interruption and resume lines, notes about the model,
self-contained reports, paged grids, clean reruns, file permissions, help with defaults."""

from __future__ import annotations

import argparse
import io
import json
import re
import stat
import warnings

import numpy as np
import pytest
import torch
from conftest import EXAMPLE, ROOT, load_random
from conftest import one_line_error as _error
from PIL import Image

import ntlb
from ntlb import NtlbError
from ntlb.cli import build_parser, main


def test_devices_that_are_not_there(capsys, tmp_path):
    explain = ["explain", str(EXAMPLE), "--text", "a red circle", "--out", str(tmp_path)]
    if not torch.cuda.is_available():
        _error(capsys, [*explain, "--device", "cuda"], r"no CUDA device here: use --device cpu")
    _error(capsys, [*explain, "--device", "gpu"], r"unknown device 'gpu': use cpu, cuda")


@pytest.mark.parametrize("texts, pattern", [(["", "a cat"], r"text 1 of 2 is empty"), (["   "], "is empty")])
def test_blank_texts(capsys, tmp_path, texts, pattern):
    arguments = ["explain", str(EXAMPLE), "--out", str(tmp_path)]
    for text in texts:
        arguments += ["--text", text]
    _error(capsys, arguments, pattern)


def test_bad_image_files(capsys, tmp_path):
    with Image.open(EXAMPLE) as picture:
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="JPEG")
    truncated = tmp_path / "half.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _error(capsys, ["explain", str(truncated), "--text", "a cat", "--out", str(tmp_path / "o")], r"is truncated")
    _error(capsys, ["explain", str(tmp_path), "--text", "a cat", "--out", str(tmp_path / "o")], r"is a folder")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_checkpoint_is_one_short_line(tmp_path, suffix):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in load_random(None, torch.float32).model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    config = ROOT / "src" / "ntlb" / "models" / "configs" / "ntlb-world.json"
    with pytest.raises(NtlbError, match="is truncated") as err:
        ntlb.load_model(str(config), pretrained=str(path))
    assert "\n" not in str(err.value) and len(str(err.value)) < 200


def test_pretrained_tag_without_network_fails_fast(monkeypatch):
    import socket

    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *args, **kwargs: None)
    with pytest.raises(NtlbError, match="not cached and the network is out of reach: .*--pretrained"):
        ntlb.load_model("ViT-B-32", pretrained="openai")


@pytest.mark.slow
def test_prompt_training_inputs(capsys, tmp_path):
    from ntlb.world.datasets import export_classification

    data = export_classification(tmp_path / "data", task="shape", split="train", per_class=2)
    train = ["prompt", "train", "--data", str(data), "--ctx", "2", "--out", str(tmp_path / "p.pt")]
    _error(capsys, [*train, "--shots", "10"], r"class 'circle' has 2 image\(s\) but --shots is 10: use --shots 2")
    _error(capsys, [*train, "--epochs", "0"], r"--epochs 0: use at least 1")
    _error(capsys, [*train, "--batch-size", "0"], r"--batch-size 0: use at least 1")
    one = tmp_path / "one"
    (one / "circle").mkdir(parents=True)
    for image in list((data / "circle").iterdir())[:2]:
        (one / "circle" / image.name).write_bytes(image.read_bytes())
    _error(capsys, [*train[:3], str(one), *train[4:]], r"has 1 class: .* at least 2 class folders")
    _error(capsys, ["explain", str(EXAMPLE), "--text", "a", "--batch-size", "0", "--out", str(tmp_path)],
           r"--batch-size 0: use at least 1")


@pytest.mark.slow
def test_interrupted_run_says_how_to_resume_and_the_rerun_says_it_resumed(capsys, tmp_path, monkeypatch):
    import ntlb.tasks.layouts.generation as generation

    real = generation.step_loss
    calls = {"n": 0}

    def interrupt_at_third_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "step_loss", interrupt_at_third_step)
    run = ["layout", "generate", "--layout", str(ROOT / "examples" / "layout.json"), "--steps", "4", "--views", "1",
           "--snapshot-every", "2", "--refine", "0", "--out", str(tmp_path / "run")]  # only the steps call the loss
    _error(capsys, run, r"^ntlb: interrupted during step 3/4 \(2 steps done\): rerun the same command to resume",
           code=130)
    assert main(run) == 0
    err = capsys.readouterr().err
    assert f"resuming layout (ntlb) at step 3/4 (2 steps done) from {tmp_path / 'run' / 'checkpoint.pt'}" in err
    assert calls["n"] == 5  # steps 3 and 4 only, after the resume


@pytest.mark.slow
def test_convolutional_towers_get_gradcam_maps(capsys, tmp_path):
    """ConvNeXt (timm) towers, saved and loaded back through ntlb's loader: Grad-CAM on the last stage equals its
    formula; other explainers say what works."""
    from safetensors.torch import save_file

    weights = tmp_path / "convnext.safetensors"
    save_file({k: v.contiguous() for k, v in load_random("convnext_tiny", torch.float32).model.state_dict().items()},
              str(weights))
    adapter = ntlb.load_model("convnext_tiny", pretrained=str(weights))
    pixels = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    explanation = ntlb.explain(adapter, pixels, ["a cat", "a dog"], method="gradcam")
    pixels.requires_grad_(True)  # the slow path's stage output needs a graph
    assert explanation.image.shape == (1, 2, 7, 7)
    stage = adapter.model.visual.trunk.stages[-1]
    store = {}
    handle = stage.register_forward_hook(lambda module, inputs, output: store.setdefault("a", output))
    with torch.enable_grad():
        tokens = adapter.tokenizer(["a dog"])
        text = adapter.encode_text(tokens.ids, tokens.eot).features
        features = adapter.model.visual(pixels)
        score = (torch.nn.functional.normalize(features, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T)[0, 0]
        (grad,) = torch.autograd.grad(score * adapter.logit_scale, [store["a"]])
    handle.remove()
    expected = torch.relu((grad[0].mean(dim=(1, 2))[:, None, None] * store["a"][0]).sum(dim=0))
    assert torch.allclose(explanation.image[0, 1], expected, rtol=1e-4, atol=1e-6)
    assert float(expected.detach().max()) > 0
    note = ntlb.explain(adapter, pixels, ["a cat"]).image_note
    assert "timm ConvNeXt" in note and "use method='gradcam'" in note


@pytest.mark.slow
def test_models_marks_what_works(capsys):
    from ntlb.models.support import support_of

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    explained, refused = out.split("Refused with a one-line reason")
    assert "ViT-B-32" in explained and "RN50" in explained and "convnext_tiny" in explained
    assert "coca_ViT-B-32" in explained and "ViT-B-16-SigLIP" in explained and "MobileCLIP-S1" in explained
    assert "nllb-clip-base" in refused and "coca_base" in refused and "nllb-clip-base" not in explained
    for name in ("nllb-clip-base", "coca_base"):  # refused before building
        assert not support_of(name).works
        with pytest.raises(NtlbError, match=f"{name}: not supported yet"):
            ntlb.load_model(name)
    for name in ("RN50", "convnext_tiny"):
        assert support_of(name).works and load_random(name, torch.float32).last_conv_stage() is not None


@pytest.mark.slow
def test_outputs_say_what_the_model_is(tmp_path, capsys):
    noise = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(noise)
    assert main(["explain", str(noise), str(EXAMPLE), "--text", "a red circle", "--out", str(tmp_path / "w")]) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "w" / "explanations.json").read_text())
    assert any("1 of 2 image(s) do not look like scenes of ntlb's procedural world" in n for n in data["notes"])
    assert "note: 1 of 2 image(s)" in out and "procedural world" in (tmp_path / "w" / "report.html").read_text()
    assert main(["explain", str(EXAMPLE), "--text", "a red circle", "--model", "ViT-B-32",
                 "--out", str(tmp_path / "r")]) == 0
    data = json.loads((tmp_path / "r" / "explanations.json").read_text())
    assert data["random_weights"] and "random weights" in data["notes"][0]
    assert "note: model ViT-B-32 has random weights" in capsys.readouterr().out
    layout = ["layout", "generate", "--layout", str(ROOT / "examples" / "layout.json"), "--model", "ViT-B-32",
              "--steps", "1", "--views", "1", "--out", str(tmp_path / "l")]
    assert main(layout) == 0
    assert "note: model ViT-B-32 has random weights" in capsys.readouterr().out
    assert json.loads((tmp_path / "l" / "metrics.json").read_text())["random_weights"] is True


@pytest.mark.slow
def test_json_records_the_settings_really_used_and_the_model_source(tmp_path, hf_dir):
    out = tmp_path / "g"
    assert main(["explain", str(EXAMPLE), "--text", "a red circle", "--explainer", "gradcam", "--start-layer-image",
                 "3", "--out", str(out)]) == 0
    data = json.loads((out / "explanations.json").read_text())
    assert data["options"]["layer"] == "last" and "start_layer_image" not in data["options"]
    assert main(["explain", str(EXAMPLE), "--text", "a red circle", "--model", f"hf:{hf_dir}", "--start-layer-text",
                 "1", "--out", str(tmp_path / "h")]) == 0
    data = json.loads((tmp_path / "h" / "explanations.json").read_text())
    assert data["model"] == f"hf:{hf_dir}" and data["options"]["start_layer_text"] == 1


@pytest.mark.slow
def test_report_is_self_contained_with_originals_legend_and_captioned_overlays(tmp_path):
    out = tmp_path / "e"
    assert main(["explain", str(EXAMPLE), "--text", "a red circle", "--text", "a blue square", "--out",
                 str(out), "--quiet"]) == 0
    page = (out / "report.html").read_text()
    sources = re.findall(r"src='([^']*)'", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # nothing to carry along
    assert len(sources) == 1 + 1 + 2  # the legend, the original, two overlays
    assert "low <img" in page and "probability of the text among the texts given" in page
    data = json.loads((out / "explanations.json").read_text())
    with Image.open(out / data["pairs"][0]["overlay"]) as overlay, Image.open(EXAMPLE) as original:
        assert overlay.height > max(224, original.height) and overlay.width >= 224  # the caption strip below
        strip = np.asarray(overlay.convert("L"))[-20:]
        assert (strip < 100).any() and (strip > 250).mean() > 0.5  # dark text on white


@pytest.mark.slow
def test_rerun_into_the_same_folder_does_not_mix_runs(tmp_path):
    out = tmp_path / "e"
    assert main(["explain", str(EXAMPLE), "--text", "a red circle", "--text", "a blue square", "--out",
                 str(out), "--quiet"]) == 0
    (out / "mine.txt").write_text("a file of the user's")
    assert main(["explain", str(EXAMPLE), "--text", "a green star", "--out", str(out), "--quiet"]) == 0
    overlays = sorted(p.name for p in out.glob("*.png") if p.name != "grid.png")
    assert overlays == ["000_scene__00_a-green-star.png"] and (out / "mine.txt").is_file()
    mode = stat.S_IMODE((out / "explanations.json").stat().st_mode)
    assert mode == 0o644 or mode == 0o666 & ~_umask()  # the usual permissions, not mkstemp's 0600


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_large_runs_get_paged_grids(tmp_path, monkeypatch):
    """A run with more pairs than a page holds lists every page (64 cells a page in whole rows; 2 here, so that
    2 images x 3 texts make two pages of one row each without drawing 72 overlays)."""
    import functools

    from ntlb.tasks.explaining import files
    from ntlb.viz import picture_grid

    monkeypatch.setattr(files, "picture_grid", functools.partial(picture_grid, per_page=2))
    arguments = ["explain", str(EXAMPLE), str(EXAMPLE), "--quiet", "--out", str(tmp_path)]
    for text in ("a red circle", "a blue star", "a green square"):
        arguments += ["--text", text]
    assert main(arguments) == 0
    data = json.loads((tmp_path / "explanations.json").read_text())
    assert len(data["pairs"]) == 6 and data["grids"] == ["grid-1.png", "grid-2.png"]
    assert all((tmp_path / name).is_file() for name in data["grids"])


@pytest.mark.slow
def test_plain_words_when_not_a_terminal_and_no_glyph_warnings(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["explain", str(EXAMPLE), "--text", "a red circle ☃ 猫", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out and "circle(" in out
    assert not [w for w in caught if "Glyph" in str(w.message)]


def _options(parser: argparse.ArgumentParser, prefix: str = "ntlb"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix} {name}")
        elif (action.option_strings and not isinstance(action, argparse._HelpAction)
              and action.help != argparse.SUPPRESS):  # old names kept working, hidden from help
            yield prefix, parser, action


def test_every_option_has_help_with_its_default():
    seen = 0
    for command, parser, action in _options(build_parser()):
        assert action.help, f"{command} {action.option_strings[0]} has no help"
        text = parser.formatter_class("x")._get_help_string(action)
        if action.default is not False and not action.required:  # flags aside: the default, or what leaving it out does
            assert re.search(r"default|needed with|give exactly one", text), f"{command} {action.option_strings[0]}"
        if action.default is not None and action.default is not False:
            assert "%(default)s" in text or str(action.default) in text, f"{command} {action.option_strings[0]}"
        seen += 1
    assert seen > 60


@pytest.mark.slow
def test_the_example_layout_runs(tmp_path, capsys):
    """The README's `ntlb layout generate --layout examples/layout.json --method masked` (2 steps, 1 view) writes the
    image, the maps and metrics of the example's two boxes."""
    from PIL import Image

    from ntlb.cli import main

    example = ROOT / "examples" / "layout.json"
    out = tmp_path / "m"
    assert main(["layout", "generate", "--layout", str(example), "--method", "masked", "--steps", "2", "--views", "1",
                 "--out", str(out)]) == 0
    assert f"wrote {out}/image.png, maps.png, metrics.json" in capsys.readouterr().out
    with Image.open(out / "image.png") as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    with Image.open(out / "maps.png") as maps:
        assert maps.width > 64
    metrics = json.loads((out / "metrics.json").read_text())
    boxes = [o["box"] for o in json.loads(example.read_text())["objects"]]
    assert (metrics["method"], metrics["generator"], metrics["steps"]) == ("masked", "world-render", 2)
    assert [o["label"] for o in metrics["objects"]] == ["red circle", "blue star"]
    assert [o["box"] for o in metrics["objects"]] == boxes
    for key in ("precision", "recall", "f1", "cosine"):
        assert metrics["mean"][key] == pytest.approx(sum(o[key] for o in metrics["objects"]) / 2)
    import ntlb
    from ntlb.models import image_features, text_features

    model = ntlb.load_model()  # the cosine of each box's text with the written picture, recomputed from the file
    cosines = image_features(model, [out / "image.png"]) @ text_features(model, [o["text"] for o in
                                                                             json.loads(example.read_text())["objects"]]).T
    for obj, cosine in zip(metrics["objects"], cosines[0].tolist()):
        assert obj["cosine"] == pytest.approx(cosine, abs=0.02)  # the file is the image rounded to 8 bits
        p, r = obj["precision"], obj["recall"]
        assert obj["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
