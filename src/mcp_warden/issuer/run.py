"""Running the issuer service on uvicorn: TLS, or plain HTTP where that is safe.

The service serves TLS itself (`--certfile` and `--keyfile`), unless
MCP_TOKEN_ISSUER is a plain http URL on a loopback host (a local test) or
`--behind-tls-proxy` says a proxy terminates TLS in front of it (then
MCP_TOKEN_ISSUER is the proxy's https URL). Behind a proxy, uvicorn takes the
client address from X-Forwarded-For only when the proxy's address is in
FORWARDED_ALLOW_IPS (uvicorn's variable, default 127.0.0.1): set it, or the
failure limit and the audit lines see the proxy's address for every client.

Everything is checked before the socket accepts: the issuer URL, the
certificate and key (loaded once here, the key file 0600), the signing key,
the registry, the denylist and the audit log; any problem is a ConfigError (exit 2) naming the fix.

The socket is bound here so that `--port 0` works and the banner
(`mcp-warden: issuer serving on URL`, on stderr) comes once it accepts.
SIGTERM and SIGINT drain in-flight requests, then close the stores.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from mcp_warden.config import Settings
from mcp_warden.errors import ConfigError, WardenError
from mcp_warden.issuer.app import issuer_app
from mcp_warden.issuer.ratelimit import FailureLimiter
from mcp_warden.issuer.service import Issuer, check_issuer_url
from mcp_warden.metrics.endpoint import process_endpoint
from mcp_warden.server.audit import AuditLog
from mcp_warden.server.run import bind, configure_logging, run_uvicorn
from mcp_warden.urls import redacted

BANNER = "mcp-warden: issuer serving on "


def serve_issuer(
    settings: Settings,
    *,
    host: str,
    port: int,
    certfile: Path | None,
    keyfile: Path | None,
    behind_tls_proxy: bool,
) -> None:
    """Serve the issuer until SIGTERM or SIGINT."""
    configure_logging()
    check_issuer_url(settings.token_issuer)
    tls = _check_tls(settings.token_issuer, certfile, keyfile, behind_tls_proxy)
    sock = bind(host, port)
    try:
        try:
            issuer = Issuer.open(settings)
        except ConfigError:
            raise
        except WardenError as exc:
            raise ConfigError(f"cannot start the issuer: {exc}") from None
        try:
            audit = AuditLog.open(settings.audit_log)
        except BaseException:
            issuer.close()
            raise
    except BaseException:
        sock.close()
        raise
    app = issuer_app(issuer, audit, FailureLimiter(settings.issuer_auth_failures))
    bound = int(sock.getsockname()[1])
    scheme = "https" if tls else "http"
    shown_host = f"[{host}]" if ":" in host else host
    banner = f"{BANNER}{scheme}://{shown_host}:{bound} for issuer {redacted(settings.token_issuer)}"
    with process_endpoint(settings, public_port=port):  # a failure here exits the process
        run_uvicorn(
            app,
            sock,
            banner=banner,
            ssl_certfile=str(certfile) if tls and certfile else None,
            ssl_keyfile=str(keyfile) if tls and keyfile else None,
        )


def _check_tls(
    issuer: str, certfile: Path | None, keyfile: Path | None, behind_tls_proxy: bool
) -> bool:
    """True when this process serves TLS; ConfigError for a combination that is not safe."""
    if (certfile is None) != (keyfile is None):
        raise ConfigError("give --certfile and --keyfile together")
    if certfile is not None and keyfile is not None:
        if behind_tls_proxy:
            raise ConfigError("--behind-tls-proxy serves plain HTTP; drop --certfile/--keyfile")
        _check_key_file(keyfile)
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                str(certfile), str(keyfile)
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the TLS certificate {certfile} and key {keyfile} "
                f"({getattr(exc, 'strerror', None) or exc}); give a PEM certificate chain and "
                "its private key"
            ) from None
        return True
    parts = urlsplit(issuer)
    if parts.scheme == "https" and not behind_tls_proxy:
        raise ConfigError(
            f"MCP_TOKEN_ISSUER {redacted(issuer)} is https: give --certfile and --keyfile, or "
            "--behind-tls-proxy when a proxy terminates TLS in front of this process"
        )
    return False


def _check_key_file(keyfile: Path) -> None:
    try:
        mode = os.stat(keyfile).st_mode & 0o777
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS key {keyfile}: {exc.strerror}") from None
    if mode & 0o077:
        raise ConfigError(
            f"the TLS key {keyfile} is readable by others (mode {mode:o}); chmod 600 it"
        )
