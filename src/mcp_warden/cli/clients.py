"""`mcp-warden clients ...`: the OAuth clients the issuer service knows (MCP_CLIENTS_URL).

Only `add` and `rotate-secret` print a secret, once, in one JSON object on
stdout; the registry keeps its SHA-256 alone. Everything else goes to stderr.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click

from mcp_warden.cli import settings
from mcp_warden.errors import ConfigError
from mcp_warden.issuer.clients import (
    DEFAULT_CLIENT_TTL,
    MAX_JWK_BYTES,
    Client,
    ClientsError,
    check_name,
    check_tools,
    check_ttl,
    client_jwk,
    hash_secret,
    new_client_id,
    new_secret,
)
from mcp_warden.issuer.registry import Registry, RegistryUnconfirmed, open_registry


def _tools(text: str) -> tuple[str, ...]:
    return check_tools(text.split(","))


def _read_jwk(path: Path) -> dict[str, str]:
    """The public JWK in `path` (at most 16 KiB, strict JSON: no name twice)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_JWK_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"the JWK file {path} does not exist; give the client's public JWK"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the JWK file {path}: {exc.strerror}") from None
    if len(data) > MAX_JWK_BYTES:
        raise ClientsError(
            f"the JWK file {path} is over {MAX_JWK_BYTES} bytes; give one public JWK"
        )

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        if len({name for name, _ in pairs}) != len(pairs):
            raise ValueError("a name appears twice")
        return dict(pairs)

    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=unique)
    except (UnicodeDecodeError, ValueError):
        raise ClientsError(
            f"the JWK file {path} is not one JSON object; give one public JWK"
        ) from None
    return client_jwk(doc, what=f"the JWK in {path}")


def _echo_json(doc: dict[str, object]) -> None:
    click.echo(json.dumps(doc))


def _open(ctx: click.Context) -> Registry:
    return open_registry(settings(ctx))


@click.group()
def clients() -> None:
    """OAuth clients of the issuer service (`mcp-warden issuer serve`), in MCP_CLIENTS_URL."""


@clients.command("add")
@click.argument("name")
@click.option("--tools", required=True, help="Comma-separated tools the client may be granted.")
@click.option(
    "--ttl",
    type=int,
    default=None,
    help=f"Token lifetime in seconds (default {DEFAULT_CLIENT_TTL}, at most MCP_TOKEN_MAX_TTL).",
)
@click.option(
    "--jwk",
    "jwk_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The client's public JWK (EdDSA, ES256, RS256 >= 2048 bits): a private_key_jwt "
    "client with no secret.",
)
@click.option(
    "--require-dpop",
    is_flag=True,
    help="Issue this client DPoP-bound tokens only (RFC 9449): a token request without a "
    "DPoP proof is refused.",
)
@click.pass_context
def clients_add(
    ctx: click.Context,
    *,
    name: str,
    tools: str,
    ttl: int | None,
    jwk_file: Path | None,
    require_dpop: bool,
) -> None:
    """Register a client; print {"client_id", "client_secret"} once (the secret is not kept)."""
    cfg = settings(ctx)
    check_name(name)
    allowed = _tools(tools)
    lifetime = check_ttl(
        ttl if ttl is not None else min(DEFAULT_CLIENT_TTL, cfg.token_max_ttl), cfg.token_max_ttl
    )
    jwk = _read_jwk(jwk_file) if jwk_file is not None else None
    secret = None if jwk is not None else new_secret()
    client = Client(
        client_id=new_client_id(),
        name=name,
        tools=allowed,
        ttl=lifetime,
        created=int(time.time()),
        secret_hash=hash_secret(secret) if secret is not None else None,
        jwk=jwk,
        require_dpop=require_dpop,
    )
    registry = _open(ctx)
    try:
        registry.add(client)
    except RegistryUnconfirmed:
        # The client exists on the primary: its secret, shown once, must not be lost with it.
        _echo_registered(client, secret)
        raise
    finally:
        where = registry.description
        registry.close()
    _echo_registered(client, secret)
    click.echo(f"registered client {client.client_id} ({name}) in {where}", err=True)


def _echo_registered(client: Client, secret: str | None) -> None:
    """The client's id and its secret (printed this once), or its authentication method."""
    if secret is not None:
        _echo_json({"client_id": client.client_id, "client_secret": secret})
    else:
        _echo_json({"client_id": client.client_id, "token_endpoint_auth_method": "private_key_jwt"})


@clients.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@click.pass_context
def clients_list(ctx: click.Context, as_json: bool) -> None:
    """Show every client: id, name, authentication, token lifetime, tools. Never a secret."""
    registry = _open(ctx)
    try:
        found = registry.all()
    finally:
        registry.close()
    if as_json:
        click.echo(json.dumps([c.listing() for c in found], indent=2))
        return
    click.echo(f"{'client_id':<29}  {'name':<20}  {'auth':<23}  {'dpop':<8}  {'ttl':>6}  tools")
    for c in found:
        auth = "client_secret" if c.secret_hash is not None else f"private_key_jwt {c.algorithm}"
        dpop = "required" if c.require_dpop else "optional"
        click.echo(
            f"{c.client_id:<29}  {c.name:<20}  {auth:<23}  {dpop:<8}  {c.ttl:>6}  "
            f"{','.join(c.tools)}"
        )


@clients.command("set")
@click.argument("client_id")
@click.option("--tools", default=None, help="Comma-separated tools the client may be granted.")
@click.option("--ttl", type=int, default=None, help="Token lifetime in seconds.")
@click.option(
    "--jwk",
    "jwk_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A new public JWK for a private_key_jwt client.",
)
@click.option(
    "--require-dpop/--allow-bearer",
    "require_dpop",
    default=None,
    help="DPoP-bound tokens only (RFC 9449), or unbound bearer tokens too.",
)
@click.pass_context
def clients_set(
    ctx: click.Context,
    *,
    client_id: str,
    tools: str | None,
    ttl: int | None,
    jwk_file: Path | None,
    require_dpop: bool | None,
) -> None:
    """Change a client's tools, token lifetime or key; every issuer process uses it at once.

    Tokens it already holds keep their tools (and an unbound one stays unbound after
    --require-dpop) until they expire; revoke them with `mcp-warden token revoke --sub
    CLIENT_ID` to make a narrowing take effect now.
    """
    cfg = settings(ctx)
    if tools is None and ttl is None and jwk_file is None and require_dpop is None:
        raise click.UsageError("give --tools, --ttl, --jwk or --require-dpop/--allow-bearer")
    allowed = _tools(tools) if tools is not None else None
    lifetime = check_ttl(ttl, cfg.token_max_ttl) if ttl is not None else None
    jwk = _read_jwk(jwk_file) if jwk_file is not None else None

    def change(client: Client) -> Client:
        if jwk is not None and client.jwk is None:
            raise ClientsError(
                f"client {client.client_id} authenticates with a secret; register a "
                "private_key_jwt client with `mcp-warden clients add NAME --jwk FILE` instead"
            )
        return Client(
            client_id=client.client_id,
            name=client.name,
            tools=allowed if allowed is not None else client.tools,
            ttl=lifetime if lifetime is not None else client.ttl,
            created=client.created,
            secret_hash=client.secret_hash,
            jwk=jwk if jwk is not None else client.jwk,
            require_dpop=require_dpop if require_dpop is not None else client.require_dpop,
        )

    _update(ctx, client_id, change, "updated")


@clients.command("rotate-secret")
@click.argument("client_id")
@click.pass_context
def clients_rotate_secret(ctx: click.Context, client_id: str) -> None:
    """Give a client a new secret, printed once; the old one is refused from now on."""
    secret = new_secret()

    def change(client: Client) -> Client:
        if client.secret_hash is None:
            raise ClientsError(
                f"client {client.client_id} authenticates with a key (private_key_jwt), not a "
                "secret; give it a new key with `mcp-warden clients set ID --jwk FILE`"
            )
        return client.with_secret(secret)

    _update(ctx, client_id, change, "rotated the secret of")
    _echo_json({"client_id": client_id, "client_secret": secret})


@clients.command("remove")
@click.argument("client_id")
@click.pass_context
def clients_remove(ctx: click.Context, client_id: str) -> None:
    """Delete a client: it gets no token from now on (tokens it holds live until they expire)."""
    registry = _open(ctx)
    try:
        old = registry.remove(client_id)
        where = registry.description
    finally:
        registry.close()
    click.echo(
        f"removed client {old.client_id} ({old.name}) from {where}; its tokens stay valid until "
        f"they expire: `mcp-warden token revoke --sub {old.client_id}` refuses them now",
        err=True,
    )


def _update(
    ctx: click.Context, client_id: str, change: Callable[[Client], Client], verb: str
) -> None:
    registry = _open(ctx)
    try:
        new = registry.update(client_id, change)
        where = registry.description
    finally:
        registry.close()
    click.echo(f"{verb} client {new.client_id} ({new.name}) in {where}", err=True)
