#!/usr/bin/env bash
# Regenerate the initial migration from cascade/db/schema.py. Only while nothing is deployed:
# after the first release, add new revisions with `alembic revision --autogenerate` instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f cascade/db/migrations/versions/0001_initial.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from cascade.db.session import alembic_config
cfg = alembic_config(f"sqlite:///{sys.argv[1]}/m.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001_initial")
PY
mv cascade/db/migrations/versions/0001_initial_initial_schema.py cascade/db/migrations/versions/0001_initial.py
.venv/bin/ruff format -q cascade/db/migrations/versions/0001_initial.py
.venv/bin/ruff check -q --fix cascade/db/migrations/versions/0001_initial.py || true
rm -rf "$tmp"
echo "regenerated cascade/db/migrations/versions/0001_initial.py"
