"""The layering rules of docs/architecture.md, checked on the source: who may import whom, no
import cycle (package ``__init__`` files and lazy imports included), and serving and the bulk job
never reaching training code."""

from __future__ import annotations

import pytest

from tests.import_graph import ROOT, cycles, graph, modules, package_dirs, reachable

LIBRARY_BASE = {"magneto.errors", "magneto.devices"}
# area -> the areas it may import (besides itself). An area is a subpackage or a top module.
ALLOWED: dict[str, set[str]] = {
    "magneto.errors": set(),
    "magneto.devices": {"magneto.errors"},
    "magneto.data": LIBRARY_BASE,
    "magneto.model": LIBRARY_BASE | {"magneto.data"},
    "magneto.embeddings": LIBRARY_BASE | {"magneto.data", "magneto.model"},
    "magneto.sources": LIBRARY_BASE | {"magneto.data"},
    "magneto.infer": LIBRARY_BASE | {"magneto", "magneto.data", "magneto.model"},
    "magneto.bulk": LIBRARY_BASE | {"magneto.data", "magneto.model", "magneto.infer"},
    # RunConfig checks a run's losses by name when it is built (the registry, not the loop)
    "magneto.config": LIBRARY_BASE | {"magneto.data", "magneto.model", "magneto.train"},
    "magneto.train": LIBRARY_BASE
    | {"magneto.config", "magneto.data", "magneto.model", "magneto.embeddings", "magneto.infer"},
    "magneto.service": LIBRARY_BASE | {"magneto.data", "magneto.model", "magneto.infer"},
    "magneto.configs": set(),
}
STAGE_DEPS = LIBRARY_BASE | {
    "magneto.config",
    "magneto.data",
    "magneto.model",
    "magneto.embeddings",
    "magneto.infer",
    "magneto.train",
}
ALLOWED["magneto.training"] = STAGE_DEPS
ALLOWED["magneto.pretraining"] = STAGE_DEPS
# The public face re-exports library names only; the command line composes everything.
ALLOWED["magneto"] = {a for a in ALLOWED if a not in {"magneto.service", "magneto.training"}} - {
    "magneto.pretraining",
    "magneto.configs",
}
ALLOWED["magneto.cli"] = set(ALLOWED)

SERVING = ("magneto.infer", "magneto.bulk", "magneto.service")
TRAINING = ("magneto.train", "magneto.training", "magneto.pretraining", "magneto.config")
CONFIG_MAY_USE = {
    "magneto.train",
    "magneto.train.loss_names",
    "magneto.train.loss_registry",
    "magneto.train.loss_terms",
}


def area(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def test_every_module_belongs_to_an_area_with_rules():
    assert {area(m) for m in modules()} == set(ALLOWED)


def test_no_import_cycle_anywhere():
    assert cycles(graph(lazy=True)) == []


def test_each_area_imports_only_what_it_may():
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph(lazy=True).items()
        for target in targets
        if area(target) != area(module) and area(target) not in ALLOWED[area(module)]
    ]
    assert wrong == []


def test_config_uses_only_the_loss_registry_of_the_training_machinery():
    edges = graph(lazy=False)
    used = {t for t in edges["magneto.config"] if area(t) == "magneto.train"}
    assert used <= CONFIG_MAY_USE
    # ... and the registry needs no model code (it names losses and checks their parameters)
    assert reachable(edges, "magneto.train.loss_registry") <= CONFIG_MAY_USE | {"magneto.errors"}


@pytest.mark.parametrize("start", SERVING)
def test_serving_and_bulk_never_reach_training_code(start):
    edges = graph(lazy=False)  # attribute exports of ``magneto`` run only when asked for
    for module in (m for m in edges if area(m) == start):
        reached = sorted(t for t in reachable(edges, module) if area(t) in TRAINING)
        assert reached == [], f"{module} reaches {reached}"


def test_training_and_pretraining_build_on_the_library_not_on_each_other():
    edges = graph(lazy=True)
    for module, targets in edges.items():
        if area(module) in ("magneto.training", "magneto.pretraining"):
            others = {area(t) for t in targets} & {"magneto.training", "magneto.pretraining"}
            assert others <= {area(module)}, module


def test_nothing_imports_the_folders_by_their_own_names():
    """``service``, ``training``, ... exist only as ``magneto.service``, ``magneto.training``."""
    from tests.import_graph import imported_names

    bare = {
        "service",
        "training",
        "pretraining",
        "cli",
        "configs",
        "magneto_cli",
        "magneto_configs",
    }
    files = {**modules()}
    for folder in ("tests", "benchmarks", "experiments", "docs", "docker", "examples"):
        files.update({str(p): p for p in (ROOT / folder).rglob("*.py")})
    offenders = [
        f"{name}: {imported}"
        for name, path in files.items()
        for imported in imported_names("x", path, lazy=False)
        if imported.split(".")[0] in bare
    ]
    assert offenders == []


def test_the_library_folder_stays_small_and_its_modules_short():
    library = ROOT / "magneto"
    entries = sorted(p.name for p in library.iterdir() if p.name != "__pycache__")
    assert len(entries) <= 11, entries
    long = {
        str(path.relative_to(ROOT)): n
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > 320
    }
    assert long == {}


def test_every_subpackage_says_what_it_owns_and_may_import():
    for package, folder in package_dirs().items():
        text = (folder / "__init__.py").read_text()
        assert text.lstrip().startswith('"""'), package
        docstring = text.split('"""')[1]
        assert len(docstring.split()) >= 12, f"{package}: a one-paragraph docstring"
