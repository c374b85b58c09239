"""The map in docs/architecture.md, enforced (issue 21): every import in the product, lazy ones included, points
from a higher layer to a lower one (or stays inside its own subsystem). A new upward import fails here with the
module and the import named."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("qrng", "transparency", "qrngd", "qrng_pkcs11", "ceremony", "qrng_cli")

# (subsystem, rank, module prefixes); the first matching prefix (longest first) decides
LAYERS = [
    ("shared utilities", 0, ("qrng.errors", "qrng.asciinum", "qrng.atomic", "qrng.lockfile", "qrng.httpbound",
                             "qrng.yaml_input", "qrng.native", "qrng._native_build", "qrng._openssl", "qrng.dsse",
                             "qrng")),
    ("transparency: log, tiles, witnesses", 1, ("transparency",)),
    ("HSM edge", 1, ("qrng.hsm",)),
    ("entropy core", 2, ("qrng.sources", "qrng.health", "qrng.extract", "qrng.drbg", "qrng.pipeline", "qrng.config",
                         "qrng.estimate", "qrng.attestation", "qrng.gameday")),
    ("daemon", 3, ("qrngd",)),
    ("transparency: beacon", 3, ("transparency.beacon", "transparency.beacon_service")),
    ("embedded PKCS#11 module", 4, ("qrng_pkcs11",)),
    ("ceremonies", 4, ("ceremony",)),
    ("command line", 5, ("qrng_cli",)),
]
def _layer(module: str) -> tuple[str, int] | None:
    best: tuple[int, str, int] | None = None
    for name, rank, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > best[0]):
                best = (len(p), name, rank)
    return (best[1], best[2]) if best else None


def _imports(path: Path, module: str) -> set[str]:
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            out.add(full)
            out |= {f"{full}.{a.name}" for a in node.names}
    return {o for o in out if o.split(".")[0] in PACKAGES}


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def test_every_import_points_down_the_map():
    upward: list[str] = []
    for module, path in _modules().items():
        here = _layer(module)
        assert here is not None, f"{module} is in no layer of the map: add it to LAYERS and docs/architecture.md"
        for target in _imports(path, module):
            there = _layer(target)
            if there is None or there[0] == here[0]:
                continue
            if there[1] >= here[1]:
                upward.append(f"{module} ({here[0]}) imports {target} ({there[0]})")
    assert not upward, "imports against the map:\n" + "\n".join(sorted(upward))


def test_the_map_ranks_what_it_should():
    assert _layer("transparency.note") == ("transparency: log, tiles, witnesses", 1)
    assert _layer("qrng.pipeline")[1] > _layer("transparency.merkle")[1] > _layer("qrng.atomic")[1]
    assert _layer("ceremony.steps.base") == ("ceremonies", 4) and _layer("os") is None


def test_the_lowest_layers_import_nothing_above_them():
    """The shared utilities import nothing else of the product; the log imports only the utilities."""
    for module, path in _modules().items():
        here = _layer(module)
        if here is not None and here[1] <= 1:
            for target in _imports(path, module):
                there = _layer(target)
                assert there is not None and there[1] <= here[1], f"{module} imports {target}"


def test_the_ceremony_model_names_no_step_module():
    """Issue 21: the circle model -> steps -> base -> model is open: the registry is passed to the model's loaders
    (ceremony/loader.py binds it); the model imports no step module, not even lazily."""
    path = ROOT / "ceremony" / "model.py"
    assert not {t for t in _imports(path, "ceremony.model") if t.startswith(("ceremony.steps", "ceremony.plan"))}


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_import_graph_has_no_circle():
    """Issue 21: no module imports, directly or through others, lazily or for type checking only, a module that
    imports it back. Importing ``a.b.c`` runs the package ``a.b`` too, so a package is a node (its own submodules
    importing it are not a circle: Python has run it before them)."""
    mods = _modules()
    graph = {m: {t for t in _imports(p, m) if t in mods and t != m and not m.startswith(t + ".")}
             for m, p in mods.items()}
    assert _circle(graph) is None, "an import circle: " + " -> ".join(_circle(graph) or [])


def test_the_circle_finder_finds_one():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
