"""The structure of the code, drawn from its imports: no cycle, and nothing imports a module on a higher floor.

Every ``import`` counts, also those inside functions and under ``TYPE_CHECKING``: a late import is still a
dependency a reader has to follow. ``from package import module`` depends on that module (not on the
package's ``__init__``). The floors, lowest first, are the map a newcomer reads the code by; a module's
floor is the one of its longest matching prefix.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "harness"

FLOORS: tuple[tuple[str, ...], ...] = (
    # 0. plain helpers every floor may use
    ("harness", "harness.errors", "harness.jsonfile", "harness.procs", "harness.events", "harness.ranks"),
    # 1. what the service and a run are: the timeline, the manifest, Triton's files, the platform contract
    ("harness.timeline", "harness.timeline_store", "harness.deployment", "harness.manifest", "harness.triton",
     "harness.platforms.base"),
    # 2. the service as recorded, the load generator, and the sandbox cluster (it builds and runs, knows no platform)
    ("harness.service", "harness.load", "harness.sandbox", "harness.gpu_evidence"),
    # 3. faults: mechanics (nft, hog, cgroups), undo records, fault families
    ("harness.faults",),
    # 4. the platforms that carry faults out
    ("harness.platforms",),
    # 5. what runs experiments on a platform, and checks of the machine and the deployment
    ("harness.run_settings", "harness.chaos", "harness.deploycheck", "harness.doctor"),
    # 6. what a run's data means
    ("harness.analysis", "harness.report", "harness.openslo"),
    # 7. runs, suites, game days, benchmarks
    ("harness.runner", "harness.plan_checks", "harness.suite", "harness.gameday", "harness.bench"),
    # 8. entry points: they may know everyone
    ("harness.commands", "harness.cli", "harness.watchdog"),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "reference" in path.relative_to(PACKAGE).parts:  # Triton's model code, run by Triton
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from pkg import mod` depends on pkg.mod; `from mod import name` on mod
            candidates = [[f"{source}.{alias.name}", source] for alias in node.names]
        else:
            continue
        for options in candidates:
            for option in options:
                target = option
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target:
                    if target != name:
                        yield target
                    break


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set(_imports(name, path, modules)) for name, path in modules.items()}


def _floor(module: str) -> int:
    best, length = -1, -1
    for level, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "harness" and module.startswith(prefix + "."))
            if inside and len(prefix) > length:
                best, length = level, len(prefix)
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_every_module_has_a_floor() -> None:
    assert [m for m in _modules() if _floor(m) < 0] == []


def test_no_import_cycles() -> None:
    graph = _graph()
    assert sum(len(targets) for targets in graph.values()) > 300, "the import reader found too few imports"
    assert _cycles(graph) == []


def test_no_import_runs_up_a_floor() -> None:
    upward = [f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
              for module, targets in sorted(_graph().items()) for target in sorted(targets)
              if _floor(target) > _floor(module)]
    assert upward == [], "\n".join(upward)


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_watchdog_undoes_every_kind_a_platform_writes() -> None:
    """The store knows no kinds; the watchdog, started for every record, must know them all."""
    from harness.platforms.kubernetes import memagent, model_ops, netagent
    from harness.platforms.kubernetes.spec_ops import SPEC_UNDO_KIND
    from harness.platforms.local.faults import LOCAL_UNDOERS
    from harness.watchdog import ALL_UNDOERS

    kinds = {SPEC_UNDO_KIND, model_ops.UNDO_KIND, netagent.UNDO_KIND, memagent.UNDO_KIND}
    assert set(LOCAL_UNDOERS) | kinds <= set(ALL_UNDOERS)


def test_capabilities_are_declared_not_probed() -> None:
    """Every capability a command or fault uses of a platform is a member of a Protocol in
    ``harness/platforms/base.py`` that mypy checks: no ``getattr`` probing, no ``attr-defined`` ignores."""
    import re

    probe = re.compile(r"getattr\((?:self\.)?(?:platform|scope\.ops|ops|target)\b")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in _modules().values()
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if probe.search(line) or "ignore[attr-defined]" in line]
    assert found == []


# The modules that parse a Chaos Toolkit configuration: RunSettings.from_configuration, PlatformRef for the
# platform's keys, and the analysis settings of a run (the objective, ``configuration.analysis``). Every other
# module gets typed settings (RunContext.settings, ExperimentPlan.settings, AnalysisSettings).
CONFIGURATION_PARSERS = ("harness/run_settings.py", "harness/platforms/registry.py", "harness/analysis/_run.py")


def _configuration_reads(path: Path, keys: frozenset[str]) -> Iterator[str]:
    """Where a module reads a configuration key: ``x.get("harness_…")``, ``x["harness_…"]``, ``"harness_…" in x``,
    or hands the key to a helper (``_cfg(configuration, "harness_…", default)``). Writing one (a dict literal,
    an assignment) is transport and allowed."""
    def key(node: ast.AST) -> str | None:
        return node.value if isinstance(node, ast.Constant) and node.value in keys else None

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        found: str | None = None
        if isinstance(node, ast.Call):
            found = next((k for k in map(key, [*node.args, *(kw.value for kw in node.keywords)]) if k), None)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            found = key(node.slice)
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            found = key(node.left)
        if found:
            yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}: reads {found!r}"


def test_configuration_is_parsed_once() -> None:
    """Nothing but the parsers reads ``harness_*`` keys or the objective from a configuration, so each setting
    has one default and one validation (the control used to re-read 14 of them with defaults of its own)."""
    from harness.platforms.registry import PERMISSION_KEYS
    from harness.run_settings import KNOWN_KEYS

    keys = frozenset(k for k in KNOWN_KEYS if k.startswith("harness_")) | PERMISSION_KEYS | {"max_error_ratio",
                                                                                            "max_p99_ms"}
    assert len(keys) > 25, "the known keys were not found"
    reads = [read for path in _modules().values() if str(path.relative_to(ROOT)) not in CONFIGURATION_PARSERS
             for read in _configuration_reads(path, keys)]
    assert reads == [], "\n".join(reads)
    parser_reads = [read for name in CONFIGURATION_PARSERS for read in _configuration_reads(ROOT / name, keys)]
    assert parser_reads, "the reader finds nothing even in the parser"
