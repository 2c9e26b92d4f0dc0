"""Generate the Python gRPC code from protos/ into services/gen/ (or another folder).

    python scripts/generate_protos.py            # regenerate services/gen
    python scripts/generate_protos.py --check    # fail if services/gen differs from protos/

protoc writes absolute imports (`from bgm.v1 import common_pb2`) and module names
(`bgm.v1.common_pb2`); both are rewritten to the package's place (`services.gen.bgm.v1`), so
no sys.path tricks are needed and the messages pickle.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "services" / "gen"
_IMPORT = re.compile(r"^from bgm\.v1 import ", re.MULTILINE)
# The module name protoc gives the message classes: pickling (Ray sends requests between
# processes that way) must find them where they really live.
_MODULE_NAME = re.compile(r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, )'bgm\.v1\.")


def generate(target: Path) -> None:
    import grpc_tools

    includes = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "bgm").rglob("*.proto"))
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{includes}",
            f"--python_out={target}",
            f"--pyi_out={target}",
            f"--grpc_python_out={target}",
            *files,
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    # The code and its stubs, not the bytecode a run left beside them.
    for path in [*target.rglob("*.py"), *target.rglob("*.pyi")]:
        text = _IMPORT.sub("from services.gen.bgm.v1 import ", path.read_text())
        path.write_text(_MODULE_NAME.sub(r"\1'services.gen.bgm.v1.", text))
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()


def differences(left: Path, right: Path) -> list[str]:
    found = []
    comparison = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found += [f"only in {left}: {name}" for name in comparison.left_only]
    found += [f"only in {right}: {name}" for name in comparison.right_only]
    found += [f"differs: {name}" for name in comparison.diff_files]
    for name in comparison.common_dirs:
        found += differences(left / name, right / name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when services/gen drifts")
    args = parser.parse_args()
    if not args.check:
        generate(TARGET)
        print(f"generated {TARGET.relative_to(ROOT)}")
        return
    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder))
        drift = differences(Path(folder), TARGET)
    if drift:
        print(
            "services/gen is out of date with protos/; run scripts/generate_protos.py",
            *drift,
            sep="\n  ",
            file=sys.stderr,
        )
        raise SystemExit(1)
    print("services/gen matches protos/")


if __name__ == "__main__":
    main()
