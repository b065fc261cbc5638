"""Dependency providers: handlers receive services, never engines or segments."""

from __future__ import annotations

from litestar.datastructures import State

from app.services.container import Services


async def provide_services(state: State) -> Services:
    services: Services = state.services
    return await services.current()
