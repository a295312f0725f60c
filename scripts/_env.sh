# Sourced by ./scripts/test, ./scripts/demo and ./scripts/bench: installs what steerpad
# needs on a Debian machine, idempotently, and activates .venv. Quick when all is there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# System packages: audio I/O (JACK + PortAudio for sounddevice) and the Python toolchain.
APT_PACKAGES=(python3 python3-venv python3-dev gcc g++ libportaudio2 jackd2 libsndfile1)

apt_missing() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    echo "${missing[@]:-}"
}

ensure_apt() {
    command -v dpkg-query >/dev/null || { echo "steerpad: not a Debian system; install ${*} yourself" >&2; return 0; }
    local missing
    missing="$(apt_missing "$@")"
    [ -z "$missing" ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "steerpad: installing system packages: $missing"
    # jackd2 asks whether to enable realtime limits; answer for it.
    echo "jackd2 jackd/tweak_rt_limits boolean false" | $sudo debconf-set-selections 2>/dev/null || true
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"

ensure_venv() {
    # $1: the extras to install, e.g. "test"
    local extras="$1"
    local ort="cpu"
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then ort="gpu"; fi
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC1091
    source "$VENV/bin/activate"
    local stamp="$VENV/.steerpad-$extras-$ort"
    local want
    want="$(cat pyproject.toml scripts/_env.sh | sha256sum | cut -c1-16)"
    # The test extras include train's: a test venv serves ./scripts/bench and ./scripts/demo too.
    local s
    for s in "$stamp" "$VENV/.steerpad-test-$ort"; do
        if [ -f "$s" ] && [ "$(cat "$s")" = "$want" ]; then return 0; fi
    done
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    python -m pip install -q --upgrade pip setuptools wheel
    # torch first, pinned: the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
    # Never torchaudio or torchvision: PyPI's builds fail to load beside it.
    if [[ "$extras" == *test* || "$extras" == *train* ]]; then
        python -m pip install -q "torch==2.13.0"
    fi
    # Exactly one ONNX Runtime: remove the other one before installing ours.
    local other="onnxruntime-gpu"; [ "$ort" = gpu ] && other="onnxruntime"
    python -m pip uninstall -q -y "$other" >/dev/null 2>&1 || true
    python -m pip install -q -e ".[${extras},${ort}]"
    echo "$want" > "$stamp"
}
