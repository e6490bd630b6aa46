# Sourced by run.sh and test.sh: create ./.venv and install cxmine (with EXTRAS) when pyproject.toml changed.
set -euo pipefail
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "cxmine needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating virtual environment in .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.cxmine-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16) ${EXTRAS:-}"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "installing cxmine${EXTRAS:+[$EXTRAS]} and its dependencies into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${EXTRAS:+[$EXTRAS]}"
    echo "$want" > "$stamp"
fi
