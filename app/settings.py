"""Typed configuration read once from the environment.

Everything the service can be tuned with lives here, so that `create_app(settings)` can be
called with an explicit object in tests and nothing reads the environment at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from app.limits import Limits


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_flag(name: str) -> bool:
    """A yes/no variable: 1, true or yes (any case) is yes; anything else, or unset, is no."""
    return (_env(name) or "").lower() in ("1", "true", "yes")


@dataclass(frozen=True, slots=True)
class Settings:
    """Service settings; `from_env()` is the only place that reads `WAYPOINT_*` variables."""

    database_url: str | None = None
    data_dir: Path = Path("data")
    api_key: str | None = None
    read_only_api_key: str | None = None
    exact_threshold: int | None = None  # None: each collection's full_scan_threshold
    search_threads: int = 2
    build_threads: int = 2
    qdrant_version: str = "1.20.0"
    log_level: str = "INFO"
    max_request_bytes: int = 32 * 1024 * 1024
    sync_interval: float = 1.0
    signal_dir: Path | None = None  # where workers of one host share their write counter
    max_sessions: int = 10_000  # active resumable queries, all keys together
    max_sessions_per_key: int = 1_000
    reap_interval: float = 30.0  # seconds between sweeps for idle resumable queries
    session_cache: int = 1024  # live resumable engines kept per worker (0: always from the row)
    pin_workers: bool = False  # each worker process on a CPU of its own (app.server.affinity)
    counters_dir: Path | None = None  # where the workers of one server keep their counters
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=_env("DATABASE_URL"),
            data_dir=Path(_env("WAYPOINT_DATA_DIR", "data") or "data"),
            api_key=_env("WAYPOINT_API_KEY"),
            read_only_api_key=_env("WAYPOINT_READ_ONLY_API_KEY"),
            exact_threshold=int(t) if (t := _env("WAYPOINT_EXACT_THRESHOLD")) else None,
            search_threads=int(_env("WAYPOINT_SEARCH_THREADS", "2") or 2),
            build_threads=int(_env("WAYPOINT_BUILD_THREADS", "2") or 2),
            qdrant_version=_env("WAYPOINT_QDRANT_VERSION", "1.20.0") or "1.20.0",
            log_level=_env("WAYPOINT_LOG_LEVEL", "INFO") or "INFO",
            max_request_bytes=int(_env("WAYPOINT_MAX_REQUEST_MB", "32") or 32) * 1024 * 1024,
            sync_interval=float(_env("WAYPOINT_SYNC_INTERVAL", "1.0") or 1.0),
            signal_dir=Path(d) if (d := _env("WAYPOINT_SIGNAL_DIR")) else None,
            max_sessions=int(_env("WAYPOINT_MAX_SESSIONS", "10000") or 10000),
            max_sessions_per_key=int(_env("WAYPOINT_MAX_SESSIONS_PER_KEY", "1000") or 1000),
            reap_interval=float(_env("WAYPOINT_REAP_INTERVAL", "30") or 30),
            session_cache=int(_env("WAYPOINT_SESSION_CACHE", "1024") or 1024),
            pin_workers=env_flag("WAYPOINT_PIN_WORKERS"),
            counters_dir=Path(d) if (d := _env("WAYPOINT_COUNTERS_DIR")) else None,
            limits=_limits_from_env(),
        )


def _limits_from_env() -> Limits:
    default = Limits()
    return Limits(
        filter_depth=_int("WAYPOINT_MAX_FILTER_DEPTH", default.filter_depth),
        filter_conditions=_int("WAYPOINT_MAX_FILTER_CONDITIONS", default.filter_conditions),
        payload_depth=_int("WAYPOINT_MAX_PAYLOAD_DEPTH", default.payload_depth),
        name_bytes=_int("WAYPOINT_MAX_NAME_BYTES", default.name_bytes),
        id_bytes=_int("WAYPOINT_MAX_ID_BYTES", default.id_bytes),
        result_points=_int("WAYPOINT_MAX_RESULT_POINTS", default.result_points),
        sparse_values=_int("WAYPOINT_MAX_SPARSE_VALUES", default.sparse_values),
    )


def _int(name: str, default: int) -> int:
    value = _env(name)
    return default if value is None else int(value)
