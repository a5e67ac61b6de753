"""The package's shape: each stage imports only the stages below it, with no cycle, no two modules share a name,
and README's layout table lists every module of the tree."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "sbert_repro"
# The stages, lowest first: a module may import its own stage and those before it. evaluate and train are
# siblings: scoring a model never needs training code.
LAYERS = ("errors", "data", "config", "runs", "model", "search", "evaluation", "train", "analysis", "report",
          "pipeline", "cli")
NEVER = {("evaluation", "train")}
LONGEST_MODULE, LONGEST_FUNCTION = 400, 60


def modules() -> dict[str, Path]:
    return {".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__"): path
            for path in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """Every sbert_repro module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sbert_repro"):
            found.update(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules() else node.module
                         for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("sbert_repro"))
    return found


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "api"


def test_every_import_goes_to_the_same_stage_or_one_below_it():
    upward = []
    for module, path in modules().items():
        if stage(module) == "api":  # the package's own __init__: the public API, above every stage
            continue
        for target in imports(path):
            if stage(target) == "api":
                upward.append(f"{module} -> {target}")
                continue
            low, high = LAYERS.index(stage(target)), LAYERS.index(stage(module))
            if low > high or (stage(module), stage(target)) in NEVER:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_modules_import_each_other_without_a_cycle():
    graph = {module: {target for target in imports(path) if target in modules()} for module, path in modules().items()}
    state: dict[str, int] = defaultdict(int)  # 0 unseen, 1 on the path, 2 done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state[target] == 1:
                cycles.append(" -> ".join([*path[path.index(target):], target]))
            elif state[target] == 0:
                visit(target, [*path, target])
        state[module] = 2

    for module in graph:
        if state[module] == 0:
            visit(module, [module])
    assert cycles == []


def test_no_two_modules_share_a_name():
    names = defaultdict(list)
    for module in modules():
        if not module.endswith("__init__") and module.count(".") >= 1:
            names[module.rsplit(".", 1)[1]].append(module)
    for path in (REPO_ROOT / "benchmarks").glob("*.py"):
        names[path.stem].append(f"benchmarks.{path.stem}")
    assert {name: found for name, found in names.items() if len(found) > 1 and name != "__init__"} == {}


def test_modules_and_functions_stay_short():
    long = []
    for module, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > LONGEST_MODULE:
            long.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LONGEST_FUNCTION:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert long == []


def test_readme_layout_table_lists_every_module_of_the_tree():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(sbert_repro/[\w/]+\.py)`", readme))
    tree = {path.relative_to(REPO_ROOT).as_posix() for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}
    assert sorted(tree - listed) == [] and sorted(listed - tree) == []


def test_no_committed_result_names_a_path_of_the_machine_it_ran_on():
    machine_path = re.compile(r"(?<![\w.~])/(?:tmp|work|home|root|Users|opt|mnt|var)/")
    named = [path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "results").rglob("*")
             if path.suffix in (".md", ".json") and machine_path.search(path.read_text(encoding="utf-8"))]
    assert named == []
