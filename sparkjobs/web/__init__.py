"""The run page and JSON API (`sparkjobs web`): a Starlette app over the SQL store."""

from __future__ import annotations

from sparkjobs.web.app import create_app, serve

__all__ = ["create_app", "serve"]
