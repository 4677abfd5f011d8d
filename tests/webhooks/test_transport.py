"""The webhook POST goes to the address that was checked (one lookup, no DNS-rebinding window),
keeps the URL's host for the Host header and TLS SNI, and refuses names that resolve anywhere
non-public. Local servers, an injected resolver (names that real DNS does not know)."""

import shutil

import httpx
import pytest

from shared.errors import Invalid
from shared.tools.receiver import Receiver
from shared.webhooks.transport import post
from tests.webhooks.tls import tls_server


class Resolver:
    """Answers every lookup with ``addresses``, counting the lookups."""

    def __init__(self, *addresses):
        self.addresses, self.calls = list(addresses), 0

    def __call__(self, host, port):
        self.calls += 1
        return self.addresses


def test_the_connection_goes_to_the_checked_address_with_the_host_kept():
    resolver = Resolver("127.0.0.1")
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        url = f"http://hooks.rebind.test:{port}/hook"  # not in real DNS: only the checked address can be reached
        response = post(url, b"{}", {}, timeout_s=5, allowlist=frozenset({"hooks.rebind.test"}), resolver=resolver)
    assert response.status_code == 200 and resolver.calls == 1  # resolved once, connected to that answer
    (hook,) = receiver.received
    assert hook.headers["host"] == f"hooks.rebind.test:{port}"


@pytest.mark.parametrize(
    "addresses",
    [("93.184.216.34", "127.0.0.1"), ("169.254.169.254",), ("100.100.100.200",), ("::ffff:10.0.0.1",)],
)
def test_a_name_resolving_to_any_non_public_address_is_refused_before_connecting(addresses):
    with pytest.raises(Invalid, match="non-public"):
        post(
            "https://hooks.example.org/h", b"{}", {}, timeout_s=5, allowlist=frozenset(), resolver=Resolver(*addresses)
        )


def test_malformed_urls_raise_before_any_lookup():
    resolver = Resolver("127.0.0.1")
    for url in ("http://hooks.example.org/a\r\nX-Injected: 1", "ftp://hooks.example.org/"):
        with pytest.raises((httpx.InvalidURL, Invalid)):
            post(url, b"{}", {}, timeout_s=5, allowlist=frozenset(), resolver=resolver)
    assert resolver.calls == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_is_pinned_with_the_host_name_as_sni_and_a_bad_certificate_is_a_connect_error(tmp_path):
    with tls_server(tmp_path) as server:
        url = f"https://hooks.tls.test:{server.port}/hook"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # self-signed: refused
            post(url, b"{}", {}, timeout_s=5, allowlist=frozenset({"hooks.tls.test"}), resolver=Resolver("127.0.0.1"))
    assert server.sni == ["hooks.tls.test"]
