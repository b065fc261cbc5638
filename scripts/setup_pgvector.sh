#!/usr/bin/env bash
# Build pgvector 0.8 for the system PostgreSQL 15 and start a throw-away benchmark cluster.
#
# Follows ../shared/reference/baselines.md §1:
#   * pgvector 0.8.0 from Debian trixie's *source* package (bookworm has no binary for PG15),
#     fetched through a private apt source list so the system's apt sources stay untouched;
#   * built against postgresql-server-dev-15 with OPTFLAGS=-march=native (Debian's patch drops it);
#   * a scratch cluster run as user `postgres` (initdb refuses root), unix socket only, port 55432,
#     with the benchmark settings (shared_buffers 4GB, maintenance_work_mem 6GB, fsync off, ...).
#
# Idempotent: the build is skipped when vector.control 0.8.x is already installed, initdb is skipped
# when the data directory exists, and start is skipped when the cluster is already running.
# The system cluster (15/main on 127.0.0.1:5432) is checked after apt-get and restarted if needed.
#
# Usage:  scripts/setup_pgvector.sh [start|stop|status|dsn]     (default: start)
# The last line printed on stdout by `start` and `dsn` is the libpq connection string.
#
# Environment (all optional):
#   WAYPOINT_PGV_DIR     cluster root: data/, run/ (socket), server.log  (/tmp/waypoint-pgvector)
#   WAYPOINT_PGV_BUILD   build directory for the apt source download     (/tmp/waypoint-pgvector-build)
#   WAYPOINT_PGV_PORT    port of the scratch cluster                      (55432)
#   WAYPOINT_PGV_DB      database created in it, with `CREATE EXTENSION vector`   (bench)
#   WAYPOINT_PGV_SHARED_BUFFERS / WAYPOINT_PGV_MAINT_MEM   (4GB / 6GB)
set -euo pipefail

PG_MAJOR=15
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PG_BIN/pg_config
ROOT=${WAYPOINT_PGV_DIR:-/tmp/waypoint-pgvector}
BUILD=${WAYPOINT_PGV_BUILD:-/tmp/waypoint-pgvector-build}
PORT=${WAYPOINT_PGV_PORT:-55432}
DB=${WAYPOINT_PGV_DB:-bench}
SHARED_BUFFERS=${WAYPOINT_PGV_SHARED_BUFFERS:-4GB}
MAINT_MEM=${WAYPOINT_PGV_MAINT_MEM:-6GB}
PGDATA_DIR=$ROOT/data
SOCK=$ROOT/run
LOG=$ROOT/server.log

log() { echo "[setup_pgvector] $*" >&2; }
as_pg() { runuser -u postgres -- "$@"; }
dsn() { echo "host=$SOCK port=$PORT user=postgres dbname=$DB"; }

# ----------------------------------------------------------------------------------------------
installed_version() {
    # default_version of the installed vector extension, or nothing.
    local sharedir
    sharedir=$("$PG_CONFIG" --sharedir 2>/dev/null) || sharedir=/usr/share/postgresql/$PG_MAJOR
    sed -n "s/^default_version *= *'\(.*\)'.*/\1/p" "$sharedir/extension/vector.control" 2>/dev/null \
        || true
}

system_cluster_ok() { psql -h 127.0.0.1 -U postgres -d postgres -XAtqc 'select 1' >/dev/null 2>&1; }

ensure_system_cluster() {
    # Installing server-dev packages may upgrade postgresql-15; policy-rc.d then keeps the
    # existing 'main' cluster from being restarted. Bring it back if it is down.
    if system_cluster_ok; then
        return
    fi
    log "system cluster 15/main is not answering on 127.0.0.1:5432; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start || true
    for _ in $(seq 30); do
        system_cluster_ok && { log "system cluster is up again"; return; }
        sleep 1
    done
    log "WARNING: system cluster 15/main still not answering"
}

install_build_deps() {
    if [[ -x $PG_CONFIG && -f /usr/include/postgresql/$PG_MAJOR/server/postgres.h ]]; then
        return
    fi
    log "installing postgresql-server-dev-$PG_MAJOR"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-server-dev-$PG_MAJOR" >&2
    then
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "postgresql-server-dev-$PG_MAJOR" >&2
    fi
    if ((SYS_WAS_UP)); then
        ensure_system_cluster
    fi
}

build_pgvector() {
    local have
    have=$(installed_version)
    if [[ $have == 0.8.* ]]; then
        log "pgvector $have already installed for PostgreSQL $PG_MAJOR; skipping build"
        return
    fi
    install_build_deps
    log "fetching the pgvector source package from Debian trixie (private apt lists in $BUILD/apt)"
    mkdir -p "$BUILD/apt/lists/partial" "$BUILD/apt/parts"
    touch "$BUILD/apt/empty.list"
    printf '%s\n' 'Types: deb-src' 'URIs: http://deb.debian.org/debian' 'Suites: trixie' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
        >"$BUILD/apt/parts/trixie-src.sources"
    local apt_opts=(-o "Dir::Etc::sourcelist=$BUILD/apt/empty.list"
        -o "Dir::Etc::sourceparts=$BUILD/apt/parts"
        -o "Dir::State::Lists=$BUILD/apt/lists")
    apt-get "${apt_opts[@]}" update -q >&2
    (
        cd "$BUILD"
        rm -rf pgvector-src
        ls pgvector_0.8.*.dsc >/dev/null 2>&1 \
            || apt-get "${apt_opts[@]}" source --download-only pgvector >&2
        local dsc
        dsc=$(ls pgvector_0.8.*.dsc | sort -V | tail -n1)
        dpkg-source -x "$dsc" pgvector-src >&2
        cd pgvector-src
        make -s PG_CONFIG="$PG_CONFIG" OPTFLAGS=-march=native -j"$(nproc)" >&2
        make -s PG_CONFIG="$PG_CONFIG" install >&2
    )
    have=$(installed_version)
    [[ $have == 0.8.* ]] || { log "ERROR: installed vector.control says '$have'"; exit 1; }
    log "pgvector $have installed"
}

# ----------------------------------------------------------------------------------------------
running() { [[ -f $PGDATA_DIR/PG_VERSION ]] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; }

init_cluster() {
    if [[ -f $PGDATA_DIR/PG_VERSION ]]; then
        return
    fi
    log "initdb in $PGDATA_DIR"
    install -d -o postgres -g postgres -m 755 "$ROOT"
    install -d -o postgres -g postgres -m 700 "$PGDATA_DIR"
    install -d -o postgres -g postgres -m 755 "$SOCK"
    as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >/dev/null
}

write_config() {
    # Rewritten on every start so that changed env settings take effect; included once.
    local conf=$PGDATA_DIR/waypoint-bench.conf
    cat >"$conf" <<EOF
# written by scripts/setup_pgvector.sh (benchmark settings of baselines.md §1)
port = $PORT
listen_addresses = ''
unix_socket_directories = '$SOCK'
shared_buffers = $SHARED_BUFFERS
maintenance_work_mem = $MAINT_MEM       # HNSW build must fit in it
max_parallel_maintenance_workers = 1    # leader + 1 worker = 2 build threads
max_parallel_workers_per_gather = 0
jit = off
fsync = off                             # benchmark only
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
max_connections = 100
EOF
    chown postgres:postgres "$conf"
    grep -q "^include 'waypoint-bench.conf'" "$PGDATA_DIR/postgresql.conf" \
        || echo "include 'waypoint-bench.conf'" >>"$PGDATA_DIR/postgresql.conf"
}

start_cluster() {
    init_cluster
    if running; then
        log "cluster in $PGDATA_DIR already running"
    else
        write_config
        log "starting cluster (port $PORT, socket $SOCK, log $LOG)"
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t 60 start >/dev/null
    fi
    local q=(psql -h "$SOCK" -p "$PORT" -U postgres -XAtq)
    if [[ $("${q[@]}" -d postgres -c "select 1 from pg_database where datname='$DB'") != 1 ]]; then
        "${q[@]}" -d postgres -c "CREATE DATABASE $DB"
    fi
    PGOPTIONS='-c client_min_messages=warning' "${q[@]}" -d "$DB" -c 'CREATE EXTENSION IF NOT EXISTS vector'
    local v
    v=$("${q[@]}" -d "$DB" -c "select extversion from pg_extension where extname='vector'")
    log "database $DB has vector $v"
}

stop_cluster() {
    if running; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null
        log "stopped cluster in $PGDATA_DIR"
    else
        log "cluster in $PGDATA_DIR is not running"
    fi
}

# ----------------------------------------------------------------------------------------------
case "${1:-start}" in
start)
    [[ $(id -u) == 0 ]] || { log "run as root (installs packages, uses runuser)"; exit 1; }
    SYS_WAS_UP=0
    system_cluster_ok && SYS_WAS_UP=1
    build_pgvector
    start_cluster
    if ((SYS_WAS_UP)); then
        ensure_system_cluster
    fi
    dsn
    ;;
stop) stop_cluster ;;
status)
    echo "pgvector installed: $(installed_version)"
    if running; then echo "cluster: running ($(dsn))"; else echo "cluster: stopped"; fi
    ;;
dsn) dsn ;;
*)
    echo "usage: $0 [start|stop|status|dsn]" >&2
    exit 2
    ;;
esac
