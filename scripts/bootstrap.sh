#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install what it needs.
# Sourced by scripts/train.sh and scripts/test.sh; safe to run again (it skips work already done).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${CPC_RL_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

# MiniWorld renders through EGL with no display; install Mesa's EGL if this machine lacks it.
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1'; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[bootstrap] installing Mesa EGL (libegl1, libgl1-mesa-dri) for headless rendering"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri libglu1-mesa >/dev/null
  else
    echo "[bootstrap] warning: libEGL.so.1 not found; MiniWorld needs Mesa EGL (apt-get install libegl1 libgl1-mesa-dri)" >&2
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "[bootstrap] creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"

# pip install, hiding only the warnings about this machine's local index folders; a failure stops here.
pip_install() {
  local log status=0
  log="$(mktemp)"
  "$vpy" -m pip install -q "$@" >"$log" 2>&1 || status=$?
  grep -v "is ignored: it is neither a file nor a directory" "$log" >&2 || true
  rm -f "$log"
  if [ "$status" != 0 ]; then echo "[bootstrap] pip install $* failed (exit $status)" >&2; exit "$status"; fi
}

# A CPU build of torch; without the pin pip would pull a multi-GB CUDA build.
if ! "$vpy" -c "import torch" 2>/dev/null; then
  echo "[bootstrap] installing torch==2.13.0 (CPU)"
  pip_install "torch==2.13.0"
fi

stamp="$venv/.cpc-rl-installed"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[bootstrap] installing cpc-rl and its dependencies into $venv"
  pip_install -e "$root[dev,report]"
  echo "$want" > "$stamp"
fi
export CPC_RL_PYTHON="$vpy"
