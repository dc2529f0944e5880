"""Who may use the run page and the API: a bearer token or basic auth, compared in
constant time, whenever the page listens off loopback or a secret is configured.

A browser logs in with basic auth (any user name with the token as password, or a
configured "user:password"); scripts send `Authorization: Bearer TOKEN`. Forms that
change something must come from the page itself (an Origin check), so another site
cannot press run-now with the browser's stored credentials.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from sparkjobs.config.sections import WebConfig

OPEN_PATHS = ("/healthz", "/static/")
# Far more than a browser sends (cookies included); past it a request is refused unread.
MAX_HEADER_BYTES = 32 * 1024
REALM = 'Basic realm="sparkjobs", charset="UTF-8"'


@dataclass(frozen=True)
class Credentials:
    """The secrets a request may present (bytes, for constant-time comparison)."""

    token: bytes | None
    basic: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def from_config(cls, web: WebConfig) -> Credentials:
        token = web.token.get_secret_value().encode() if web.token else None
        pairs = []
        for entry in web.basic_auth:
            user, _, password = entry.get_secret_value().partition(":")
            pairs.append((user.encode(), password.encode()))
        return cls(token, tuple(pairs))

    def accepts(self, header: str) -> bool:
        """Whether an Authorization header carries a valid token or user and password."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self.token is not None and hmac.compare_digest(
                value.strip().encode(), self.token
            )
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        good = self.token is not None and hmac.compare_digest(password, self.token)
        for known_user, known_password in self.basic:
            # Every entry is compared, so the time taken does not tell which matched.
            same = hmac.compare_digest(user, known_user) & hmac.compare_digest(
                password, known_password
            )
            good = good or same
        return good


class AuthMiddleware:
    """Require credentials (when `required`) and same-origin posts from browsers."""

    def __init__(self, app: ASGIApp, *, credentials: Credentials, required: bool) -> None:
        self.app = app
        self.credentials = credentials
        self.required = required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            await _refuse(send, 431, "request headers too large", path.startswith("/api/"))
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        is_api = path.startswith("/api/")
        open_path = path.startswith(OPEN_PATHS)
        if (
            self.required
            and not open_path
            and not self.credentials.accepts(headers.get("authorization", ""))
        ):
            await _refuse(send, 401, "authentication required", is_api, challenge=True)
            return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and not _same_origin(headers):
            await _refuse(send, 403, "cross-site request refused", is_api)
            return
        await self.app(scope, receive, send)


def _same_origin(headers: dict[str, str]) -> bool:
    """A browser's cross-site post carries a foreign Origin; scripts send none."""
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == headers.get("host", "")


async def _refuse(
    send: Send, status: int, message: str, is_api: bool, *, challenge: bool = False
) -> None:
    if is_api:
        body = json.dumps({"error": message}).encode()
        content_type = b"application/json"
    else:
        body = f"{message}\n".encode()
        content_type = b"text/plain; charset=utf-8"
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if challenge and not is_api:
        headers.append((b"www-authenticate", REALM.encode()))
    elif challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
