#!/usr/bin/env bash
# Set up the project's virtual environment (idempotent) and run one job.
#   ./dev.sh demo   make the sample video and score it (the main job, CPU defaults)
#   ./dev.sh test   lint, type-check and run the whole test suite
#   ./dev.sh setup  only set up .venv
#   ./dev.sh protos regenerate services/gen from protos/
# Environment: BGM_VENV (default .venv), PYTHON (default python3, must be 3.11+),
# BGM_TORCH (default "torch==2.13.0", the CPU build; see README for GPU builds).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${BGM_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${BGM_TORCH:-torch==2.13.0}"

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.bgm-installed"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ dev.sh -nt "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # torch first and pinned: left to the resolver, "torch" pulls a multi-GB CUDA build.
        # shellcheck disable=SC2086
        "$VENV/bin/python" -m pip install --quiet $TORCH_SPEC
        "$VENV/bin/python" -m pip install --quiet -e '.[dev,ray,diffusion]'
        # tinysoundfont's one requirement, PyAudio, is for live playback, which bgm never
        # uses, and builds only with PortAudio's headers: skip it.
        "$VENV/bin/python" -m pip install --quiet --no-deps 'tinysoundfont>=0.3.7'
        touch "$stamp"
    fi
    # buf, for the protos, from the npm registry (package.json pins it).
    if [ ! -x node_modules/.bin/buf ] || [ package-lock.json -nt node_modules/.bin/buf ]; then
        npm install --no-save --no-audit --no-fund --loglevel=error
    fi
}

demo() {
    mkdir -p out
    "$VENV/bin/bgm" sample out/sample.mp4
    "$VENV/bin/bgm" analyze out/sample.mp4 --plot out/sample-analysis.png > /dev/null
    "$VENV/bin/bgm" score out/sample.mp4 -o out/sample-scored.mp4 --midi out/sample.mid \
        --stems out/sample-stems
}

run_tests() {
    # kubectl renders the Kubernetes overlays (its built-in kustomize); the machine image has it.
    command -v kubectl >/dev/null || { echo "kubectl is needed to render deploy/k8s" >&2; exit 1; }
    "$VENV/bin/ruff" check services tests benchmarks scripts
    "$VENV/bin/ruff" format --check services tests benchmarks scripts
    "$VENV/bin/mypy"
    "$VENV/bin/python" scripts/generate_protos.py --check
    "$VENV/bin/python" scripts/render_k8s.py --check
    node_modules/.bin/buf lint protos
    # Against the main branch: a change on a branch may add to the contracts, never break them.
    node_modules/.bin/buf breaking protos --against '.git#branch=main,subdir=protos'
    "$VENV/bin/python" -m pytest "$@"
}

job="${1:-}"
shift || true
case "$job" in
    setup) setup ;;
    protos) setup; "$VENV/bin/python" scripts/generate_protos.py ;;
    demo) setup; demo ;;
    test) setup; run_tests "$@" ;;
    *) echo "usage: ./dev.sh demo|test|setup|protos" >&2; exit 2 ;;
esac
