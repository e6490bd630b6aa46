#!/usr/bin/env bash
# Set up the development environment and run the whole test suite (lint, types, tests).
# Extra arguments go to pytest, e.g. ./scripts/test.sh -m "not slow" -x
# Set CXMINE_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test to run every database
# test against PostgreSQL as well as SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="dev" source scripts/_venv.sh

echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
# The scoring tests run the default encoder (built once, offline, into var/models) unless told otherwise.
if [ -z "${CXMINE_TEST_ENCODER:-}" ]; then
    echo "== building the default encoder (once)" >&2
    .venv/bin/cxmine models build
    export CXMINE_TEST_ENCODER="onnx:$PWD/var/models/e5-small-onnx"
fi
echo "== pytest${CXMINE_TEST_POSTGRES_URL:+ (SQLite and PostgreSQL)}, encoder $CXMINE_TEST_ENCODER" >&2
.venv/bin/pytest "$@"
