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
# The browser tests drive Debian's chromium (Playwright's own browser download cannot work offline) and need
# fonts for the Arabic, Persian and Thai quotes in their screenshots: Noto's UI set covers all three in 1.4 MB.
has_script_fonts() {
    command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=ar family)" ] && [ -n "$(fc-list :lang=th family)" ]
}
if [ -z "${CXMINE_TEST_CHROMIUM:-}" ]; then
    missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    has_script_fonts || missing+=(fontconfig fonts-noto-ui-core)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "== installing ${missing[*]} for the browser tests (apt-get)" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
                || echo "!! apt-get could not install ${missing[*]}" >&2
        else
            echo "!! ${missing[*]} missing and not root with apt-get: run 'apt-get install -y ${missing[*]}';" \
                "the browser tests skip without chromium, and their screenshots lack Arabic and Thai glyphs without the fonts" >&2
        fi
    fi
    if command -v chromium >/dev/null 2>&1; then
        export CXMINE_TEST_CHROMIUM
        CXMINE_TEST_CHROMIUM=$(command -v chromium)
    fi
fi
echo "== pytest${CXMINE_TEST_POSTGRES_URL:+ (SQLite and PostgreSQL)}, encoder $CXMINE_TEST_ENCODER," \
    "browser ${CXMINE_TEST_CHROMIUM:-none (browser tests skip)}; screenshots in test-artifacts/screenshots" >&2
.venv/bin/pytest "$@"
