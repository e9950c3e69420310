"""The house rules, read from the source: which package may import which, no import cycles (lazy
imports included), and imports inside functions only where they keep start-up fast or load an extra."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tunekit"

# Where an import inside a function is the point: the CLI and the package root must not pay for torch
# or optuna before a command runs (`tunekit --help`), the entry point answers signals before it imports
# the CLI, and a spawned worker imports after setting OMP_NUM_THREADS.
LAZY_ALLOWED_IN = {"tunekit.entry", "tunekit.cli", "tunekit", "tunekit.study.workers"}
# Optional extras (and scikit-learn, read only for bundled datasets) are imported where they are used.
OPTIONAL = {"plotly", "matplotlib", "cmaes", "psycopg", "mlflow", "tensorboard", "onnx", "onnxruntime", "onnxscript"}
OPTIONAL |= {"sklearn", "scipy", "grpc", "optuna.visualization"}
# One import that must run inside a function: Optuna's importance module, imported with scikit-learn
# hidden so that fANOVA's dependency does not add 1.5 s to every report (see report.summary).
# And SQLAlchemy, which only a study in a database needs (Optuna itself imports it only for RDBStorage).
LAZY_BY_DESIGN = {("tunekit.report.summary", "optuna.importance"), ("tunekit.study.storage", "sqlalchemy")}


def _optional(module: str) -> bool:
    return any(module == x or module.startswith(x + ".") for x in OPTIONAL)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(tree: ast.Module):
    """(imported module, is it inside a function) for every import that runs, lazy ones included."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        inside, up = False, node
        while up in parents:
            up = parents[up]
            if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside = True
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, inside
        elif node.module and node.level == 0 and not node.module.startswith("tunekit"):
            for alias in node.names:  # `from optuna import visualization` imports optuna.visualization
                yield f"{node.module}.{alias.name}", inside
        elif node.module and node.level == 0:
            yield node.module, inside
            for alias in node.names:  # `from tunekit.components import metrics` imports a module
                if f"{node.module}.{alias.name}" in MODULES:
                    yield f"{node.module}.{alias.name}", inside


def _graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in _imports(tree) if m in MODULES and m != name} for name, tree in MODULES.items()}


def _reaches(start: str, graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _third_party(name: str) -> set[str]:
    return {m.split(".")[0] for m, _ in _imports(MODULES[name])}


def test_train_never_imports_the_study_or_optuna():
    graph = _graph()
    for name in [m for m in MODULES if m.startswith("tunekit.train")]:
        reached = _reaches(name, graph) | {name}
        assert not {m for m in reached if m.startswith("tunekit.study")}, name
        assert not any("optuna" in _third_party(m) for m in reached), name


def test_the_report_never_imports_torch():
    graph = _graph()
    for name in [m for m in MODULES if m.startswith("tunekit.report")]:
        reached = _reaches(name, graph) | {name}
        importing_torch = [m for m in reached if "torch" in _third_party(m)]
        assert not importing_torch, f"{name} reaches torch through {importing_torch}"


def test_no_import_cycles_lazy_imports_included():
    graph = _graph()
    for name in graph:
        assert name not in _reaches(name, graph), f"{name} imports itself through {sorted(_reaches(name, graph))}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_inside_functions_only_for_start_up_or_extras(name):
    if name in LAZY_ALLOWED_IN:
        return
    lazy = {
        m for m, inside in _imports(MODULES[name]) if inside and not _optional(m) and (name, m) not in LAZY_BY_DESIGN
    }
    assert not lazy, f"{name} imports {sorted(lazy)} inside functions; import them at the top"


def test_every_package_says_what_it_owns():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.splitlines()[0]) > 20, f"{init} needs a one-line docstring"


def test_optuna_private_api_only_in_study_storage():
    # Optuna's private attributes change between releases; one module wraps the few tunekit needs.
    private = ("._storage", "._trial_id", "optuna.storages.journal._", "optuna.storages._")
    users = sorted(
        name
        for name, tree in MODULES.items()
        if name != "tunekit.study.storage" and any(p in ast.unparse(tree) for p in private)
    )
    assert not users, f"{users} reach Optuna's private API; add a wrapper to tunekit/study/storage.py"
