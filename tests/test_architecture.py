"""The layers of docs/architecture.md, checked on the source: imports point down the layers only, packages of one
layer do not import each other, the library never imports the research harness (ntlb_research, which sits on top
of it; the CLI loads it inside the commands that run it), and relevance is computed under explain/ alone (no
gradient is taken or read elsewhere but in the listed optimiser steps). Everything is read as a syntax tree;
nothing is written."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = SRC / "ntlb"
RESEARCH = SRC / "ntlb_research"  # the harness on top of the library: benchmark, world trainers
LAYERS = [  # bottom first; the same list is drawn in docs/architecture.md
    {"errors"},
    {"io", "registry", "distributed"},
    {"training"},
    {"models"},
    {"explain"},
    {"world"},
    {"losses", "metrics", "viz", "generators"},
    {"detectors"},
    {"config"},
    {"tasks"},
    {"app"},
    {"cli"},
    {"__main__"},  # `python -m ntlb`: the command line
]
FACADES = {"__init__", "explainers"}  # the package's public names, re-exported from below


def _unit(module: str) -> str:
    """ntlb.models.loading -> models; ntlb.io -> io."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def _imports(source: str, module: str) -> list[str]:
    """Absolute names of the ntlb modules that the source of `module` (ntlb.models.loading,
    ntlb.models.__init__) imports, relative imports resolved."""
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
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


def _module(path: Path) -> str:
    """src/ntlb/models/loading.py -> ntlb.models.loading."""
    return ".".join(path.relative_to(ROOT / "src").with_suffix("").parts)


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
        for module in _imports(path.read_text(), _module(path)):
            other = _unit(module)
            if other == own:
                continue
            if _layer(other) > _layer(own) or (_layer(other) == _layer(own)):
                wrong.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)



RESEARCH_LOADERS = {"cli"}  # the one layer that may load ntlb_research, and only inside a function (when run)
RESEARCH_MAY_NOT_IMPORT = {"cli", "app", "__main__"}  # the harness sits on the library and tasks, beside the shells


def research_imports(source: str) -> list[tuple[int, bool]]:
    """(line, at module level) of each import of ntlb_research in a module's source."""
    tree = ast.parse(source)
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else
                 [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        if any(n == "ntlb_research" or n.startswith("ntlb_research.") for n in names):
            found.append((node.lineno, id(node) in top))
    return sorted(found)


def test_the_library_never_imports_the_research_harness():
    """ntlb does not import ntlb_research, but for the CLI's commands that run it (imported inside them, so the
    library and `ntlb --help` never load it); ntlb_research imports the library, not the shells over it."""
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for line, at_top in research_imports(path.read_text()):
            if own not in RESEARCH_LOADERS or at_top:
                wrong.append(f"src/ntlb/{path.relative_to(PACKAGE).as_posix()}:{line} imports ntlb_research")
    for path in sorted(RESEARCH.rglob("*.py")):
        wrong += [f"src/{path.relative_to(SRC).as_posix()} imports {module}"
                  for module in _imports(path.read_text(), _module(path))
                  if _unit(module) in RESEARCH_MAY_NOT_IMPORT]
    assert not wrong, "imports across the library / research line:\n" + "\n".join(wrong)
    assert research_imports((PACKAGE / "cli" / "benchmark.py").read_text()), "the guard reads nothing"


def test_the_checker_sees_the_research_harness_imported():
    """The rule can fail: an import of ntlb_research at module level, and one inside a function, are both seen
    (checked on a string)."""
    source = "import ntlb_research.world_training\ndef run():\n    from ntlb_research.explainer_benchmark import x\n"
    assert research_imports(source) == [(1, True), (3, False)]
    assert _imports("from ntlb.cli import main\n", "ntlb_research.probe") == ["ntlb.cli"]

# Gradients outside explain/: one place takes them, the optimiser step of ntlb.training (`descend`, which calls
# `backward`); the long runs hand their steps to TrainingRun.loop and those steps call it. The steps that may call it
# are listed by file under src/ and enclosing function (not by line), each with why; a gradient taken or read
# anywhere else, or the optimiser step called from anywhere else, fails the guard.
OPTIMISER_STEP = ("ntlb/training.py", "backward")
STEP_HELPERS = {"descend", "backward"}  # ntlb.training's optimiser step
OPTIMISER_STEPS = {
    ("ntlb/tasks/guidance/optimisation.py", "optimise.step"): "the latent-optimisation step (layout, edit, generate, "
                                                             "blend)",
    ("ntlb/tasks/prompting/training.py", "step_gradients"): "the prompt learner's step (CE + lambda * explanation "
                                                          "loss), one backward per class chunk",
    ("ntlb_research/vqgan_training.py", "train_world_vqgan.step"): "the world VQGAN's generator and discriminator "
                                                                   "steps",
    ("ntlb_research/world_training.py", "train.step"): "the world CLIP's training step",
    ("ntlb/tasks/guidance/editing.py", "invert"): "inverting an image into a latent, for generators without an encoder",
    ("ntlb/tasks/prompting/linear_probe.py", "fit_linear_probe.closure"): "the linear-probe baseline's L-BFGS closure",
}
TRANSFORMS = {"grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "linearize"}
RELEVANCE_HELPERS = {"propagate_row", "attention_gradients"}  # explain/'s own gradient helpers


def _dotted(node: ast.expr) -> str | None:
    """torch.autograd.grad for the expression torch.autograd.grad; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _is_optimiser_step(name: str) -> bool:
    """ntlb.training.descend / backward, by the full name the module's imports give."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[-2] == "training" and parts[-1] in STEP_HELPERS


def _is_gradient_call(name: str) -> bool:
    """autograd.grad / autograd.backward / autograd.functional.*, torch.func's or functorch's transforms, and
    explain/'s gradient helpers, by the full name the module's imports give."""
    parts = name.split(".")
    if _is_optimiser_step(name):
        return True
    if "autograd" in parts[:-1] and (parts[-1] in ("grad", "backward") or "functional" in parts):
        return True
    if parts[-1] in TRANSFORMS and ("func" in parts[:-1] or "functorch" in parts[:-1]):
        return True
    return parts[-1] in RELEVANCE_HELPERS


class _GradientFinder(ast.NodeVisitor):
    """(line, enclosing function, what) of every gradient taken or read in one module: gradient calls,
    `.backward(...)` and reads of `.grad`."""

    def __init__(self):
        self.found: list[tuple[int, str, str]] = []
        self.aliases: dict[str, str] = {}  # local name -> full name, from the module's imports
        self.scope: list[str] = []
        self.reported: set[int] = set()

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                alias.name.split(".")[0]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.aliases[alias.asname or alias.name] = f"{node.module or ''}.{alias.name}".lstrip(".")

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def _report(self, node: ast.AST, what: str) -> None:
        self.found.append((node.lineno, ".".join(self.scope) or "<module>", what))

    def visit_Call(self, node: ast.Call) -> None:
        name = _dotted(node.func)
        if name is not None:
            head, _, rest = name.partition(".")
            name = ".".join(filter(None, [self.aliases.get(head, head), rest]))
        if isinstance(node.func, ast.Attribute) and node.func.attr == "backward" and not (
                name and _is_gradient_call(name)):
            self._report(node, ".backward()")
            self.reported.add(id(node.func))
        elif name and _is_gradient_call(name):
            self._report(node, f"{name}()")
            self.reported.add(id(node.func))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr == "grad" and isinstance(node.ctx, ast.Load) and id(node) not in self.reported:
            self._report(node, ".grad read")
        self.generic_visit(node)


def gradient_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function, what) of each gradient a module's source takes or reads."""
    finder = _GradientFinder()
    finder.visit(ast.parse(source))
    return sorted(finder.found)


def _allowed(path: str, function: str, what: str = ".backward()") -> bool:
    """A gradient use is allowed in the optimiser step; a call of the optimiser step in a listed step function."""
    if _is_optimiser_step(what.removesuffix("()")):
        return (path, function) in OPTIMISER_STEPS
    return (path, function) == OPTIMISER_STEP


def test_relevance_is_computed_under_explain_only():
    """No gradient is taken or read outside explain/ but in the optimiser steps listed above."""
    outside = []
    for path in sorted([*PACKAGE.rglob("*.py"), *RESEARCH.rglob("*.py")]):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith("ntlb/explain/"):
            continue
        outside += [f"src/{relative}:{line}: {what} in {function}"
                    for line, function, what in gradient_uses(path.read_text())
                    if not _allowed(relative, function, what)]
    assert not outside, "gradients outside explain/ and the optimiser steps:\n" + "\n".join(outside)


def test_every_listed_optimiser_step_takes_a_gradient():
    """The allow-list holds no stale entry: each named function still calls the optimiser step, which still takes
    the gradient."""
    for (path, function), _ in OPTIMISER_STEPS.items():
        uses = gradient_uses((SRC / path).read_text())
        assert any(where == function and _is_optimiser_step(what.removesuffix("()")) for _, where, what in uses), \
            (path, function)
    path, function = OPTIMISER_STEP
    uses = gradient_uses((SRC / path).read_text())
    assert (function, ".backward()") in {(where, what) for _, where, what in uses}


def test_the_gradient_checker_sees_a_backward_and_a_grad_read():
    """The guard can fail: a loss module that backpropagates and reads .grad, or calls autograd or torch.func under
    other names, is listed line by line (checked on a string; nothing is written)."""
    source = (
        "import torch\n"
        "from torch import autograd\n"
        "from torch.func import vjp as pullback\n"
        "import torch.func as tf\n"
        "def relevance(score, x, f):\n"
        "    score.sum().backward()\n"
        "    weights = x.grad.clamp(min=0)\n"
        "    (g,) = autograd.grad(score, x)\n"
        "    _, back = pullback(f, x)\n"
        "    j = tf.jacrev(f)(x)\n"
        "    h = torch.autograd.functional.hessian(f, x)\n"
        "    return torch.autograd.grad(score, x)[0], propagate_row(score)\n"
        "x.grad = None\n"  # writing .grad (zeroing) is not reading a gradient
        "y = torch.nn.functional.relu(x)\n"
    )
    assert gradient_uses(source) == [
        (6, "relevance", ".backward()"), (7, "relevance", ".grad read"), (8, "relevance", "torch.autograd.grad()"),
        (9, "relevance", "torch.func.vjp()"), (10, "relevance", "torch.func.jacrev()"),
        (11, "relevance", "torch.autograd.functional.hessian()"), (12, "relevance", "propagate_row()"),
        (12, "relevance", "torch.autograd.grad()")]
    assert not _allowed("ntlb/losses/semantic_words.py", "relevance")
    assert not _allowed("ntlb/tasks/guidance/optimisation.py", "optimise.step", ".backward()")  # only through descend


def test_the_checker_sees_the_optimiser_step_called_outside_the_listed_steps():
    """The optimiser step under another name, in a module that is not a listed step, is found and refused."""
    source = (
        "from ..training import descend as step_once\n"
        "import ntlb.training\n"
        "def nudge(optimizer, loss):\n"
        "    step_once(optimizer, loss)\n"
        "    ntlb.training.backward(loss)\n"
    )
    uses = gradient_uses(source)
    assert uses == [(4, "nudge", "training.descend()"), (5, "nudge", "ntlb.training.backward()")]
    assert not any(_allowed("ntlb/losses/semantic_words.py", function, what) for _, function, what in uses)
    assert _allowed("ntlb_research/world_training.py", "train.step", "training.descend()")


def test_the_checker_sees_a_wrong_import():
    """The rule can fail: a models/ module importing tasks/ is found (checked on a string; nothing is written)."""
    found = _imports("from ..tasks import classify\nimport ntlb.viz\n", "ntlb.models._probe")
    assert found == ["ntlb.tasks", "ntlb.viz"]
    assert _layer(_unit("ntlb.tasks")) > _layer("models") and _layer(_unit("ntlb.viz")) > _layer("models")
