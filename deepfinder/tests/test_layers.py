"""The package's layers: every module imports on its own (no import circle), the engine
(``core``) and the pictures (``figures``) know nothing of Scipion, and only the viewers load
the viewers.

Each module is imported in a fresh interpreter with this suite's headless Scipion
configuration (conftest.py puts it in the environment the subprocesses inherit). The test
modules are left out: nothing in the product imports them, so they cannot close a circle.
The Scipion-free rule is read from the source, since ``import deepfinder`` itself loads
the Plugin class and with it pwem.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import deepfinder

PACKAGE_DIR = Path(deepfinder.__file__).parent
SCIPION_PACKAGES = {"pyworkflow", "pwem", "tomo"}
#: What the Scipion-free layers may import from the package itself.
ALLOWED_INSIDE = {"core": ("deepfinder.core",), "figures": ("deepfinder.core", "deepfinder.figures")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _product_modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if not (path.parent.name == "tests" and path.name.startswith("test_"))
    }


MODULES = _product_modules()


def _import_alone(name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True, timeout=600, env=os.environ
    )


@pytest.fixture(scope="module")
def imported_alone(request) -> dict[str, subprocess.CompletedProcess]:
    """Each module of this session's tests imported in its own interpreter, a few at a time."""
    names = [
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_module_imports_alone"
    ]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        return dict(zip(names, pool.map(_import_alone, names)))


# About 3 s of Scipion start-up per module: a minute or more in all.
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_alone(name, imported_alone):
    result = imported_alone[name]
    assert result.returncode == 0, f"python -c 'import {name}' failed:\n{result.stderr[-3000:]}"


def _imports(path: Path, module: str, when_loaded_only: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of each import in the file at ``path``, of module ``module``.

    ``when_loaded_only``: leave out the imports inside functions, which run only when called.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    nodes = list(ast.parse(path.read_text(), str(path)).body)
    while nodes:
        node = nodes.pop()
        if when_loaded_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            found.append((node.lineno, base))
        nodes.extend(ast.iter_child_nodes(node))
    return sorted(found)


def _within(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


@pytest.mark.parametrize("layer", sorted(ALLOWED_INSIDE))
def test_engine_and_figures_import_nothing_of_scipion(layer):
    offending = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {name}"
        for path in sorted((PACKAGE_DIR / layer).rglob("*.py"))
        for line, name in _imports(path, _module_name(path))
        if name.split(".")[0] in SCIPION_PACKAGES
        or (_within(name, ["deepfinder"]) and not _within(name, ALLOWED_INSIDE[layer]))
    ]
    assert not offending, "\n".join(offending)


def test_only_viewers_load_viewers():
    """The viewers sit on top (they name the protocols they show): below them, nothing loads
    ``deepfinder.viewers``; an interactive step may still open a Tk window when it runs."""
    offending = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {name}"
        for module, path in MODULES.items()
        if not _within(module, ["deepfinder.viewers", "deepfinder.tests"])
        for line, name in _imports(path, module, when_loaded_only=True)
        if _within(name, ["deepfinder.viewers"])
    ]
    assert not offending, "\n".join(offending)


def test_the_source_checks_see_every_kind_of_import(tmp_path):
    """Relative imports are resolved, and imports inside functions told apart."""
    path = tmp_path / "x.py"
    path.write_text(
        "import numpy\nfrom .. import Plugin\nfrom . import io\nfrom ..viewers.viewers import a\n"
        "class A:\n    from tomo.objects import TomoMask\n"
        "def f():\n    import pwem.objects\n"
    )
    names = [name for _, name in _imports(path, "deepfinder.core.x")]
    assert names == [
        "numpy",
        "deepfinder",
        "deepfinder.core",
        "deepfinder.viewers.viewers",
        "tomo.objects",
        "pwem.objects",
    ]
    assert [name for _, name in _imports(path, "deepfinder.core.x", when_loaded_only=True)] == names[:-1]


#: The engine's modules that speak a Keras backend itself: the device queries, and training on
#: several GPUs (TensorFlow's MirroredStrategy). Everything else goes through keras and keras.ops,
#: so that any backend runs it.
BACKEND_MODULES = {"deepfinder.core.devices", "deepfinder.core.multi_device"}


def test_engine_speaks_keras_not_a_backend():
    offending = [
        f"{path.relative_to(PACKAGE_DIR.parent)}:{line} imports {name}"
        for module, path in MODULES.items()
        if _within(module, ["deepfinder.core"]) and module not in BACKEND_MODULES
        for line, name in _imports(path, module)
        if name.split(".")[0] in {"tensorflow", "jax", "torch"}
    ]
    assert not offending, "\n".join(offending)
