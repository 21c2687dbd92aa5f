#!/usr/bin/env bash
# The whole suite. Integration tests use CASCADE_TEST_REDIS_URL / CASCADE_TEST_DATABASE_URL /
# CASCADE_TEST_AMQP_URL when set (see .ci/run) and start what they need otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-artifacts
exec .venv/bin/pytest "$@"
