"""Packaging: declared dependencies equal imports, extras that say their name, console scripts like ``python -m``.

The dependency check is data-driven: an import's distribution comes from the installed
environment (``importlib.metadata.packages_distributions``: ``yaml`` -> PyYAML), the declared
ones from ``pyproject.toml``. A new import needs only its line in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import compose_config

from sepnet.app import console, extras
from sepnet.errors import SepnetError

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCANNED = ("sepnet", "benchmarks", "tests")
"""Folders whose imports must be declared: the package (dependencies and extras), the rest (any group, dev too)."""

CORE = "dependencies"

USED_WITHOUT_IMPORT = {
    "musdb": "data=musdb reads the musdb package's setup file (found with importlib.util.find_spec, never imported)",
    "ruff": "the linter, run as a program by make lint",
    "pytest-xdist": "a pytest plugin: make test runs the suite with -n 2 (pytest loads it, nothing imports it)",
    "tqdm": "openunmix's own dependency, declared by the peer extra because openunmix is installed --no-deps",
}
INSTALLED_APART = {
    "openunmix": "benchmarks only; make install puts it in with pip install --no-deps: its declared torchaudio "
    "requirement pins another torch and would replace the CPU wheel",
    "demucs": "benchmarks/peer.py --sample-rate 44100 only (HTDemucs); make install puts it in with pip install "
    "--no-deps, with julius, dora-search, treetable and retrying: it declares torchaudio too",
}
"""Distributions benchmarks/ and tests/ may import that no group can declare; the Makefile installs each."""
"""Declared distributions nothing imports, and why each is declared all the same. An extra that
:data:`sepnet.app.extras.NEEDS` names is used by its config choice (Hydra or Lightning import it)."""


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares it: ``PyYAML`` -> ``pyyaml``, ``hydra_core`` -> ``hydra-core``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """``"hydra-core>=1.3.2,<1.4"`` -> ``"hydra-core"``, ``"sepnet[wandb,optuna]"`` -> ``"sepnet"``."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, f"pyproject.toml: cannot read the requirement {requirement!r}"
    return normalise(match.group(1))


def declared_groups(pyproject: dict) -> dict[str, set[str]]:
    """Each declared distribution -> the groups declaring it (``"dependencies"`` or an extra's name).

    ``all``'s ``sepnet[...]`` (the other extras by name) is not a distribution of its own.
    """
    project = pyproject["project"]
    groups = {CORE: project.get("dependencies", []), **project.get("optional-dependencies", {})}
    declared: dict[str, set[str]] = {}
    for group, requirements in groups.items():
        for requirement in requirements:
            name = requirement_name(requirement)
            if name != normalise(project["name"]):
                declared.setdefault(name, set()).add(group)
    return declared


@dataclass(frozen=True)
class Import:
    line: int
    module: str
    at_import_time: bool
    """False inside a function: runs only on the code path that needs it."""


def imports_of(source: str) -> list[Import]:
    """Absolute imports in ``source``; those under ``if TYPE_CHECKING:`` never run and are left out."""
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(child.lineno, alias.name, not in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append(Import(child.lineno, child.module, not in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def local_modules(root: Path) -> set[str]:
    """Import names the repository itself provides: the package, and each scanned folder's modules
    (``conftest``, a test importing another test's helpers)."""
    names = {"sepnet"}
    for folder in SCANNED:
        if (root / folder).is_dir():
            names |= {p.stem for p in (root / folder).glob("*.py")}
            names |= {p.name for p in (root / folder).iterdir() if (p / "__init__.py").is_file()}
    return names


def packaging_problems(
    root: Path, pyproject: dict, distributions: dict[str, list[str]], needs: dict[str, extras.Extra]
) -> list[str]:
    """Every mismatch between what ``root``'s code imports and what ``pyproject`` declares, one line each.

    - an import no declared distribution provides (``sepnet/`` may use the dependencies and the
      extras other than dev; ``benchmarks/`` and ``tests/`` any group);
    - a ``sepnet/`` module importing an extra's package when it is imported (outside a function):
      ``import sepnet`` would then fail without the extra;
    - a declared distribution nothing imports, unless an extra's config choice (``needs``) or
      :data:`USED_WITHOUT_IMPORT` accounts for it.
    """
    declared = declared_groups(pyproject)
    extras_table = pyproject["project"].get("optional-dependencies", {})
    local = local_modules(root)
    problems: list[str] = []
    used: set[str] = set()
    for folder in (f for f in SCANNED if (root / f).is_dir()):
        for path in sorted((root / folder).rglob("*.py")):
            for imp in imports_of(path.read_text()):
                top = imp.module.partition(".")[0]
                if top in sys.stdlib_module_names or top in local or top == "__future__":
                    continue
                where = f"{path.relative_to(root)}:{imp.line} imports {imp.module}"
                candidates = [normalise(d) for d in distributions.get(top, [])]
                if not candidates:
                    problems.append(f"{where}, which no installed distribution provides: install it and declare it")
                    continue
                provider = next((d for d in candidates if d in declared), None)
                if provider is None and folder != "sepnet" and candidates[0] in INSTALLED_APART:
                    continue
                if provider is None:
                    group = "[project] dependencies" if folder == "sepnet" else "an extra (dev for tests)"
                    problems.append(f"{where} from {candidates[0]}, which pyproject.toml does not declare: add it to {group}")
                    continue
                used.add(provider)
                groups = declared[provider]
                if folder != "sepnet" or CORE in groups:
                    continue
                if groups == {"dev"}:
                    problems.append(f"{where} from {provider}, which only the dev extra declares: sepnet cannot rely on it")
                elif imp.at_import_time:
                    problems.append(
                        f"{where} from {provider} when the module is imported, but only the extra(s) "
                        f"{', '.join(sorted(groups))} declare it: import it inside the code path that needs it"
                    )
    for extra in needs.values():
        used |= {requirement_name(r) for r in extras_table.get(extra.name, [])}
    for name, groups in sorted(declared.items()):
        if name not in used and name not in USED_WITHOUT_IMPORT:
            problems.append(
                f"pyproject.toml declares {name} ({', '.join(sorted(groups))}) but nothing in "
                f"{', '.join(f'{f}/' for f in SCANNED)} imports it: remove it, or say in USED_WITHOUT_IMPORT why it stays"
            )
    return problems


# -- declared dependencies equal imports --------------------------------------------------------


def test_declared_dependencies_equal_imports():
    problems = packaging_problems(ROOT, PYPROJECT, importlib.metadata.packages_distributions(), extras.NEEDS)
    assert not problems, "\n".join(problems)


def test_the_check_finds_each_kind_of_mismatch(tmp_path):
    (tmp_path / "sepnet").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "sepnet" / "mod.py").write_text(
        "import yaml\n"  # provided by PyYAML, which is not declared
        "import wandb\n"  # an extra's package, imported with the module
        "import pytest\n"  # dev only
        "import no_such_package_anywhere\n"
        "def needs_it():\n"
        "    import tensorboard\n"  # an extra's package where the choice needs it: fine
    )
    (tmp_path / "tests" / "test_mod.py").write_text("import pytest\nimport helpers\n")
    (tmp_path / "tests" / "helpers.py").write_text("import numpy\n")
    pyproject = {"project": {"name": "sepnet", "dependencies": ["numpy>=1", "rich>=13"], "optional-dependencies": {
        "wandb": ["wandb"], "tensorboard": ["tensorboard"], "dev": ["pytest"], "all": ["sepnet[wandb,tensorboard]"]}}}
    distributions = {"yaml": ["PyYAML"], "wandb": ["wandb"], "pytest": ["pytest"], "numpy": ["numpy"],
                     "tensorboard": ["tensorboard"], "rich": ["rich"]}
    problems = packaging_problems(tmp_path, pyproject, distributions, needs={})
    assert problems == [
        "sepnet/mod.py:1 imports yaml from pyyaml, which pyproject.toml does not declare: add it to [project] dependencies",
        ("sepnet/mod.py:2 imports wandb from wandb when the module is imported, but only the extra(s) wandb declare it: "
         "import it inside the code path that needs it"),
        "sepnet/mod.py:3 imports pytest from pytest, which only the dev extra declares: sepnet cannot rely on it",
        "sepnet/mod.py:4 imports no_such_package_anywhere, which no installed distribution provides: install it and declare it",
        ("pyproject.toml declares rich (dependencies) but nothing in sepnet/, benchmarks/, tests/ imports it: "
         "remove it, or say in USED_WITHOUT_IMPORT why it stays"),
    ]


# -- extras: pip install 'sepnet[...]', one line naming the extra when one is missing ------------


def test_extras_match_the_config_choices_that_need_them():
    optional = PYPROJECT["project"]["optional-dependencies"]
    for choice, extra in extras.NEEDS.items():
        assert extra.name in optional, f"{choice} needs the extra {extra.name}, which pyproject.toml lacks"
        assert normalise(extra.package) in {requirement_name(r) for r in optional[extra.name]}, choice
        group, _, option = choice.partition("=")
        assert (ROOT / "conf" / group / f"{option}.yaml").is_file() or group.startswith("hydra/"), choice
    # `all` installs every extra that sepnet's own config choices use; make install installs it with dev.
    (everything,) = optional["all"]
    assert requirement_name(everything) == "sepnet"
    named = set(re.search(r"\[(.*)\]", everything).group(1).split(","))
    assert {e.name for e in extras.NEEDS.values()} <= named
    assert "-e '.[dev,all]'" in (ROOT / "Makefile").read_text()


def without(monkeypatch, *modules: str) -> None:
    """Make ``modules`` fail to import, as they do where their extra is not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError; find_spec says None


def test_a_logger_without_its_package_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from sepnet.training.run import build_loggers

    cfg = compose_config("train", ["logger=tensorboard"], tmp_path)
    assert [type(lg).__name__ for lg in build_loggers(cfg)] == ["TensorBoardLogger"]  # installed here: it builds
    without(monkeypatch, "tensorboard", "tensorboardX")
    with pytest.raises(SepnetError) as missing:
        build_loggers(cfg)
    assert str(missing.value) == "logger=tensorboard needs the tensorboard package: pip install 'sepnet[tensorboard]'"
    without(monkeypatch, "wandb")
    with pytest.raises(SepnetError, match=r"^logger=wandb needs the wandb package: pip install 'sepnet\[wandb\]'$"):
        build_loggers(compose_config("train", ["logger=[csv,wandb]"], tmp_path))


@pytest.mark.parametrize(
    "override,missing,line",
    [
        ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper",
         "hparams_search=optuna needs the hydra-optuna-sweeper package: pip install 'sepnet[optuna]'"),
        ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher",
         "hydra/launcher=slurm needs the hydra-submitit-launcher package: pip install 'sepnet[slurm]'"),
        ("logger=[csv,tensorboard]", "tensorboard",
         "logger=tensorboard needs the tensorboard package: pip install 'sepnet[tensorboard]'"),
    ],
)
def test_a_command_line_choice_without_its_extra_is_one_line(monkeypatch, capsys, override, missing, line):
    from sepnet.app.configs import prepare_command_line

    monkeypatch.setattr(sys, "argv", ["sepnet-train", "-m", override])
    prepare_command_line("train")  # installed here: accepted
    without(monkeypatch, missing, "tensorboardX")
    monkeypatch.setattr(sys, "argv", ["sepnet-train", "-m", override])
    with pytest.raises(SystemExit) as exit_info:
        prepare_command_line("train")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"sepnet: error: {line}"]


# -- console scripts: sepnet-train ... start as python -m sepnet.train does -------------------------


def entry_point_modules() -> list[str]:
    """The ``python -m sepnet.<name>`` entry points: the package's top-level modules with a ``__main__`` block."""
    return sorted(
        p.stem for p in (ROOT / "sepnet").glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text() and p.stem != "__main__"  # python -m sepnet: the `sepnet` script
    )


def test_every_entry_point_has_a_console_script(monkeypatch):
    scripts = PYPROJECT["project"]["scripts"]
    for entry in entry_point_modules():
        script = f"sepnet-{entry.replace('_', '-')}"
        assert script in scripts, f"python -m sepnet.{entry} has no console script {script} in pyproject.toml"
    launched: list[str] = []
    monkeypatch.setattr(console, "launch", launched.append)  # record what each launcher would run
    absent = []
    for script, target in scripts.items():
        module_name, _, function = target.partition(":")
        if importlib.util.find_spec(module_name) is None:
            absent.append(script)
            continue
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function, None)), f"{script} -> {target}: no such function"
        if module is console:  # a Hydra entry point: the launcher names the module whose main Hydra built
            getattr(console, function)()
            entry = launched.pop()
            assert script == f"sepnet-{entry.replace('_', '-')}", f"{script} launches sepnet.{entry}"
            assert importlib.import_module(f"sepnet.{entry}").main.config_name == entry
    assert not absent, f"console scripts whose module does not exist: {absent}"


# Runs a console script's function as the installed script does and reports OMP_WAIT_POLICY as torch loads.
POLICY_AS_TORCH_LOADS = """
import os, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "unset"))
sys.meta_path.insert(0, Watch())
from sepnet.app import wait_policy
wait_policy.cpu_busy_fraction = lambda window=0.05: 1.0  # as on a machine whose CPUs are all busy
sys.argv = ["sepnet-merge", "--help"]
try:
    {call}
except SystemExit:
    pass
print(seen[0] if seen else "torch never imported")
"""


def policy_as_torch_loads(call: str, env: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in (env or os.environ).items() if k != "OMP_WAIT_POLICY"}
    result = subprocess.run(
        [sys.executable, "-c", POLICY_AS_TORCH_LOADS.replace("{call}", call)],
        env=env, capture_output=True, text=True, timeout=180, check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_a_console_script_chooses_the_wait_policy_before_torch_loads():
    assert policy_as_torch_loads("from sepnet.app.console import merge; merge()") == "PASSIVE"
    # What the guard is for: the entry point's own import, without the launcher, loads torch unguarded.
    assert policy_as_torch_loads("from sepnet.merge import main; main()") == "unset"


@pytest.mark.slow
def test_the_built_wheel_installs_scripts_that_run_from_anywhere(tmp_path):
    """Build the wheel, install it (no dependencies: the environment has them) and run its scripts elsewhere."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("sepnet-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    scripts = {p.name for p in (target / "bin").iterdir()}
    assert set(PYPROJECT["project"]["scripts"]) <= scripts
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}  # this wheel's sepnet, not the checkout's
    job = subprocess.run(  # the script itself, by its path: its #! line and its import
        [str(target / "bin" / "sepnet-train"), "--cfg", "job", "model.hidden_size=24"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert job.returncode == 0, job.stderr[-2000:]
    assert "_target_: sepnet.data.datamodule.SeparationDataModule" in job.stdout  # conf/ came with the wheel
    assert "hidden_size: 24" in job.stdout
    runs = f"import runpy; runpy.run_path({str(target / 'bin' / 'sepnet-merge')!r}, run_name='__main__')"
    assert policy_as_torch_loads(runs, env) == "PASSIVE"
    where = subprocess.run(
        [sys.executable, "-c", "import sepnet; print(sepnet.__file__)"], cwd=elsewhere, env=env,
        capture_output=True, text=True, check=True,
    )
    assert where.stdout.strip() == str(target / "sepnet" / "__init__.py")


def test_what_is_installed_apart_is_installed_by_make_install():
    makefile = (ROOT / "Makefile").read_text()
    for name in INSTALLED_APART:
        assert re.search(rf"pip install .*--no-deps {name}==", makefile), f"make install does not install {name}"
