"""The documentation site (mkdocs.yml) builds in strict mode, offline, and its API pages hold
every public name of `jaxode` and `jaxode.probes`."""

import ast
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _public_names(path: pathlib.Path, prefix: str) -> list[str]:
    """The names a module binds at its top level (imports, definitions, assignments) that do
    not start with an underscore."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [prefix + name for name in dict.fromkeys(names) if not name.startswith("_")]


def test_public_names_are_found():
    names = _public_names(ROOT / "jaxode" / "__init__.py", "jaxode.")
    assert "jaxode.LegendreBasis" in names and "jaxode.fit" in names
    assert not any(name.startswith("jaxode._") for name in names)
    assert "jaxode.probes.ray_limit" in _public_names(
        ROOT / "jaxode" / "probes.py", "jaxode.probes."
    )


def test_the_site_builds_strictly_and_documents_every_public_name(tmp_path):
    site = tmp_path / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file"]
    command += [str(ROOT / "mkdocs.yml"), "--site-dir", str(site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"`mkdocs build --strict` failed (exit {result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    )

    api = "\n".join(page.read_text() for page in sorted((site / "api").glob("*.html")))
    names = _public_names(ROOT / "jaxode" / "__init__.py", "jaxode.")
    names += _public_names(ROOT / "jaxode" / "probes.py", "jaxode.probes.")
    missing = [name for name in names if f'id="{name}"' not in api]
    assert not missing, f"add a `::: NAME` entry to a page of docs/api/ for each of {missing}"

    # Math is MathML made at build time, and no page loads anything from the network.
    core = (site / "core.html").read_text()
    assert "<math" in core
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r'class="arithmatex">\\[(\[]', text), f"unconverted math in {page}"
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', text), (
            f"{page} loads a script or stylesheet from the network"
        )
