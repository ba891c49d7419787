"""The package as a whole: a light import, lazy public names, and a README map that matches
the modules one to one."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "albumentations", "cv2", "matplotlib")


def modules_loaded_by(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    return set(result.stdout.split()[-1000000:])


def test_import_unetseg_loads_nothing_heavy():
    loaded = modules_loaded_by("import unetseg")
    assert not [name for name in HEAVY if name in loaded]


def test_help_and_pick_load_no_torch():
    for argv in (["--help"], ["pick", "--output", "labels", "--content", "stuff", "--domain",
                              "medical", "--images", "10", "--budget", "none",
                              "--image-size", "512"]):
        code = ("import unetseg.cli\ntry:\n    unetseg.cli.main(%r)\nexcept SystemExit:\n"
                "    pass" % argv)
        loaded = modules_loaded_by(code)
        assert not [name for name in HEAVY if name in loaded], argv


def test_public_names_resolve_lazily():
    import unetseg

    assert sorted(unetseg.__all__) == sorted(unetseg._EXPORTS)
    for name in unetseg.__all__:
        assert getattr(unetseg, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        unetseg.nothing  # noqa: B018


def test_the_architecture_page_names_every_module_once():
    """The Layout section of docs/architecture.md is the architecture map: every module and
    package under src/unetseg, and nothing that is not there."""
    package = ROOT / "src" / "unetseg"
    present = {str(path.relative_to(package)) for path in package.rglob("*.py")
               if "__pycache__" not in path.parts}
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Layout"):]
    section = section[:section.index("\n## ", 4)] if "\n## " in section[4:] else section
    listed = re.findall(r"^\s*(?:src/unetseg/)?([\w/]+\.py)\s", section, flags=re.MULTILINE)
    assert sorted(listed) == sorted(set(listed)), "a module is listed twice"
    assert set(listed) == present


@pytest.mark.slow
def test_the_gpu_check_has_nothing_to_do_without_a_gpu():
    """`benchmarks/gpu_check.sh` is safe to run anywhere: without CUDA it says so and exits 0."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run the whole check")
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
                          capture_output=True, text=True, env={"PYTHON": sys.executable,
                                                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout and "nothing to do" in done.stdout


def test_imports_point_one_way_core_work_edge():
    """No module imports one of a higher layer (docs/architecture.md's core, work and edge):
    the core never imports the work modules or the edge, the work modules never the edge."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    layers, current = {}, None
    for line in text.splitlines():
        heading = re.match(r"^\s+(core|work|edge) -+$", line)
        if heading:
            current = heading.group(1)
            continue
        listed = re.match(r"^\s+([\w/]+)\.py\s", line)
        if listed and current and not listed.group(1).endswith("__init__"):
            layers[listed.group(1).replace("/", ".")] = current
    rank = {"core": 0, "work": 1, "edge": 2}
    package = ROOT / "src" / "unetseg"
    upward = []
    for module, layer in layers.items():
        path = package / (module.replace(".", "/") + ".py")
        parents = module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue
            base = parents[:len(parents) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            for name in [target, *(f"{target}.{alias.name}" for alias in node.names)]:
                if name in layers and rank[layers[name]] > rank[layer]:
                    upward.append(f"{module} ({layer}) imports {name} ({layers[name]})")
    assert len(layers) > 40 and not upward
