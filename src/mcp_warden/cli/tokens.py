"""`mcp-warden keys ...` and `mcp-warden token ...`: signing keys, minting, verifying, revoking.

A TOKEN argument may be `-` to read the token from stdin, so it need not sit
in shell history. Only `token mint` prints a token (the user asked for it);
errors never do.
"""

from __future__ import annotations

import json
import sys
import time
from typing import NoReturn

import click

from mcp_warden.cli import settings
from mcp_warden.errors import ConfigError
from mcp_warden.tokens.claims import Claims
from mcp_warden.tokens.errors import TokenError
from mcp_warden.tokens.issuer import mint
from mcp_warden.tokens.keys import KeyDir
from mcp_warden.tokens.revocation import Denylist, open_denylist, store_location, sub_cutoff
from mcp_warden.tokens.verifier import KID, Verifier


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _read_token(arg: str) -> str:
    text = sys.stdin.read(64 * 1024) if arg == "-" else arg
    return text.strip()


# -- keys -------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Signing keys in MCP_KEYS_DIR and the JWKS published beside them."""


@keys.command("new")
@click.pass_context
def keys_new(ctx: click.Context) -> None:
    """Make a new active signing key; the old one stays published until retired."""
    info = KeyDir(settings(ctx).keys_dir).new()
    click.echo(info.kid)


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """Show every live key: kid, created, active, retirable."""
    cfg = settings(ctx)
    now = time.time()
    click.echo(f"{'kid':<43}  {'created':<20}  {'active':<6}  retirable")
    for info in KeyDir(cfg.keys_dir).live_keys():
        until = info.retirable_at(cfg.token_max_ttl)
        if until is None:
            retirable = "no (signing)"
        elif now >= until:
            retirable = "yes"
        else:
            retirable = f"after {_iso(until)}"
        active = "yes" if info.active else "no"
        click.echo(f"{info.kid:<43}  {_iso(info.created):<20}  {active:<6}  {retirable}")


class _KidCommand(click.Command):
    """A command whose KID argument may begin with "-" (base64url), and is never an option.

    One kid in 64 starts with "-"; click would read it as short options
    (`keys retire -cQ...` -> "No such option '-c'"). An argument that is a
    whole kid is moved after "--" before click parses the rest.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            kids = [a for a in args if KID.fullmatch(a)]
            args = [a for a in args if not KID.fullmatch(a)] + ["--", *kids]
        return super().parse_args(ctx, args)


@keys.command("retire", cls=_KidCommand)
@click.argument("kid")
@click.option("--force", is_flag=True, help="Retire even while tokens it signed may be valid.")
@click.pass_context
def keys_retire(ctx: click.Context, kid: str, force: bool) -> None:
    """Unpublish KID and delete its private key; its tokens are refused from then on."""
    cfg = settings(ctx)
    KeyDir(cfg.keys_dir).retire(kid, max_ttl=cfg.token_max_ttl, force=force)
    click.echo(f"retired {kid}", err=True)


# -- token ------------------------------------------------------------------


@click.group()
def token() -> None:
    """Mint, verify and revoke access tokens."""


@token.command("mint")
@click.option("--tools", required=True, help="Comma-separated tool names the token may call.")
@click.option("--ttl", required=True, type=int, help="Lifetime in seconds (max MCP_TOKEN_MAX_TTL).")
@click.option("--sub", required=True, help="Subject: who or what the token is for.")
@click.option("--aud", default=None, help="Audience (default MCP_TOKEN_AUDIENCE).")
@click.option(
    "--dpop-jkt",
    default=None,
    metavar="THUMBPRINT",
    help="Bind the token to a DPoP key (RFC 9449): the base64url RFC 7638 SHA-256 thumbprint "
    "of the client's public JWK; the token is then useless without that key's proofs.",
)
@click.pass_context
def token_mint(
    ctx: click.Context, *, tools: str, ttl: int, sub: str, aud: str | None, dpop_jkt: str | None
) -> None:
    """Print a new signed access token on stdout."""
    cfg = settings(ctx)
    click.echo(
        mint(
            cfg.keys_dir,
            issuer=cfg.token_issuer,
            sub=sub,
            tools=[t.strip() for t in tools.split(",")],
            ttl=ttl,
            audience=aud or cfg.token_audience,
            max_ttl=cfg.token_max_ttl,
            dpop_jkt=dpop_jkt,
        )
    )


def _verify(ctx: click.Context, denylist: Denylist, raw: str) -> Claims:
    verifier = Verifier.from_settings(settings(ctx), denylist)
    try:
        return verifier.verify(raw)
    finally:
        verifier.close()


def _refused(exc: TokenError) -> NoReturn:
    click.echo(f"mcp-warden: {exc.reason}: {exc}", err=True)
    sys.exit(1)


@token.command("verify")
@click.argument("token_arg", metavar="TOKEN")
@click.option("--tool", default=None, help="Also require that the token names this tool.")
@click.pass_context
def token_verify(ctx: click.Context, token_arg: str, tool: str | None) -> None:
    """Print the claims as JSON and exit 0, or print the reason and exit 1."""
    denylist = open_denylist(settings(ctx))
    try:
        claims = _verify(ctx, denylist, _read_token(token_arg))
    except TokenError as exc:
        _refused(exc)
    finally:
        denylist.close()
    if tool is not None and not claims.allows(tool):
        click.echo(
            f"mcp-warden: tool_not_allowed: the token does not name tool {tool[:128]!r}", err=True
        )
        sys.exit(1)
    click.echo(json.dumps(claims.as_json(), indent=2))


@token.command("revoke")
@click.argument("token_arg", metavar="[TOKEN]", required=False)
@click.option("--jti", default=None, help="Revoke the token with this jti.")
@click.option("--exp", type=int, default=None, help="With --jti: its exp (default now + max TTL).")
@click.option(
    "--sub",
    default=None,
    help="Revoke every token of this subject issued so far (and for MCP_TOKEN_LEEWAY seconds).",
)
@click.pass_context
def token_revoke(
    ctx: click.Context, token_arg: str | None, jti: str | None, exp: int | None, sub: str | None
) -> None:
    """Revoke one token (TOKEN or --jti) or every token of a subject (--sub).

    A TOKEN must verify (signature, key, issuer, audience); one that has
    already expired needs no revoking and is reported as such. The revocation
    goes to MCP_REVOCATION_URL, which must be the servers' shared store.
    """
    cfg = settings(ctx)
    if sum(x is not None for x in (token_arg, jti, sub)) != 1:
        raise click.UsageError("give exactly one of TOKEN, --jti ID or --sub ID")
    if exp is not None and jti is None:
        raise click.UsageError("--exp goes with --jti")
    if cfg.revocation_url == "memory://":
        raise ConfigError(
            "token revoke cannot use MCP_REVOCATION_URL=memory://: that list lives only in "
            "this process, so no server would see the revocation; set it to the servers' "
            "sqlite:////absolute/path or redis://host:port/db"
        )
    now = int(time.time())
    # Only revoking a TOKEN needs the shared list loaded (to say "already revoked").
    denylist = open_denylist(cfg, follow=token_arg is not None)
    where = store_location(cfg.revocation_url)
    try:
        if sub is not None:
            at = sub_cutoff(now, cfg.token_leeway)
            denylist.revoke_sub(sub, at)
            click.echo(
                f"revoked every token of sub {sub!r} issued until {_iso(at)} "
                f"(now + MCP_TOKEN_LEEWAY) in {where}",
                err=True,
            )
        elif jti is not None:
            until = exp if exp is not None else now + cfg.token_max_ttl
            denylist.revoke_jti(jti, until)
            click.echo(f"revoked jti {jti!r} until {_iso(until)} in {where}", err=True)
        else:
            _revoke_token(ctx, denylist, _read_token(token_arg or "-"), where)
    finally:
        denylist.close()


def _revoke_token(ctx: click.Context, denylist: Denylist, raw: str, where: str) -> None:
    try:
        claims = _verify(ctx, denylist, raw)
    except TokenError as exc:
        if exc.reason == "expired":
            click.echo(f"token already expired ({exc}); nothing to revoke", err=True)
            return
        if exc.reason == "revoked":
            click.echo("token already revoked", err=True)
            return
        _refused(exc)
    denylist.revoke_jti(claims.jti, claims.exp)
    click.echo(f"revoked jti {claims.jti!r} until {_iso(claims.exp)} in {where}", err=True)
