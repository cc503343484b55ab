"""The ASGI application: the app factory, lifespan, middleware and routes."""

from aimi.server.app import create_app

__all__ = ["create_app"]
