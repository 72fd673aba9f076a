"""The command line end to end: outputs written, JSON consistent, errors one line, --help everywhere."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import EXAMPLE

import ntlb
from ntlb.cli import main
from ntlb.explain import available


@pytest.mark.slow
def test_explain_writes_pictures_report_and_json(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["explain", str(EXAMPLE), str(EXAMPLE), "--text", "a red circle", "--text", "a blue square",
                 "--out", str(out), "--batch-size", "1"])
    assert code == 0
    data = json.loads((out / "explanations.json").read_text())
    assert data["model"] == "ntlb-world" and len(data["pairs"]) == 4
    first = data["pairs"][0]
    assert [w for w, _ in first["words"]] == ["a", "red", "circle"]
    assert sum(r for _, r in first["words"]) == pytest.approx(1.0, abs=1e-5)
    assert len(first["patch_map"]) == 8 and len(first["patch_map"][0]) == 8
    assert first["probability"] + data["pairs"][1]["probability"] == pytest.approx(1.0, abs=1e-5)
    overlays = {record["overlay"] for record in data["pairs"]}
    assert len(overlays) == 4 and all((out / name).is_file() for name in overlays)
    assert "a blue square" in (out / "report.html").read_text()
    assert "wrote 4 pairs" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_explain_missing_image_is_one_line_error(tmp_path, capsys):
    code = main(["explain", str(tmp_path / "nope.png"), "--text", "a cat", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("ntlb: error: image not found") and err.count("\n") == 1


def test_explain_without_text(tmp_path, capsys):
    assert main(["explain", str(EXAMPLE), "--out", str(tmp_path)]) == 2
    assert "add at least one --text" in capsys.readouterr().err


def test_models_lists_bundled_and_open_clip(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ntlb-world" in out and "ViT-B-32" in out and "hf:<dir>" in out


@pytest.mark.parametrize("command", [[], ["explain"], ["models"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "usage: ntlb" in out
    if command == ["explain"]:  # choices read from the registry when the help is shown
        assert "--explainer {" + ",".join(available()) + "}" in out


def test_help_imports_neither_torch_nor_open_clip():
    """`ntlb --help` builds every command's parser without the library (each command imports it when it runs), in
    a fresh interpreter; the choices read from registries still appear in a command's own help (test_help)."""
    code = ("import sys\nfrom ntlb.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as end:\n"
            "    assert end.code == 0, end.code\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'open_clip', 'numpy', 'PIL'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "edit" in done.stdout and "explain-dataset" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


def test_world_render_writes_scenes_with_their_truth(tmp_path):
    assert main(["world", "render", "--count", "2", "--objects", "2", "--out", str(tmp_path)]) == 0
    scenes = json.loads((tmp_path / "scenes.json").read_text())
    assert len(scenes) == 2 and len(scenes[0]["objects"]) == 2
    named = {w[2] for w in scenes[0]["words"] if w[1] in ("colour", "shape")}
    assert named <= {0, 1} and all(len(o["box"]) == 4 for o in scenes[0]["objects"])
    assert (tmp_path / scenes[0]["image"]).is_file()


@pytest.mark.slow
def test_demo_explains_a_generated_scene(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    data = json.loads((tmp_path / "explanations.json").read_text())
    assert len(data["pairs"]) == 4 and (tmp_path / "scene.png").is_file()
    colours_in_scene = {data["pairs"][0]["words"][1][0], data["pairs"][1]["words"][1][0]}
    assert data["pairs"][3]["words"][1][0] not in colours_in_scene  # the wrong caption names an absent colour


@pytest.mark.parametrize("command", [["demo"], ["world"], ["world", "render"], ["world", "export"],
                                     ["world", "train"]])
def test_world_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0


@pytest.mark.slow
@pytest.mark.parametrize("model", [None, "RN50", "ViT-B-16"])
def test_compare_runs_every_explainer(tmp_path, capsys, model):
    out = tmp_path / "cmp"
    arguments = ["compare", str(EXAMPLE), "--text", "a red circle", "--text", "a blue square", "--out", str(out)]
    # occlusion costs one forward pass per patch and interactions one Jacobian-vector product per patch and path point
    # (196 patches for ViT-B/16 on 2 CPU cores): they run on the small models only
    expected = set(available()) - ({"occlusion", "interactions"} if model == "ViT-B-16" else set())
    methods = ["--explainers", ",".join(sorted(expected))] if model == "ViT-B-16" else []
    assert main(arguments + methods + (["--model", model] if model else [])) == 0
    data = json.loads((out / "compare.json").read_text())
    ran = set(data["methods"])
    if model == "RN50":  # no patch attention: the attention-path methods say why; gradcam still maps the image
        assert set(data["skipped"]) | ran == expected
        assert {"clip_surgery", "legrad", "decomposition"} <= set(data["skipped"]) and "gradcam" in ran
        assert not data["methods"]["gradcam"][0]["image_note"]
    else:
        assert ran == expected and not data["skipped"]
    assert (out / "compare.png").stat().st_size > 10_000


@pytest.mark.slow
def test_benchmark_explainers_writes_tables(tmp_path):
    assert main(["benchmark", "explainers", "--count", "2", "--explainers", "chefer2021,attention",
                 "--grounding", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "explainers.json").read_text())
    assert set(data["methods"]) == {"chefer2021", "attention", "random (control)"}
    from ntlb.metrics import mask_energy, pointing_game
    from ntlb_research.explainer_benchmark import named_object_pairs

    pairs = named_object_pairs(2, 2)  # the benchmark's 2-object scenes, explained directly
    with torch.no_grad():
        explanation = ntlb.explain(ntlb.load_model(), [p.picture for p in pairs], [p.caption.text for p in pairs],
                                   pairs="diagonal")
    masks = torch.stack([p.mask for p in pairs])
    entry = data["methods"]["chefer2021"]["2_object"]
    maps = explanation.image[:, 0]
    assert entry["pointing_game"] == pytest.approx(float(pointing_game(maps, masks).float().mean()))
    low = maps.flatten(1).amin(dim=1)[:, None, None]
    assert entry["energy_in_mask"] == pytest.approx(float(mask_energy(maps - low, masks).mean()))
    assert "| chefer2021 |" in (tmp_path / "explainers.md").read_text()
    grounding = data["word_grounding"]  # 1 pair per kind; attention's text rows do not see the image: all ties
    assert grounding["pairs_per_kind"] == 1 and "attention" in grounding["notes"]
    assert "| chefer2021 | scaled | visual | softmin |" in (tmp_path / "explainers.md").read_text()


@pytest.mark.parametrize("command", [["compare"], ["benchmark"], ["benchmark", "explainers"], ["prompt"],
                                     ["prompt", "train"], ["prompt", "eval"], ["prompt", "explain"], ["layout"],
                                     ["layout", "generate"], ["layout", "evaluate"]])
def test_compare_and_benchmark_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: ntlb" in capsys.readouterr().out


def test_every_readme_command_line_parses():
    """Each `ntlb ...` line of the README's commands (options in [...] tried one at a time, placeholders filled) is
    accepted by the parser, so a renamed flag or command cannot leave the README behind."""
    import re
    import shlex

    from conftest import ROOT

    from ntlb.cli import build_parser

    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [re.split(r"\s+# ", line)[0].strip() for line in "".join(blocks).replace("\\\n", " ").splitlines()
             if re.match(r"(\.venv/bin/ntlb|ntlb|torchrun .* -m ntlb) [a-z]", line.strip())]
    assert len(lines) > 30
    parser, wrong = build_parser(), []
    for line in lines:
        command = re.sub(r"^.*?ntlb ", "", line.split(" && ")[-1])
        bare = re.sub(r"\s*\[[^\]]*\]", "", command)
        for variant in [bare] + [f"{bare} {option.split('|')[0]}" for option in re.findall(r"\[([^\]]*)\]", command)]:
            variant = re.sub(r"\bIMG\.\.\.", "a.png b.png", variant).replace("--out ...", "--out runs/x")
            try:
                parser.parse_args(shlex.split(variant.replace(",...", "")))
            except SystemExit:
                wrong.append(variant)
    assert not wrong, wrong
