#!/usr/bin/env bash
# Install Waypoint into ./.venv and run it: scripts/serve.sh [--host H] [--port P] [--workers N]
# Without DATABASE_URL an embedded PostgreSQL keeps its data under $WAYPOINT_DATA_DIR (./data).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
install_project .
exec .venv/bin/python -m app serve "$@"
