"""Command line: `python -m app serve | migrate | create-index | healthcheck`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import urllib.request
from typing import TYPE_CHECKING, NoReturn

from app.settings import Settings, env_flag

if TYPE_CHECKING:
    from types import FrameType

    from app.models import CollectionConfig


def _database_url(settings: Settings) -> str:
    from app.lifespan import database_url

    return database_url(settings)


def serve(args: argparse.Namespace) -> None:
    """Start the embedded database if needed, migrate, and run the API with uvicorn.

    However serve ends, it lets go of the embedded PostgreSQL, which stops it unless
    another process still holds it. SIGTERM and Ctrl-C included: uvicorn re-raises the
    signal it stopped for once it has shut down, and the default handlers would end the
    process there before any cleanup (SIGTERM) or with a traceback (SIGINT).
    """
    from app.db.engine import stop_embedded_postgres

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _exit_quietly)
    try:
        exit_code = _run_api(args)
    finally:
        stop_embedded_postgres()
    sys.exit(exit_code)


def _exit_quietly(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def _run_api(args: argparse.Namespace) -> int:
    """Run uvicorn (or, for several workers, `app.server.dealer.Supervisor`, which deals
    connections to them) until it stops; the exit code."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from app.server.protocol import CoalescingHttpToolsProtocol

    settings = Settings.from_env()
    # Resolve the database once in this process so that every worker shares it.
    os.environ["DATABASE_URL"] = _database_url(settings)
    from app.db.migrate import upgrade

    upgrade(os.environ["DATABASE_URL"])
    pinning = _pins_workers(args)
    os.environ["WAYPOINT_PIN_WORKERS"] = "1" if pinning else ""
    config = uvicorn.Config(
        "app.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=args.access_log,
        http=CoalescingHttpToolsProtocol,
        loop="uvloop",
    )
    if args.workers < 2:
        server = uvicorn.Server(config)
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    from app.server.dealer import Supervisor

    counters = _share_counters()
    try:
        exit_code = Supervisor(config).run()
    finally:
        shutil.rmtree(counters, ignore_errors=True)
        if pinning:
            from app.server.affinity import forget_workers

            forget_workers()
    return exit_code


COUNTERS_PREFIX = "waypoint-counters-"  # + the supervisor's pid + "-" + a random suffix


def _share_counters() -> str:
    """A fresh folder for the workers' counters (`app.services.counters`), in their env.

    A stop removes it; folders of supervisors that were killed are removed here instead.
    """
    from app.services.change_feed import shared_memory_dir

    base = shared_memory_dir()
    for folder in base.glob(f"{COUNTERS_PREFIX}*"):
        owner = folder.name.removeprefix(COUNTERS_PREFIX).split("-")[0]
        if owner.isdigit() and not _process_exists(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=f"{COUNTERS_PREFIX}{os.getpid()}-", dir=base)
    os.environ["WAYPOINT_COUNTERS_DIR"] = folder
    return folder


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _pins_workers(args: argparse.Namespace) -> bool:
    """Pin only several workers: one worker alone would lose every CPU but one."""
    if args.pin_workers and args.workers < 2:
        logging.getLogger("app").warning("--pin-workers needs --workers 2 or more; not pinning")
        return False
    return args.pin_workers


def migrate(_: argparse.Namespace) -> None:
    from app.db.migrate import upgrade

    upgrade(_database_url(Settings.from_env()))
    print("database is at the latest revision")


def create_index(args: argparse.Namespace) -> None:
    """Create an Upstash index with no server running, or next to running servers.

    It runs the same `CollectionService.create` as `PUT /upstash/{index}`, inside a
    short-lived `Services` whose commit hook bumps the host's change signal: servers on this
    host reload their catalog on their next request, servers elsewhere within their poll.
    """
    from app.db.migrate import upgrade
    from app.errors import WaypointError
    from app.services.upstash import index_config

    settings = Settings.from_env()
    try:
        config = index_config(
            args.dimension,
            args.similarity,
            args.type,
            args.embedding_model,
            args.sparse_embedding_model,
        )
        url = _database_url(settings)
        upgrade(url)
        asyncio.run(_create_index(settings, url, args.name, config))
    except WaypointError as exc:
        sys.exit(f"create-index: {exc.message}")
    dense = config.vectors.get("")
    shape = f"{dense.size} dimensions, {args.similarity or 'COSINE'}".upper() if dense else ""
    kind = config.as_sent["index_type"]
    print(f"created {kind} index {args.name}" + (f" ({shape})" if shape else ""))


async def _create_index(settings: Settings, url: str, name: str, config: CollectionConfig) -> None:
    from app.db.database import Database
    from app.services.container import Services

    services = Services(settings, Database(url, pool_size=1))
    try:
        await services.collections.create(name, config, dialect="upstash")
    finally:
        await services.stop()


def healthcheck(args: argparse.Namespace) -> None:
    """For container healthchecks that have no curl: exit 0 when /readyz answers 200."""
    try:
        with urllib.request.urlopen(f"http://{args.host}:{args.port}/readyz", timeout=5) as r:
            sys.exit(0 if r.status == 200 else 1)
    except OSError:
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app", description="Waypoint vector search")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the HTTP API")
    serve_cmd.add_argument("--host", default=os.environ.get("WAYPOINT_HOST", "0.0.0.0"))
    serve_cmd.add_argument("--port", type=int, default=int(os.environ.get("WAYPOINT_PORT", 6333)))
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WAYPOINT_WORKERS", 1)),
        help="worker processes; they share one database and see each other's writes",
    )
    serve_cmd.add_argument(
        "--pin-workers",
        action="store_true",
        default=env_flag("WAYPOINT_PIN_WORKERS"),
        help="pin each worker process to a CPU of its own (use as many workers as CPUs)",
    )
    serve_cmd.add_argument("--access-log", action="store_true")
    serve_cmd.set_defaults(run=serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=migrate)

    index_cmd = commands.add_parser("create-index", help="create an Upstash Vector index")
    index_cmd.add_argument("name")
    index_cmd.add_argument(
        "--type",
        type=str.upper,
        choices=["DENSE", "SPARSE", "HYBRID"],
        help="DENSE (the default without models), SPARSE or HYBRID",
    )
    index_cmd.add_argument(
        "--dimension", type=int, help="required unless --type SPARSE or --embedding-model"
    )
    index_cmd.add_argument("--similarity", help="COSINE (default), EUCLIDEAN or DOT_PRODUCT")
    index_cmd.add_argument(
        "--embedding-model", help="embed `data` densely: sentence-transformers/all-MiniLM-L6-v2"
    )
    index_cmd.add_argument("--sparse-embedding-model", help="embed `data` sparsely: BM25")
    index_cmd.set_defaults(run=create_index)

    check_cmd = commands.add_parser("healthcheck", help="exit 0 when the service is ready")
    check_cmd.add_argument("--host", default="127.0.0.1")
    check_cmd.add_argument("--port", type=int, default=int(os.environ.get("WAYPOINT_PORT", 6333)))
    check_cmd.set_defaults(run=healthcheck)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args.run(args)


if __name__ == "__main__":
    main()
