"""The webhook POST, connected to the address that was checked: the callback host is resolved
once, every address must be public (``policy.callable_addresses``) unless the host is allowlisted,
and the connection goes to the first of them — the URL's host kept in the Host header and, for
https, in SNI and the certificate check. No second lookup, so DNS rebinding has nothing to answer.
No proxies from the environment and no redirects (either would connect somewhere unchecked)."""

from __future__ import annotations

import httpx

from shared.errors import Invalid
from shared.webhooks.policy import Resolver, callable_addresses


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    allowlist: frozenset[str],
    resolver: Resolver | None = None,
) -> httpx.Response:
    """Raises ``Invalid`` (refused address, not http(s)), ``httpx.InvalidURL``, ``policy.Unresolved``
    or an ``httpx.HTTPError`` (connection, TLS, timeout)."""
    target = httpx.URL(url)
    if target.scheme not in ("http", "https") or not target.host:
        raise Invalid("callback URL must be http(s) with a host")
    address = callable_addresses(target.host, target.port or DEFAULT_PORTS[target.scheme], allowlist, resolver)[0]
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    with httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False) as client:
        return client.post(
            target.copy_with(host=address),
            content=body,
            headers={**headers, "host": target.netloc.decode("ascii")},
            extensions=extensions,
        )


DEFAULT_PORTS = {"http": 80, "https": 443}
