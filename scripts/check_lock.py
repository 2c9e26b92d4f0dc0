"""Check that requirements.lock still satisfies pyproject.toml and requirements.in.

Every requirement of the project (its dependencies, every extra, and requirements.in) and,
through the installed packages' metadata, every requirement of those in turn must be pinned in
the lock at a version that satisfies it, for this interpreter and platform. The images' locks
must pin the same versions as the main lock (a layer over it, where its .overrides file says),
and the Dockerfiles must install the torch version
requirements.in names. Exits 1, saying what to run, when any of that fails.

    python scripts/check_lock.py requirements.lock deploy/docker/requirements-*.lock
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
# Left out of the lock on purpose (requirements.in says why).
NOT_LOCKED = {"torch", "pyaudio"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def locked_versions(lock: Path) -> dict[str, Version]:
    """The lock's pins that apply to this interpreter and platform."""
    pins: dict[str, Version] = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if not match:
            continue
        name, version, marker = match.groups()
        if marker is None or Marker(marker).evaluate():
            pins[canonicalize_name(name)] = Version(version)
    return pins


def project_requirements(pyproject: Path, inputs: Path) -> list[Requirement]:
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines.extend(extra)
    return [Requirement(line) for line in lines] + requirements_in(inputs)


def requirements_in(inputs: Path) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in inputs.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def problems_with(pins: dict[str, Version], roots: list[Requirement]) -> list[str]:
    """Walk the requirement graph from the project's own requirements; report every
    requirement the lock does not pin, or pins at a version that does not satisfy it."""
    found: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [(requirement, "the project") for requirement in roots]
    while queue:
        requirement, wanted_by = queue.pop()
        name = canonicalize_name(requirement.name)
        if name in NOT_LOCKED:
            continue
        version = pins.get(name)
        if version is None:
            found.append(f"{requirement} (wanted by {wanted_by}) is not in the lock")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            found.append(f"{requirement} (wanted by {wanted_by}) but the lock has {version}")
            continue
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            installed = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found.append(f"{name} is in the lock but not installed: run ./dev.sh setup")
            continue
        if Version(installed.version) != version:
            found.append(f"{name} {installed.version} is installed, the lock has {version}")
            continue
        for line in installed.requires or []:
            dependency = Requirement(line)
            if _applies(dependency, requirement.extras):
                queue.append((dependency, f"{name} {version}"))
    return sorted(set(found))


def image_lock_problems(pins: dict[str, Version], image_lock: Path) -> list[str]:
    """An image's lock pins what requirements.lock pins. A layer installed over it (a lock
    with an .overrides file beside it, like SONIQUE's) adds packages of its own, and may
    differ only where its overrides say."""
    overrides = image_lock.with_suffix(".overrides")
    layer = overrides.is_file()
    overridden = set()
    if layer:
        overridden = {canonicalize_name(Requirement(line).name)
                      for line in overrides.read_text().splitlines()
                      if line.strip() and not line.startswith("#")}  # fmt: skip
    return [
        f"{image_lock.name} has {name} {version}, requirements.lock has {pins.get(name)}"
        for name, version in locked_versions(image_lock).items()
        if pins.get(name) != version and not (layer and (name not in pins or name in overridden))
    ]


def dockerfile_problems(inputs: Path, dockerfiles: Iterable[Path]) -> list[str]:
    torch = next(r for r in requirements_in(inputs) if r.name == "torch")
    wanted = Version(str(next(iter(torch.specifier)).version)).public
    found = []
    for dockerfile in dockerfiles:
        for version in re.findall(r"torch==([0-9][^\s\"+]*)", dockerfile.read_text()):
            if version != wanted:
                found.append(f"{dockerfile.name} installs torch {version}, the lock {wanted}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("image_locks", type=Path, nargs="*")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--inputs", type=Path, default=ROOT / "requirements.in")
    parser.add_argument("--dockerfiles", type=Path, default=ROOT / "deploy" / "docker")
    args = parser.parse_args(argv)

    pins = locked_versions(args.lock)
    found = problems_with(pins, project_requirements(args.pyproject, args.inputs))
    for image_lock in args.image_locks:
        found += image_lock_problems(pins, image_lock)
    found += dockerfile_problems(args.inputs, sorted(args.dockerfiles.glob("Dockerfile.*")))
    if found:
        print(f"{args.lock} no longer satisfies the project's requirements:", file=sys.stderr)
        for problem in found:
            print(f"  {problem}", file=sys.stderr)
        print("Run ./dev.sh lock (needs PyPI), then commit the locks.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
