"""`mcp-warden keygen` and `mcp-warden cred ...`: the operator's credential commands.

Values are read from stdin when it is not a terminal (one trailing newline
is dropped, so `echo KEY | mcp-warden cred set NAME` stores KEY), otherwise
from a prompt that does not echo. They are never taken from argv, where
`ps` and shell history would see them. Only `cred get` prints a value.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from mcp_warden.cli import settings
from mcp_warden.config import Settings
from mcp_warden.credentials.auditlog import RotationLog
from mcp_warden.credentials.envelope import generate_key, parse_key
from mcp_warden.credentials.fernet_import import import_fernet, parse_fernet_key
from mcp_warden.credentials.rekey import rekey
from mcp_warden.credentials.rotation import Check, CredentialAge, Rotator, credential_ages
from mcp_warden.credentials.store import CredentialStore, check_name, not_found
from mcp_warden.errors import ConfigError


@click.command()
def keygen() -> None:
    """Print a new MCP_ENCRYPTION_KEY (64 hex characters)."""
    click.echo(generate_key())


@click.group()
def cred() -> None:
    """Encrypted credentials: set, read, rotate, audit, re-key."""


@cred.command("set")
@click.argument("name")
@click.pass_context
def set_(ctx: click.Context, name: str) -> None:
    """Create or replace NAME; the value comes from stdin or a no-echo prompt."""
    rotator = Rotator.from_settings(settings(ctx))
    action = rotator.set(check_name(name), read_value(name))
    click.echo(f"{name}: {action}")


@cred.command()
@click.argument("name")
@click.pass_context
def get(ctx: click.Context, name: str) -> None:
    """Print the plaintext of NAME (operator use) followed by a newline."""
    value = CredentialStore.from_settings(settings(ctx)).get(name)
    sys.stdout.buffer.write(value.encode("utf-8") + b"\n")
    sys.stdout.buffer.flush()


@cred.command("list")
@click.pass_context
def list_(ctx: click.Context) -> None:
    """Names, ages and whether rotation is due; never values."""
    s = settings(ctx)
    ages = credential_ages(s.credentials_file, _log(s))
    if not ages:
        click.echo(f"no credentials in {s.credentials_file}")
        return
    now = datetime.now(UTC)
    width = max(len("NAME"), *(len(age.name) for age in ages))
    click.echo(f"{'NAME':<{width}}  {'AGE':>8}  DUE (max {s.rotation_max_age_days} d)")
    for age in ages:
        due = "yes" if age.is_due(s.rotation_max_age_days, now) else "no"
        click.echo(f"{age.name:<{width}}  {_age_text(age, now):>8}  {due}")


@cred.command()
@click.argument("name")
@click.option(
    "--verify",
    is_flag=True,
    help="Try the new value against the upstream (Scavio `usage`) before it replaces the old one.",
)
@click.pass_context
def rotate(ctx: click.Context, name: str, verify: bool) -> None:
    """Replace NAME with a new value from stdin or a no-echo prompt; logged."""
    run_rotate(ctx, name, check=_upstream_check(ctx, name) if verify else None)


def _upstream_check(ctx: click.Context, name: str) -> Check:
    """A check that asks the upstream using NAME whether the new value works."""
    s = settings(ctx)
    if name != s.scavio_credential:
        raise click.UsageError(
            f"--verify knows how to check {s.scavio_credential!r} (the Scavio key, "
            "MCP_SCAVIO_CREDENTIAL) only; rotate other credentials without it"
        )

    def check(value: str) -> None:
        # Only `--verify` needs the upstream client.
        from mcp_warden.scavio.verify import check_api_key  # noqa: PLC0415

        asyncio.run(check_api_key(s, value))

    return check


def run_rotate(ctx: click.Context, name: str, check: Check | None = None) -> None:
    """What `cred rotate` does; `check` sees the new value before anything is written."""
    rotator = Rotator.from_settings(settings(ctx))
    if check_name(name) not in rotator.store.names():
        raise not_found(rotator.store.path, name)  # before asking for a value
    rotator.rotate(name, read_value(name), check=check)
    click.echo(f"{name}: rotated")


@cred.command()
@click.argument("name")
@click.pass_context
def rollback(ctx: click.Context, name: str) -> None:
    """Swap NAME with its previous value (undoes the last rotation); logged."""
    Rotator.from_settings(settings(ctx)).rollback(name)
    click.echo(f"{name}: rolled back to its previous value")


@cred.command()
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Remove NAME (its value is kept as the previous value); logged."""
    Rotator.from_settings(settings(ctx)).delete(name)
    click.echo(f"{name}: deleted (`mcp-warden cred rollback {name}` restores it)")


@cred.command()
@click.option(
    "--max-age-days",
    type=click.IntRange(min=1),
    default=None,
    help="default: MCP_ROTATION_MAX_AGE_DAYS (30)",
)
@click.pass_context
def due(ctx: click.Context, max_age_days: int | None) -> None:
    """Exit 1 and name every credential due for rotation; exit 0 when none is."""
    s = settings(ctx)
    limit = max_age_days or s.rotation_max_age_days
    now = datetime.now(UTC)
    overdue = [a for a in credential_ages(s.credentials_file, _log(s)) if a.is_due(limit, now)]
    for age in overdue:
        click.echo(f"{age.name}: due (age {_age_text(age, now)}, max {limit} d)")
    if overdue:
        ctx.exit(1)
    click.echo(f"no credential is due (max {limit} d)")


@cred.command()
@click.option(
    "--verify",
    is_flag=True,
    help="check every line, the hash chain and its keyed MACs (needs MCP_ENCRYPTION_KEY)",
)
@click.pass_context
def log(ctx: click.Context, verify: bool) -> None:
    """Print the rotation log, or verify it (exit 1 when a line was changed)."""
    s = settings(ctx)
    if verify:
        _verify_log(s)
        return
    for event in _log(s).events():
        stamp = event.time.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{stamp}Z  {event.action:<13} {shown(event.credential)}  by {shown(event.actor)}"
        )


def _verify_log(s: Settings) -> None:
    new = s.new_encryption_key
    rotation_log = RotationLog(
        s.rotation_log,
        s.actor,
        key=parse_key(s.encryption_key) if s.encryption_key is not None else None,
        next_key=parse_key(new, "MCP_NEW_ENCRYPTION_KEY") if new is not None else None,
    )
    summary = rotation_log.verify()
    path, legacy = rotation_log.path, summary.legacy
    if summary.lines and legacy == summary.lines:
        _warn(
            f"no line of {path} is keyed: it was written before mcp-warden keyed its log (the "
            "next logged change keys it from then on), or someone removed its keys; its hash "
            "chain alone does not show who wrote it"
        )
    elif legacy:
        _warn(
            f"lines 1-{legacy} of {path} predate the keyed log; line {legacy + 1}, the first "
            "keyed line, vouches for them only as they were when it was written"
        )
    click.echo(
        f"{path}: {summary.lines} lines verified ({summary.lines - legacy} keyed); head sha256 "
        f"{summary.head} (record it: a chain cannot show lines cut from the end)"
    )


@cred.command("verify")
@click.option(
    "--bind",
    is_flag=True,
    help="first bind the entries written outside mcp-warden (check their values first)",
)
@click.pass_context
def verify_(ctx: click.Context, bind: bool) -> None:
    """Check that every entry opens and is bound to its name (exit 1 when one is not)."""
    s = settings(ctx)
    if bind:
        for name in Rotator.from_settings(s).bind():
            click.echo(f"{shown(name)}: bound now")
    store = CredentialStore.from_settings(s)
    failed = unbound = 0
    checks = store.check()
    for check in checks:
        label = shown(check.name) + (" (previous value)" if check.section == "previous" else "")
        if check.status == "ok":
            click.echo(f"{label}: ok")
        elif check.status == "unbound":
            unbound += 1
            click.echo(f"{label}: unbound ({check.detail})")
        else:
            failed += 1
            click.echo(f"{label}: {check.status.upper()}: {shown(check.detail)}")
    if unbound:
        _warn(
            f"{unbound} entr{'y is' if unbound == 1 else 'ies are'} not bound: added or replaced "
            "outside mcp-warden (a Node service?); check the values, then bind them with "
            "`mcp-warden cred verify --bind`"
        )
    if failed:
        click.echo(
            f"mcp-warden: {failed} entr{'y' if failed == 1 else 'ies'} of {store.path} failed the "
            "check; set each again with `mcp-warden cred set NAME` or restore the store, its "
            ".previous and .bindings files from a backup",
            err=True,
        )
        ctx.exit(1)
    click.echo(f"{store.path}: {len(checks) - unbound} of {len(checks)} entries bound and opening")


@cred.command("rekey")
@click.pass_context
def rekey_(ctx: click.Context) -> None:
    """Re-encrypt every entry under MCP_NEW_ENCRYPTION_KEY (resumes an interrupted run)."""
    s = settings(ctx)
    old = parse_key(s.require_encryption_key())
    if s.new_encryption_key is None:
        raise ConfigError(
            "MCP_NEW_ENCRYPTION_KEY is not set; create it with `mcp-warden keygen` and export "
            "it, or name a 0600 file holding it in MCP_NEW_ENCRYPTION_KEY_FILE"
        )
    new = parse_key(s.new_encryption_key, "MCP_NEW_ENCRYPTION_KEY")
    result = rekey(s.credentials_file, old, new, _log(s))
    resumed = " (finished an interrupted re-key)" if result.resumed else ""
    click.echo(
        f"{s.credentials_file}: {result.credentials} credentials and {result.previous} previous "
        f"values are under the new key{resumed}; now set MCP_ENCRYPTION_KEY to the new key "
        "everywhere the store is read, unset MCP_NEW_ENCRYPTION_KEY, and restart those services"
    )


@cred.command("import-fernet")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def import_fernet_(ctx: click.Context, file: Path) -> None:
    """Import the tutorial's Fernet store FILE (key in MCP_FERNET_KEY)."""
    s = settings(ctx)
    fernet = parse_fernet_key(s.fernet_key)
    names = import_fernet(file, fernet, Rotator.from_settings(s))
    click.echo(f"imported {len(names)} credential(s) from {file}: {', '.join(names)}")


def read_value(name: str) -> str:
    """The new value of `name`: all of stdin (minus one newline) or a no-echo prompt."""
    stdin = sys.stdin.buffer
    if stdin.isatty():
        value: str = click.prompt(
            f"value of {name}",
            hide_input=True,
            confirmation_prompt=True,
            default="",
            show_default=False,
        )
    else:
        try:
            value = stdin.read().decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"the value of {name} on stdin is not UTF-8 text") from None
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
    if not value:
        click.echo(f"mcp-warden: warning: the value of {name} is empty", err=True)
    return value


def _log(s: Settings) -> RotationLog:
    """The log for reading its events (no key needed; `cred log --verify` uses one)."""
    return RotationLog(s.rotation_log, s.actor)


def shown(text: str) -> str:
    """`text` with non-printable characters escaped, so a displayed log line stays one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _warn(message: str) -> None:
    click.echo(f"mcp-warden: warning: {message}", err=True)


def _age_text(age: CredentialAge, now: datetime) -> str:
    delta = age.age(now)
    return "unknown" if delta is None else f"{delta.days} d"
