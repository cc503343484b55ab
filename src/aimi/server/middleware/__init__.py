"""Pure ASGI middleware, one concern a file."""
