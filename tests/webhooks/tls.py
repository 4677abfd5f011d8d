"""A local TLS listener for the webhook tests."""

import socket
import ssl
import subprocess
import threading


class tls_server:  # noqa: N801 (a context manager used like a function)
    """A TLS listener on 127.0.0.1 with a self-signed certificate that records the SNI it is sent."""

    def __init__(self, tmp_path):
        cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=hooks.tls.test"]
            + ["-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.sni_callback = lambda sock, name, ctx: self.sni.append(name)
        self.sni: list[str] = []

    def __enter__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()
        return self

    def serve(self):
        conn, _ = self.listener.accept()
        try:
            with self.context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass  # the client refuses the certificate

    def __exit__(self, *exc):
        self.listener.close()
