"""Package shape: stages only look down, and no module reaches into another's private names."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "tunesmith"
FORBIDDEN_IN_EVALUATE = ("tunesmith.run", "tunesmith.predict", "tunesmith.train")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (at top level or inside functions), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return out


def test_evaluate_imports_neither_run_predict_nor_train():
    files = sorted((PACKAGE / "evaluate").glob("*.py"))
    assert len(files) > 5
    bad = [f"{f.name}:{line} imports {name}" for f in files for line, name in imported_modules(f)
           if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_IN_EVALUATE)]
    assert bad == []


def test_no_module_imports_another_modules_private_names():
    bad = []
    for f in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunesmith"):
                bad += [f"{f.relative_to(PACKAGE)}:{node.lineno} {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []
