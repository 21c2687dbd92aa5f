#!/usr/bin/env bash
# Run checkov (IaC static analysis) from its own virtual environment.
#
# checkov pins many libraries (boto3, networkx, pydantic...) that would fight Cascade's own, so it
# lives in a separate venv (.venv-checkov, git-ignored by `.venv-*/`), created on first use with a
# pinned version. Everything after the script name is passed to checkov, e.g.
#   scripts/checkov.sh -d infra --framework terraform,dockerfile
#
# pip configuration: a user's own pip settings (mirrors, proxies) are used as they are. Only when
# the plain install fails *and* pip is configured with local find-links (as on the project's
# build machines, which point pip at a folder of local wheels) do we retry with that configuration
# bypassed. Detect, don't override.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CHECKOV_VENV:-.venv-checkov}
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}
# Every transitive dependency pinned as tested, so a fresh clone gets the same checks.
CONSTRAINTS=infra/checkov.lock
STAMP="$VENV/.checkov-$CHECKOV_VERSION"

find_python() {
  for py in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "checkov needs Python >= 3.9 (none found on PATH; set PYTHON=/path/to/python3)" >&2
  return 1
}

pip_has_local_links() {
  [ -n "${PIP_FIND_LINKS:-}" ] && return 0
  "$VENV/bin/python" -m pip config list 2>/dev/null | grep -Eq 'find-links|find_links'
}

install_checkov() {
  if [ ! -x "$VENV/bin/python" ]; then
    # The folder may already exist (it holds the install lock); venv creates into it.
    py=$(find_python)
    echo "==> creating $VENV with $($py --version)" >&2
    "$py" -m venv "$VENV"
  fi
  # --no-compile: byte-compiling thousands of files is most of the install's CPU time.
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check install --quiet --no-compile)
  if grep -qx "checkov==$CHECKOV_VERSION" "$CONSTRAINTS" 2>/dev/null; then pip+=(-c "$CONSTRAINTS"); fi
  echo "==> installing checkov==$CHECKOV_VERSION into $VENV (first use only)" >&2
  if ! "${pip[@]}" "checkov==$CHECKOV_VERSION" >&2; then
    if pip_has_local_links; then
      echo "==> retrying with pip's local find-links configuration bypassed" >&2
      PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null "${pip[@]}" "checkov==$CHECKOV_VERSION" >&2
    else
      return 1
    fi
  fi
  "$VENV/bin/checkov" --version >/dev/null
  touch "$STAMP"
}

if [ ! -f "$STAMP" ]; then
  mkdir -p "$VENV"
  # Two test processes may ask at once: one installs, the other waits for it.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV/.install.lock"
    flock 9
    [ -f "$STAMP" ] || install_checkov
    flock -u 9
  else
    install_checkov
  fi
fi

exec "$VENV/bin/checkov" "$@"
