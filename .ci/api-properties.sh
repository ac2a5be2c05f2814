#!/usr/bin/env bash
# Property-based tests of the admin API: schemathesis generates requests from the
# OpenAPI document the server serves and checks every answer against it (no 5xx, the
# documented status codes, content types, headers and schemas, 405 for other methods).
# The server is `mdm demo`: `mdm serve`'s application on a temporary SQLite database,
# with mocked Apple, Google and Microsoft services, a tenant, users and simulated devices
# of every platform.
#
#   .ci/api-properties.sh            # needs python3; installs schemathesis with pip
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: a new release may add checks; take them on purpose.
SCHEMATHESIS_VERSION=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --locked -q -p mdm
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/debug/mdm demo --listen "127.0.0.1:$port" --interval 5 --data-dir "$work/data" \
    >"$work/demo.out" 2>"$work/demo.err" &
demo=$!
stop() {
    kill "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT

for _ in $(seq 1 300); do
    grep -q "admin token:" "$work/demo.out" 2>/dev/null && break
    if ! kill -0 "$demo" 2>/dev/null; then
        cat "$work/demo.err" >&2
        echo "mdm demo stopped before it was ready" >&2
        exit 1
    fi
    sleep 1
done
token=$(sed -n 's/^admin token: //p' "$work/demo.out")
if [ -z "$token" ]; then
    cat "$work/demo.err" >&2
    echo "mdm demo printed no admin token within 300 s" >&2
    exit 1
fi

# From the temporary directory: schemathesis keeps its cache in the working directory.
cd "$work"
# Checks left out until the document says enough to pass them (see docs/development.md):
# positive_data_acceptance (random ids answer 404; field limits are not all in the
# schemas yet) and negative_data_rejection.
schemathesis run "http://127.0.0.1:$port/api/v1/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --exclude-checks positive_data_acceptance,negative_data_rejection \
    --max-examples 20 \
    --seed 20261208 \
    --workers 2 \
    --no-color
