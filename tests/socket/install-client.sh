#!/bin/sh
# Installs the third-party actionhero client used by tests/socket (TestActionheroNodeClient) into a
# directory and prints that directory. Use it as:
#   export SB_ACTIONHERO_CLIENT_DIR="$(tests/socket/install-client.sh)"
# The directory is $1 when given, else a new temporary directory.
set -eu
dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/sb-ahclient.XXXXXX")}"
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || printf '{"name":"sb-ahclient","private":true}\n' > package.json
npm install --silent --no-audit --no-fund --no-save actionhero-node-client@8.0.1 >/dev/null 2>&1 ||
  npm install --no-audit --no-fund --no-save actionhero-node-client@8.0.1 >&2
test -f node_modules/actionhero-node-client/dist/client.js
echo "$dir"
