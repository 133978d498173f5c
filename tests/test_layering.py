"""The layers of the package: only the app knows Gradio; the runtime never reaches into the data generator."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OMFA = ROOT / "omfa"
STUDIO_MODULES = (
    "omfa.studio.card",
    "omfa.studio.context",
    "omfa.studio.runs",
    "omfa.studio.settings",
    "omfa.studio.cli",
)
# What serves a request (the app, the studio, the pipeline, the preprocessing) needs nothing of omfa.data.
RUNTIME = [OMFA / "studio", OMFA / "app", OMFA / "imaging", OMFA / "pipeline.py", OMFA / "latents.py", ROOT / "app.py"]


def imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports, at any depth (functions included)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def python_files(*places: Path) -> list[Path]:
    return sorted(f for place in places for f in ([place] if place.is_file() else place.rglob("*.py")))


def test_importing_the_studio_loads_no_gradio():
    script = (
        f"import sys\nimport {', '.join(STUDIO_MODULES)}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'gradio_client')))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]", done.stdout


def test_only_the_app_layer_imports_gradio():
    offenders = [
        str(f.relative_to(ROOT))
        for f in python_files(OMFA)
        if not f.is_relative_to(OMFA / "app")
        and any(m.split(".")[0] in ("gradio", "gradio_client") for m in imported_modules(f))
    ]
    assert offenders == [], f"only omfa/app/ and app.py may import gradio: {offenders}"


def test_the_runtime_does_not_import_the_data_generator():
    offenders = [
        str(f.relative_to(ROOT))
        for f in python_files(*RUNTIME)
        if any(m == "omfa.data" or m.startswith("omfa.data.") for m in imported_modules(f))
    ]
    assert offenders == [], f"the studio, app, pipeline and imaging must not import omfa.data: {offenders}"
