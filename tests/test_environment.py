"""environment.yml, binder/environment.yml and pyproject.toml must list the same dependencies."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: conda-forge names that differ from the PyPI ones.
CONDA_TO_PIP = {"python-kubernetes": "kubernetes", "matplotlib-base": "matplotlib"}
#: environment entries that are tooling, not dependencies.
TOOLING = {"python", "pip"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split(spec: str) -> tuple[str, str]:
    """``"aiohttp>=3.9"`` -> ``("aiohttp", ">=3.9")``."""
    parsed = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", spec)
    assert parsed is not None, spec
    name, version = parsed.groups()
    return normalise(name), version.replace(" ", "")


def pyproject() -> tuple[dict[str, str], dict[str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = dict(split(s) for s in project["dependencies"])
    extras = dict(split(s) for specs in project["optional-dependencies"].values() for s in specs)
    return runtime, extras


def environment(path: Path) -> dict[str, str]:
    """Package -> version spec, conda names mapped to pip names; ``-e .`` and tooling left out."""
    found: dict[str, str] = {}
    for entry in yaml.safe_load(path.read_text())["dependencies"]:
        specs = entry["pip"] if isinstance(entry, dict) else [entry]
        for spec in specs:
            if spec.startswith("-e "):
                continue
            name, version = split(spec.replace("=", "==", 1) if re.match(r"^[\w.-]+=[^=]", spec) else spec)
            if name not in TOOLING:
                found[normalise(CONDA_TO_PIP.get(name, name))] = version
    return found


def test_environment_lists_every_runtime_dependency_and_extra():
    runtime, extras = pyproject()
    env = environment(ROOT / "environment.yml")
    assert sorted(set(runtime) - set(env)) == [], "in pyproject.toml, missing from environment.yml"
    assert sorted(set(extras) - set(env)) == [], "pyproject.toml extras missing from environment.yml"
    assert sorted(set(env) - set(runtime) - set(extras)) == [], "in environment.yml, not declared in pyproject.toml"


def test_pinned_versions_agree():
    runtime, extras = pyproject()
    wanted = {**extras, **runtime}
    env = environment(ROOT / "environment.yml")
    disagree = {name: (env[name], wanted[name]) for name in env if env[name] and env[name] != wanted[name]}
    assert disagree == {}, "environment.yml version -> pyproject.toml version"


def test_binder_environment_is_the_same_list():
    assert environment(ROOT / "binder/environment.yml") == environment(ROOT / "environment.yml")
    assert "-e ." in (ROOT / "environment.yml").read_text()


def test_binder_sets_labkit_up_with_lab_in_its_conda_environment():
    """postBuild runs ./lab setup (pip install -e .[extras], the kernel, the stamp) with the conda env as LABKIT_VENV,
    and start exports the same LABKIT_VENV, so ./lab in a Binder terminal uses that environment."""
    sys_prefix = "LABKIT_VENV=\"$(python -c 'import sys; print(sys.prefix)')\""
    post_build = (ROOT / "binder/postBuild").read_text()
    assert sys_prefix in post_build and "export LABKIT_VENV" in post_build
    assert [line for line in post_build.splitlines() if line.startswith("./lab")] == ["./lab setup"]
    start = (ROOT / "binder/start").read_text()
    assert sys_prefix in start and "export LABKIT_VENV" in start and start.rstrip().endswith('exec "$@"')


def test_binder_apt_txt_is_labs_apt_list_without_kubectl():
    listed = re.search(r"^APT_PACKAGES=\(([^)]*)\)", (ROOT / "lab").read_text(), re.M)
    assert listed is not None
    apt = [line.strip() for line in (ROOT / "binder/apt.txt").read_text().splitlines()]
    assert [p for p in apt if p and not p.startswith("#")] == [p for p in listed.group(1).split() if p != "kubectl"]


def test_every_third_party_import_is_declared():
    """What labkit imports must be a runtime dependency, not something that happens to be installed."""
    runtime, extras = pyproject()
    distributions = importlib.metadata.packages_distributions()
    imported: set[str] = set()
    for path in (ROOT / "labkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("labkit", "__future__")}
    # an optional engine, imported only where it is used and declared in its extra (labkit[llm])
    assert normalise("llama-cpp-python") in extras
    third_party -= {"llama_cpp"}
    undeclared = {
        m: distributions.get(m, ["?"])
        for m in third_party
        if not any(normalise(d) in runtime for d in distributions.get(m, []))
    }
    assert undeclared == {}, "imported by labkit but not in pyproject.toml [project] dependencies"
