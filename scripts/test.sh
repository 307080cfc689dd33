#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: installs what the tests need,
# then runs every package's tests with the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
export PATH="$PATH:/usr/sbin:/sbin"
go vet ./...
go test -race -count=1 -timeout 9m "$@" ./...
