"""Refuse callback URLs that would make the server call into private networks (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from cascade.errors import BadRequest


def check_callback_url(url: str, *, allow_private: bool = False) -> None:
    """Raise ``BadRequest`` unless ``url`` is http(s) to a host whose every address is public.

    Checked at submission and again before each delivery (DNS can change in between).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest("callback_url must be an absolute http(s) URL")
    if len(url) > 2000:
        raise BadRequest("callback_url is longer than 2000 characters")
    if parts.username or parts.password:
        raise BadRequest("callback_url must not carry credentials")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise BadRequest(f"callback_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise BadRequest(
                "callback_url points at a private, loopback or reserved address; "
                "refused (set CASCADE_CALLBACK_ALLOW_PRIVATE=true for internal callbacks)"
            )
