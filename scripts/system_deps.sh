#!/usr/bin/env bash
# Browser and Prometheus for the tests, from Debian's packages, when missing.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
  echo "missing ${need[*]}; install them (Debian: apt-get install ${need[*]}) or their tests skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing ${need[*]} and no apt-get here; their tests will skip" >&2
  exit 0
fi
echo "==> installing ${need[*]} from Debian (tests need them)"
$sudo apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "could not install ${need[*]}; their tests will skip" >&2
exit 0
