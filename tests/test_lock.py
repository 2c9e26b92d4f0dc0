"""scripts/check_lock.py: ./dev.sh test stops, saying what to run, when the lock no longer
satisfies pyproject.toml."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
assert _spec and _spec.loader
check_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_lock)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's lock inputs and locks, to change."""
    for name in ("pyproject.toml", "requirements.in", "requirements.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy" / "docker", tmp_path / "docker")
    return tmp_path


def run_check(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = check_lock.main(
        [
            str(project / "requirements.lock"),
            *map(str, sorted((project / "docker").glob("*.lock"))),
            "--pyproject", str(project / "pyproject.toml"),
            "--inputs", str(project / "requirements.in"),
            "--dockerfiles", str(project / "docker"),
        ]
    )  # fmt: skip
    return code, capsys.readouterr().err


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_committed_locks_satisfy_the_project(project: Path, capsys):
    code, err = run_check(project, capsys)
    assert code == 0, err


def test_a_new_dependency_missing_from_the_lock(project: Path, capsys):
    edit(project / "pyproject.toml", '"av>=15",', '"av>=15",\n    "left-pad-bgm>=1",')
    code, err = run_check(project, capsys)
    assert code == 1
    assert "left-pad-bgm>=1 (wanted by the project) is not in the lock" in err
    assert "Run ./dev.sh lock" in err


def test_a_raised_lower_bound_the_locked_version_misses(project: Path, capsys):
    edit(project / "pyproject.toml", '"grpcio>=1.85.1"', '"grpcio>=99"')
    code, err = run_check(project, capsys)
    assert code == 1
    assert "grpcio>=99 (wanted by the project) but the lock has 1.85" in err


def test_a_package_whose_locked_pin_its_dependents_refuse(project: Path, capsys):
    # transformers' own metadata asks for a newer tokenizers than this pin.
    lock = project / "requirements.lock"
    pinned = next(line for line in lock.read_text().splitlines() if line.startswith("tokenizers=="))
    edit(lock, pinned.split()[0], "tokenizers==0.0.1")
    code, err = run_check(project, capsys)
    assert code == 1
    assert "(wanted by transformers" in err and "but the lock has 0.0.1" in err


def test_an_image_lock_out_of_step_with_the_lock(project: Path, capsys):
    image_lock = project / "docker" / "requirements-cpu.lock"
    pinned = next(line for line in image_lock.read_text().splitlines() if line.startswith("ray=="))
    edit(image_lock, pinned.split()[0], "ray==2.59.0")
    code, err = run_check(project, capsys)
    assert code == 1
    assert "requirements-cpu.lock has ray 2.59.0, requirements.lock has 2.60.0" in err


def test_a_dockerfile_installing_another_torch(project: Path, capsys):
    dockerfile = project / "docker" / "Dockerfile.gpu"
    edit(dockerfile, "torch==2.13.0", "torch==2.14.1")
    code, err = run_check(project, capsys)
    assert code == 1
    assert "Dockerfile.gpu installs torch 2.14.1, the lock 2.13.0" in err


def test_a_layer_lock_differs_from_the_main_lock_only_where_it_overrides(project: Path, capsys):
    layer = project / "docker" / "requirements-sonique.lock"
    # numpy is overridden (the project's own version, the same here): any version passes.
    edit(layer, "numpy==2.4.6", "numpy==2.4.5")
    code, err = run_check(project, capsys)
    assert code == 0, err
    edit(layer, "attrs==26.1.0", "attrs==25.1.0")
    code, err = run_check(project, capsys)
    assert code == 1
    assert "requirements-sonique.lock has attrs 25.1.0, requirements.lock has 26.1.0" in err


# Packages the services import that only an extra installs (pyproject's
# optional-dependencies; librosa for beatcheck.py, which the tests and benchmarks use), and
# those installed apart: tinysoundfont by set-up (its wheel requires PyAudio; see
# pyproject), SONIQUE's in its own environment (requirements-sonique.lock).
EXTRA_ONLY = {"diffusers": "diffusion", "torchsde": "diffusion", "ray": "ray",
              "fsspec": "s3", "s3fs": "s3", "gcsfs": "gs", "librosa": "dev"}  # fmt: skip
INSTALLED_APART = {"tinysoundfont", "stable_audio_tools", "k_diffusion", "laion_clap"}


def _imported_modules() -> set[str]:
    import ast
    import sys

    names: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        if "gen" in path.relative_to(ROOT / "services").parts[:1]:
            continue  # generated gRPC code: grpc and protobuf, checked through its users
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "services"}


def _closure(requirements: list[str], extras: tuple[str, ...] = ()) -> set[str]:
    """The installed distributions `requirements` bring, through their metadata."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [(Requirement(r), extras) for r in requirements]
    while todo:
        requirement, asked = todo.pop()
        environment = [{"extra": e} for e in asked] or [{"extra": ""}]
        if requirement.marker and not any(requirement.marker.evaluate(e) for e in environment):
            continue
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        inner = tuple(requirement.extras)
        todo += [(Requirement(r), inner) for r in metadata.requires(requirement.name) or ()]
    return seen


def test_every_package_the_services_import_is_a_dependency():
    """A plain `pip install` of the project brings every package its code imports, but those
    behind an extra: `bgm studio` had needed starlette and uvicorn, which came only with the
    ray extra (ModuleNotFoundError after `pip install bgm`)."""
    import tomllib
    from importlib import metadata

    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _closure(project["dependencies"])
    providers = metadata.packages_distributions()
    for module in sorted(_imported_modules()):
        if module in INSTALLED_APART:
            continue
        dists = {canonicalize_name(d) for d in providers.get(module, ())}
        assert dists, f"{module} is imported but no installed distribution provides it"
        if module in EXTRA_ONLY:
            extra = EXTRA_ONLY[module]
            assert dists & _closure(project["optional-dependencies"][extra]), (module, extra)
        else:
            assert dists & core, f"{module} ({', '.join(dists)}) is not a dependency"
