"""The set-up files agree with each other and with the tools that read them.

environment.yml mirrors pyproject.toml (names and version bounds); scripts/provision.sh,
.ci/run and scripts/render-diagrams.sh parse and pass shellcheck, and a second provision run
installs nothing; the Vagrantfile validates; `make clean` never touches the learner's
notebooks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import needs_tool

ROOT = Path(__file__).resolve().parent.parent

# PyPI name -> conda-forge name, where environment.yml uses a different package on purpose.
CONDA_NAMES = {
    "matplotlib": "matplotlib-base",  # the same library without the Qt GUI backends
    "kubernetes": "python-kubernetes",  # conda-forge's name for the official client
}
# In environment.yml but not in pyproject.toml, on purpose.
CONDA_ONLY = {"python", "pip", "bcc"}

REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*?)\s*$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def split_requirement(text: str) -> tuple[str, str]:
    """'nbgrader>=0.9.6, <0.10' -> ('nbgrader', '>=0.9.6,<0.10'); conda's 'python=3.11' too."""
    match = REQUIREMENT.match(text)
    assert match, f"cannot parse requirement {text!r}"
    name, spec = match.groups()
    return normalise(name), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + list(project["optional-dependencies"]["dev"])
    out = {}
    for req in reqs:
        name, spec = split_requirement(req.split(";")[0])  # markers do not exist in conda
        name = normalise(name.split("[")[0])
        out[normalise(CONDA_NAMES.get(name, name))] = spec
    return out


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the `pip:` section installs netsprint itself
            assert set(dep) == {"pip"}, f"unexpected section {dep!r}"
            continue
        name, spec = split_requirement(dep)
        out[name] = spec
    return out


@pytest.mark.unit
def test_environment_yml_has_every_pyproject_dependency():
    missing = sorted(set(pyproject_requirements()) - set(conda_requirements()))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"


@pytest.mark.unit
def test_environment_yml_has_nothing_pyproject_lacks():
    extra = sorted(set(conda_requirements()) - set(pyproject_requirements()) - CONDA_ONLY)
    assert not extra, f"in environment.yml but not pyproject.toml: {extra}"


@pytest.mark.unit
def test_environment_yml_has_the_same_version_bounds():
    conda = conda_requirements()
    differ = {name: (spec, conda[name]) for name, spec in pyproject_requirements().items()
              if name in conda and conda[name] != spec}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


@pytest.mark.unit
def test_environment_yml_pins_python_and_conda_forge():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge"
    assert conda_requirements()["python"] == "=3.11"
    assert "bcc" in conda_requirements()


@pytest.mark.unit
def test_name_normalisation():
    assert split_requirement("PyYAML >= 6") == ("pyyaml", ">=6")
    assert split_requirement("pytest_timeout>=2.3") == ("pytest-timeout", ">=2.3")
    assert split_requirement("nbgrader>=0.9.6, <0.10") == ("nbgrader", ">=0.9.6,<0.10")


@pytest.mark.unit
@pytest.mark.parametrize("script", ["scripts/provision.sh", ".ci/run", "scripts/render-diagrams.sh"])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.unit
@pytest.mark.parametrize("script", ["scripts/provision.sh", ".ci/run", "scripts/render-diagrams.sh"])
def test_shell_scripts_pass_shellcheck(script):
    shellcheck = needs_tool("shellcheck", "shellcheck")
    proc = subprocess.run([shellcheck, "--shell=bash", str(ROOT / script)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.interop
def test_provision_runs_again_without_installing_anything():
    """`make test` has just provisioned this venv, so a second run must skip apt and pip."""
    venv = Path(sys.prefix)
    if not (venv / ".netsprint-pip-stamp").exists():
        pytest.skip(f"{venv} was not made by scripts/provision.sh: run the tests with `make test`")
    proc = subprocess.run(["bash", str(ROOT / "scripts/provision.sh")], cwd=ROOT,
                          env=dict(os.environ, NETSPRINT_VENV=str(venv)), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "python packages: up to date" in proc.stdout, proc.stdout
    if os.geteuid() == 0:
        assert "system packages: all present" in proc.stdout, proc.stdout
        assert "tracefs: mounted" in proc.stdout and "needs root" not in proc.stderr


@pytest.mark.unit
def test_ci_run_requires_everything_and_runs_make_test():
    text = (ROOT / ".ci/run").read_text()
    assert "set -euo pipefail" in text
    assert re.search(r"^export NETSPRINT_REQUIRE_ALL=1$", text, re.M)
    assert re.search(r"^make test$", text, re.M)


@pytest.mark.unit
def test_vagrantfile_shape():
    text = (ROOT / "Vagrantfile").read_text()
    assert 'config.vm.box = "bento/ubuntu-24.04"' in text
    assert re.search(r"cpus = 4\b", text) and re.search(r"memory = 8192\b", text)
    assert 'path: "scripts/provision.sh"' in text
    for port in (8888, 9090, 3000):
        assert f"{port} =>" in text
    assert 'host_ip: "127.0.0.1"' in text


@pytest.mark.interop
def test_vagrantfile_validates(tmp_path):
    vagrant = needs_tool("vagrant", "vagrant")
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), HOME=str(tmp_path),
               VAGRANT_DOTFILE_PATH=str(tmp_path / ".vagrant"), VAGRANT_CHECKPOINT_DISABLE="1")
    proc = subprocess.run([vagrant, "validate", "--ignore-provider"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


@pytest.mark.unit
def test_make_clean_never_touches_notebooks():
    make = needs_tool("make", "make")
    proc = subprocess.run([make, "-n", "clean"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert ".venv" in proc.stdout
    for line in proc.stdout.splitlines():
        if line.startswith("rm "):
            assert "notebooks" not in line and "solutions" not in line, line


@pytest.mark.unit
@pytest.mark.parametrize("target", ["lab", "test", "provision", "release-check", "clean"])
def test_make_targets_exist(target):
    make = needs_tool("make", "make")
    proc = subprocess.run([make, "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.unit
def test_make_lab_listens_on_loopback_with_a_token():
    make = needs_tool("make", "make")
    proc = subprocess.run([make, "-n", "lab"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    # The Vagrant VM's /etc/netsprint.mk makes Jupyter listen on the VM's interfaces, so the
    # forwarded port (bound to the host's 127.0.0.1) reaches it.
    ip = "0.0.0.0" if Path("/etc/netsprint.mk").exists() else "127.0.0.1"
    assert f"--ServerApp.ip={ip}" in proc.stdout
    assert "--ServerApp.port=8888" in proc.stdout and "--allow-root" in proc.stdout
    assert "JUPYTER_TOKEN=" in proc.stdout and "--no-browser" in proc.stdout
