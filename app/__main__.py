"""Command line: `python -m app serve | migrate | healthcheck`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.request

from app.settings import Settings


def _database_url(settings: Settings) -> str:
    from app.lifespan import database_url

    return database_url(settings)


def serve(args: argparse.Namespace) -> None:
    """Start the embedded database if needed, migrate, and run the API with uvicorn."""
    import uvicorn

    settings = Settings.from_env()
    # Resolve the database once in this process so that every worker shares it.
    os.environ["DATABASE_URL"] = _database_url(settings)
    from app.db.migrate import upgrade

    upgrade(os.environ["DATABASE_URL"])
    uvicorn.run(
        "app.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=settings.log_level.lower(),
        access_log=args.access_log,
        http="httptools",
        loop="uvloop",
    )


def migrate(_: argparse.Namespace) -> None:
    from app.db.migrate import upgrade

    upgrade(_database_url(Settings.from_env()))
    print("database is at the latest revision")


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
    serve_cmd.add_argument("--workers", type=int, default=1)
    serve_cmd.add_argument("--access-log", action="store_true")
    serve_cmd.set_defaults(run=serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=migrate)

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
