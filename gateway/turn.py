"""Short-lived TURN credentials in coturn's REST API scheme (``use-auth-secret``), handed to the web apps.

The username is ``<expiry as a Unix time>:<id>`` and the password ``base64(HMAC-SHA1(shared secret, username))``:
coturn recomputes the password from the username with the same secret and refuses a username whose time has
passed, so no lasting password is ever handed out or stored, and the server never talks to coturn.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Any

from gateway.config import TurnSettings


def turn_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def turn_ice_server(settings: TurnSettings, holder: str | None = None, now: float | None = None) -> dict[str, Any]:
    """An RTCIceServer (urls, username, credential) valid for ``credential_ttl_seconds``, or {} when TURN is off.

    `holder` names who it is for in coturn's logs (a random id when None)."""
    if not settings.urls or not settings.shared_secret:
        return {}
    expiry = int(time.time() if now is None else now) + settings.credential_ttl_seconds
    username = f"{expiry}:{holder or secrets.token_hex(6)}"
    return {
        "urls": list(settings.urls),
        "username": username,
        "credential": turn_password(settings.shared_secret, username),
    }
