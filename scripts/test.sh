#!/usr/bin/env bash
# The README's test command: set up (or reuse) .venv, then run the test suite. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"
exec "$CPC_RL_PYTHON" -m pytest tests "$@"
