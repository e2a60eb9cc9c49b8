"""The project's metadata stays consistent: dependency lists, lower bounds only, the README commands."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _normalise(req: str) -> str:
    return re.sub(r"\s+", "", req).replace('"', "'").lower()


def pyproject_requirements() -> list[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return meta["dependencies"] + meta["optional-dependencies"]["dev"] + meta["optional-dependencies"]["deploy"]


def environment_requirements() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = [d for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return pip[0]["pip"]


def test_environment_yml_lists_the_same_packages_as_pyproject():
    assert sorted(map(_normalise, environment_requirements())) == sorted(map(_normalise, pyproject_requirements()))


def test_lower_bounds_only():
    for req in pyproject_requirements():
        spec = req.split(";")[0]
        assert "==" not in spec and "<" not in spec and "~=" not in spec, f"{req}: use lower bounds only"
        assert ">=" in spec, f"{req}: give a lower bound"


def test_torch_is_the_regular_build():
    reqs = {re.split(r"[<>=; ]", r)[0]: r for r in pyproject_requirements()}
    assert reqs["torch"] == "torch>=2.14" and reqs["torchvision"] == "torchvision>=0.29"


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"<!-- (main|test)-command -->\n```bash\n(.+?)\n```", readme)
    assert [kind for kind, _ in commands] == ["main", "test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci  # .ci/run executes the README's test command, not a copy of it


def test_the_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.+?)```", readme, flags=re.S)
    assert blocks, "README.md lost its Python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
