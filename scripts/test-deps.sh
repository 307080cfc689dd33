#!/usr/bin/env bash
# Installs what the test suite needs and nothing else, idempotently: the
# Debian packages behind real-server tests (a browser, redis, nginx, wrk) and
# the Go modules. Runs `apt-get update` at most once, and only when something
# is missing.
set -euo pipefail

# command -> Debian package
declare -A want=(
  [chromium]=chromium
  [redis-server]=redis-server
  [nginx]=nginx
  [wrk]=wrk
)
# nginx lives in /usr/sbin, which a non-login shell may not have on PATH.
export PATH="$PATH:/usr/sbin:/sbin"

missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "test-deps: installing ${missing[*]}" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The nginx package starts a system nginx on :80; tests run their own.
  if printf '%s\n' "${missing[@]}" | grep -qx nginx; then
    $sudo systemctl stop nginx >/dev/null 2>&1 || $sudo service nginx stop >/dev/null 2>&1 || $sudo pkill -x nginx || true
  fi
fi

cd "$(dirname "$0")/.."
go mod download
