#!/usr/bin/env bash
# Set up the project's virtual environment from the lock (idempotent) and run one job.
#   ./dev.sh demo   make the sample video and score it (the main job, CPU defaults)
#   ./dev.sh test   check the lock, lint, type-check and run the whole test suite (with
#                   arguments: the checks, then `pytest ARGS` instead of the suite)
#   ./dev.sh setup  only set up .venv, and what the tests need besides (buf, from
#                   package-lock.json; espeak-ng and Chromium)
#   ./dev.sh sonique set up .venv-sonique, SONIQUE's environment (docs/generators.md, "SONIQUE")
#   ./dev.sh genre-tagger set up .venv-genre, the tagger bench_genre.py listens with
#   ./dev.sh lock   regenerate requirements.lock and the images' locks from pyproject.toml
#                   and requirements.in (needs PyPI)
#   ./dev.sh protos regenerate services/gen from protos/
# Environment: BGM_VENV (default .venv), BGM_SONIQUE_VENV (default .venv-sonique),
# BGM_GENRE_VENV (default .venv-genre), PYTHON
# (default python3, must be 3.11+), BGM_TORCH (default: the CPU build of the version
# requirements.in names, from BGM_TORCH_WHEELS or pip's find-links, else from PyTorch's CPU
# index; see README for GPU builds),
# BGM_TORCH_WHEELS (a folder holding the CPU build's wheel, where set-up looks first and
# ./dev.sh lock resolves against; default /opt/wheels).
set -euo pipefail
cd "$(dirname "$0")"
# Python keeps what it compiles (a module's bytecode, written on its first import): where the
# environment says not to (machine images often set PYTHONDONTWRITEBYTECODE), every process
# the tests start (servers, CLI runs, Ray's workers) compiled every module it imported again,
# as uv installs without bytecode (`bgm --help`: 2.4 s against 1.2 s).
unset PYTHONDONTWRITEBYTECODE
VENV="${BGM_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="$(sed -n 's/^torch==\([^+]*\).*/\1/p' requirements.in)"
TORCH_WHEELS="${BGM_TORCH_WHEELS:-/opt/wheels}"
IMAGE_LOCKS=(deploy/docker/requirements-cpu.lock deploy/docker/requirements-gpu.lock)
SONIQUE_VENV="${BGM_SONIQUE_VENV:-.venv-sonique}"
SONIQUE_LOCK=deploy/docker/requirements-sonique.lock
GENRE_VENV="${BGM_GENRE_VENV:-.venv-genre}"
GENRE_LOCK=benchmarks/requirements-genre.lock
# From Debian: FluidSynth and the full General MIDI bank the composer renders with (docs/composer.md,
# "How the composer sounds"; without them it falls back to TimGM6mb, and says so), and
# libGL, which OpenCV's wheel loads (scenedetect requires opencv-python, not its headless
# build): without it nothing that reads a video starts.
RUN_PACKAGES=(libfluidsynth3 musescore-general-soundfont-lossless libgl1)
# For the tests only: espeak-ng, which speaks the sentences of the speech tests' videos, and
# Chromium, in which the studio's browser test runs (those tests are skipped without them).
TEST_PACKAGES=(espeak-ng chromium)

# The Debian packages named after WHAT (what is lost without them), installed where missing.
# Where they cannot be (no apt, no sudo, a package this release lacks) set-up goes on without
# them, saying what that costs; with CI set it stops, as a skipped test is a test not run.
debian_packages() {
    local what="$1" missing=() package
    shift
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    if command -v apt-get >/dev/null && { [ ${#sudo[@]} -eq 0 ] || command -v sudo >/dev/null; }; then
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null \
            || { "${sudo[@]}" apt-get update -q >/dev/null \
                && "${sudo[@]}" apt-get install -y -q "${missing[@]}" >/dev/null; } \
            && return
    fi
    echo "note: could not install ${missing[*]} (Debian/Ubuntu packages): without them $what" >&2
    if [ -n "${CI:-}" ]; then
        echo "error: CI is set, and a skipped test is a test not run" >&2
        exit 1
    fi
}

# Python 3.11 or newer to make an environment with (a 3.10 had failed in uv's resolver,
# saying nothing of the version).
check_python() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && return
    echo "error: bgm needs Python 3.11 or newer; PYTHON=$PYTHON is" \
        "$("$PYTHON" --version 2>/dev/null || echo "not one that runs")" \
        "(set PYTHON, e.g. PYTHON=python3.11)" >&2
    exit 1
}

# A virtual environment with pip in it, made again if one was left half-made (a set-up
# stopped while venv ran leaves a python without pip, which no later run would mend) or made
# with a Python older than 3.11 (set-up then stopped in uv's resolver on every run).
make_venv() {
    if ! "$1/bin/python" -c 'import sys, pip; sys.exit(sys.version_info < (3, 11))' \
            >/dev/null 2>&1; then
        check_python
        "$PYTHON" -m venv --clear "$1"
    fi
}

# Lock files installed into a virtual environment exactly as locked: every package is listed
# with its hashes, so no resolver runs and nothing unlisted comes in (--no-deps). uv installs
# them (a locked dev tool; pip installs it first, from the lock's own entry for it): it fetches
# and unpacks in parallel and leaves bytecode to the first import, 10 s for requirements.lock
# here against pip's 190 s.
install_locked() {
    local venv="$1" lock
    shift
    if [ ! -x "$venv/bin/uv" ]; then
        "$venv/bin/python" -m pip install --quiet --no-deps --require-hashes \
            -r <(locked_entry uv requirements.lock)
    fi
    for lock in "$@"; do
        "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" --no-deps \
            --require-hashes -r "$lock"
    done
}

# One package's entry in a lock: its pin and hashes.
locked_entry() {
    awk -v pin="$1==" 'index($0, pin) == 1 { entry = 1; print; next }
        entry && /^ +--hash/ { print; next } { entry = 0 }' "$2"
}

# Whether the environment VENV was never installed, was installed with other settings than
# SETTINGS (the torch asked for: a changed BGM_TORCH had been ignored), or is older than
# dev.sh or any of the files that follow (the locks; pyproject.toml, whose entry points the
# install writes; mark_installed stamps it).
needs_install() {
    local stamp="$1/.bgm-installed" file
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$2" ] || return 0
    for file in dev.sh "${@:3}"; do
        [ "$file" -nt "$stamp" ] && return 0
    done
    return 1
}

mark_installed() {
    printf '%s' "${2:-}" > "$1/.bgm-installed"
}

# torch, which the lock leaves out (requirements.in says why): its requirements are already
# there as locked, so pip adds only what a CUDA build needs beyond them. By default the CPU
# build (PyPI's torch for Linux is the CUDA build, several GB of unlocked libraries): a wheel
# of it that pip finds without an index (a find-links folder, as this machine's /opt/wheels),
# else from PyTorch's CPU index.
install_torch() {
    local pip=("$VENV/bin/python" -m pip install --quiet)
    if [ -n "${BGM_TORCH:-}" ]; then
        # shellcheck disable=SC2086
        "${pip[@]}" $BGM_TORCH
        return
    fi
    # (+cpu: a CUDA build of the same version already there would count as the one asked.)
    if ! "${pip[@]}" --no-index --find-links "$TORCH_WHEELS" "torch==$TORCH_VERSION+cpu" \
            2>/dev/null; then
        echo "no wheel of torch $TORCH_VERSION+cpu in $TORCH_WHEELS or pip's find-links:" \
            "taking it from PyTorch's CPU index" >&2
        "${pip[@]}" "torch==$TORCH_VERSION+cpu" --index-url https://download.pytorch.org/whl/cpu
    fi
}

setup() {
    debian_packages "the composer renders with TimGM6mb, and without libgl1 OpenCV cannot load" \
        "${RUN_PACKAGES[@]}"
    make_venv "$VENV"
    local torch="torch: ${BGM_TORCH:-the CPU build of $TORCH_VERSION}"
    if needs_install "$VENV" "$torch" requirements.lock pyproject.toml; then
        # Everything but torch, then torch.
        install_locked "$VENV" requirements.lock
        install_torch
        # The project itself, built with the locked setuptools.
        "$VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
        mark_installed "$VENV" "$torch"
    fi
}

# What the tests need beyond .venv (the demo needs none of it, npm included).
setup_test_tools() {
    debian_packages "the speech and browser tests are skipped" "${TEST_PACKAGES[@]}"
    # buf, for the protos, exactly as package-lock.json holds it.
    if [ ! -x node_modules/.bin/buf ] || [ package-lock.json -nt node_modules/.bin/buf ]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
}

# SONIQUE's environment: the project's lock, then stable-audio-tools' layer and the torch it
# needs over it (requirements-sonique.in says why), both exactly as locked.
sonique() {
    make_venv "$SONIQUE_VENV"
    if needs_install "$SONIQUE_VENV" "" requirements.lock "$SONIQUE_LOCK" pyproject.toml; then
        install_locked "$SONIQUE_VENV" requirements.lock "$SONIQUE_LOCK"
        "$SONIQUE_VENV/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e .
        mark_installed "$SONIQUE_VENV"
    fi
}

# The genre benchmark's tagger (musicnn on TensorFlow), alone in its environment.
genre_tagger() {
    make_venv "$GENRE_VENV"
    if needs_install "$GENRE_VENV" "" "$GENRE_LOCK"; then
        install_locked "$GENRE_VENV" "$GENRE_LOCK"
        mark_installed "$GENRE_VENV"
    fi
}

lock() {
    local wheel
    wheel="$(find "$TORCH_WHEELS" -maxdepth 1 -name "torch-$TORCH_VERSION+cpu-*.whl" 2>/dev/null | head -1)"
    if [ -z "$wheel" ]; then
        echo "./dev.sh lock resolves against torch $TORCH_VERSION's CPU build: put its wheel" \
            "(from https://download.pytorch.org/whl/cpu) in a folder and set BGM_TORCH_WHEELS" >&2
        exit 1
    fi
    # uv (a dev tool in the lock) resolves every platform at once, writes hashes, and keeps
    # the pins already in the lock where they still fit.
    local compile=("$VENV/bin/uv" pip compile --quiet --universal --python-version 3.11
        --generate-hashes --find-links "$TORCH_WHEELS" --no-emit-package torch
        --no-emit-package pyaudio --custom-compile-command "./dev.sh lock")
    "${compile[@]}" pyproject.toml requirements.in --all-extras -o requirements.lock
    # The images' installs: subsets of the same resolution (constrained to requirements.lock).
    "${compile[@]}" pyproject.toml requirements.in --extra ray --extra s3 --extra gs \
        -c requirements.lock -o deploy/docker/requirements-cpu.lock
    "${compile[@]}" pyproject.toml requirements.in --extra ray --extra diffusion --extra s3 \
        --extra gs -c requirements.lock -o deploy/docker/requirements-gpu.lock
    # SONIQUE's layer: constrained to requirements.lock but for the pins it overrides (the
    # constraints file's path shows in the lock's comments: a fixed one).
    local overrides=deploy/docker/requirements-sonique.overrides
    local constraints="$VENV/requirements-lock-pins.txt"
    grep -oE '^[A-Za-z0-9_.-]+==[^ ;\\]+' requirements.lock \
        | grep -vE "^($(grep -oE '^[A-Za-z0-9_.-]+' "$overrides" | paste -sd'|'))==" > "$constraints"
    "$VENV/bin/uv" pip compile --quiet --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --generate-hashes \
        --custom-compile-command "./dev.sh lock" -c "$constraints" --overrides "$overrides" \
        --excludes deploy/docker/requirements-sonique.excludes \
        deploy/docker/requirements-sonique.in -o "$SONIQUE_LOCK"
    rm -f "$constraints"
    # The genre benchmark's tagger: an environment of its own, so not constrained to the lock.
    "$VENV/bin/uv" pip compile --quiet --python-version 3.11 \
        --python-platform x86_64-manylinux_2_28 --generate-hashes \
        --custom-compile-command "./dev.sh lock" \
        --overrides benchmarks/requirements-genre.overrides benchmarks/requirements-genre.in \
        -o "$GENRE_LOCK"
}

demo() {
    mkdir -p out
    "$VENV/bin/bgm" sample out/sample.mp4 --force
    # --force: the demo writes its own outputs again on every run (analyze's plot had
    # stopped every run after the first).
    "$VENV/bin/bgm" analyze out/sample.mp4 --plot out/sample-analysis.png --force > /dev/null
    "$VENV/bin/bgm" score out/sample.mp4 -o out/sample-scored.mp4 --midi out/sample.mid \
        --stems out/sample-stems --force
}

# A background job's verdict: its output (with `quiet`, only if it failed), and the run
# stopped there if it failed.
verdict() {
    local pid="$1" log="$2" what="$3" quiet="${4:-}" status=0
    wait "$pid" || status=$?
    if [ "$status" -ne 0 ] || [ -z "$quiet" ]; then
        cat "$log"
    fi
    if [ "$status" -ne 0 ]; then
        echo "$what failed (above)" >&2
        exit 1
    fi
}

run_tests() {
    # kubectl renders the Kubernetes overlays (its built-in kustomize); the machine image has it.
    command -v kubectl >/dev/null || { echo "kubectl is needed to render deploy/k8s" >&2; exit 1; }
    # SONIQUE's environment (about 3.5 GB of wheels to fetch) is set up in its own process
    # group while the checks and the main tests run, at the lowest CPU and disk priority so
    # that it takes from them only what they leave: its output is shown if it fails, and it
    # is stopped if they do.
    SONIQUE_LOG="$(mktemp)"
    setsid nice -n 19 ionice -c 3 ./dev.sh sonique > "$SONIQUE_LOG" 2>&1 &
    SONIQUE_PID=$!
    # mypy reads one file at a time (about two minutes with no cache, nearly all of it in
    # torch, transformers, diffusers and ray): it runs beside the checks and the parallel
    # tests, on the core they leave, and its verdict is taken before the `alone` tests.
    MYPY_LOG="$(mktemp)"
    "$VENV/bin/mypy" > "$MYPY_LOG" 2>&1 &
    MYPY_PID=$!
    trap 'kill -- -"$SONIQUE_PID" "$MYPY_PID" 2>/dev/null || true; rm -f "$SONIQUE_LOG" "$MYPY_LOG"' EXIT
    "$VENV/bin/python" scripts/check_lock.py requirements.lock "${IMAGE_LOCKS[@]}" "$SONIQUE_LOCK"
    "$VENV/bin/ruff" check services tests benchmarks scripts
    "$VENV/bin/ruff" format --check services tests benchmarks scripts
    "$VENV/bin/python" scripts/generate_protos.py --check
    "$VENV/bin/python" scripts/render_k8s.py --check
    node_modules/.bin/buf lint protos
    # Against the contracts as released (protos/released.binpb): a change may add to them,
    # never break them. (Against the main branch, a run on main compared main with itself.)
    node_modules/.bin/buf breaking protos --against protos/released.binpb
    # SONIQUE's tests run in its own environment (the main run skips them); there, one
    # without stable-audio-tools is an error, not eleven skips.
    unset BGM_REQUIRE_SONIQUE
    local sonique_tests=(-m pytest -m sonique tests/test_sonique.py tests/test_diffusion.py)
    if [ $# -gt 0 ]; then
        "$VENV/bin/python" -m pytest "$@"
        verdict "$MYPY_PID" "$MYPY_LOG" mypy
        verdict "$SONIQUE_PID" "$SONIQUE_LOG" "setting up SONIQUE's environment" quiet
        BGM_REQUIRE_SONIQUE=1 "$SONIQUE_VENV/bin/python" "${sonique_tests[@]}"
    else
        # A process per core (each file's tests in one, as they share its servers), then the
        # tests marked `alone`, which leave a core idle: no other test beside them but
        # SONIQUE's, on one thread at the lowest priority (at the same priority, the others'
        # load would stretch their bounds in seconds).
        "$VENV/bin/python" -m pytest --numprocesses auto --maxprocesses 4 --dist loadfile \
            -m "not alone"
        verdict "$MYPY_PID" "$MYPY_LOG" mypy
        verdict "$SONIQUE_PID" "$SONIQUE_LOG" "setting up SONIQUE's environment" quiet
        BGM_REQUIRE_SONIQUE=1 OMP_NUM_THREADS=1 setsid nice -n 19 \
            "$SONIQUE_VENV/bin/python" "${sonique_tests[@]}" \
            > "$SONIQUE_LOG" 2>&1 &
        SONIQUE_PID=$!
        "$VENV/bin/python" -m pytest -m alone
        verdict "$SONIQUE_PID" "$SONIQUE_LOG" "SONIQUE's tests"
    fi
}

job="${1:-}"
shift || true
case "$job" in
    setup) setup; setup_test_tools ;;
    protos) setup; "$VENV/bin/python" scripts/generate_protos.py ;;
    demo) setup; demo ;;
    test) setup; setup_test_tools; run_tests "$@" ;;
    lock) setup; lock ;;
    sonique) sonique ;;
    genre-tagger) genre_tagger ;;
    *) echo "usage: ./dev.sh demo|test|setup|lock|protos|sonique|genre-tagger" >&2; exit 2 ;;
esac
