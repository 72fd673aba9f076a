"""The layers of docs/architecture.md, checked on the source: imports point down the layers only, packages of one
layer do not import each other, and relevance is computed under explain/ alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "ntlb"
LAYERS = [  # bottom first; the same list is drawn in docs/architecture.md
    {"errors"},
    {"io", "registry", "distributed"},
    {"training"},
    {"models"},
    {"explain"},
    {"losses", "metrics", "viz", "generators", "world"},
    {"detectors"},
    {"tasks"},
    {"app"},
    {"cli"},
    {"__main__"},  # `python -m ntlb`: the command line
]
FACADES = {"__init__", "explainers"}  # the package's public names, re-exported from below


def _unit(module: str) -> str:
    """ntlb.models.loading -> models; ntlb.io -> io."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def _imports(path: Path) -> list[str]:
    """Absolute names of the ntlb modules a source file imports (relative imports resolved)."""
    parts = list(path.relative_to(ROOT / "src").with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                names = [name] if node.module else [f"{name}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
            found += [n for n in names if n.startswith("ntlb.")]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("ntlb.")]
    return found


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def test_every_package_has_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()))}
    assert units - FACADES == set().union(*LAYERS)


def test_imports_point_down_the_layers():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if own in FACADES:
            continue
        for module in _imports(path):
            other = _unit(module)
            if other == own:
                continue
            if _layer(other) > _layer(own) or (_layer(other) == _layer(own)):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def test_relevance_is_computed_under_explain_only():
    gradient_calls = re.compile(r"autograd\.grad\(|propagate_row\(|attention_gradients\(")
    outside = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.relative_to(PACKAGE).parts[0] != "explain" and gradient_calls.search(p.read_text())]
    assert not outside, f"relevance computed outside explain/: {outside}"


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The rule can fail: a models/ file importing tasks/ is found."""
    probe = PACKAGE / "models" / "_probe_for_test.py"
    probe.write_text("from ..tasks import classify\n")
    try:
        assert "ntlb.tasks" in _imports(probe)
        assert _layer(_unit("ntlb.tasks")) > _layer("models")
    finally:
        probe.unlink()
