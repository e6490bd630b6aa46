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
echo "== pytest${CXMINE_TEST_POSTGRES_URL:+ (SQLite and PostgreSQL)}" >&2
.venv/bin/pytest "$@"
