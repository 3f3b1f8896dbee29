"""Run every benchmark module and print one table (optionally write it to a file).

Usage: python -m bench [--only credentials,tokens,server] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

from bench.common import Figure, Unavailable

MODULES = (
    "credentials",
    "tokens",
    "dpop",
    "revocation",
    "upstream",
    "server",
    "peer",
    "auth_layers",
    "replicas",
    "issuer",
)


def render(figures: list[Figure], command: str, modules: dict[str, str] | None = None) -> str:
    """The markdown table; `modules` maps a section to the benchmark module that measures it."""
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {time.strftime('%Y-%m-%d')} "
        f"({platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}). Each figure is measured beside its baseline in the same run;",
        "ratio = figure / baseline (lower is better for times).",
    ]
    section = None
    for fig in figures:
        if fig.section != section:
            section = fig.section
            lines += ["", f"## {section}", ""]
            if modules and section in modules:
                lines += [f"`python -m bench --only {modules[section]}`", ""]
            lines += [
                "| figure | value | baseline | baseline value | ratio | goal |",
                "| --- | ---: | --- | ---: | ---: | --- |",
            ]
        base = f"{fig.baseline_value:,.3f} {fig.unit}" if fig.baseline_value is not None else ""
        ratio = f"{fig.ratio:.3f}x" if fig.ratio is not None else ""
        lines.append(
            f"| {fig.name} | {fig.value:,.3f} {fig.unit} | {fig.baseline_name or ''} "
            f"| {base} | {ratio} | {fig.goal or ''} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", default=",".join(MODULES))
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args(argv)
    figures: list[Figure] = []
    modules: dict[str, str] = {}
    skipped: list[str] = []
    for name in args.only.split(","):
        if name not in MODULES:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(MODULES)}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            measured = importlib.import_module(f"bench.{name}").run()
            figures += measured
            modules.update((fig.section, name) for fig in measured)
        except Unavailable as exc:
            skipped.append(name)
            print(f"skipped {name}: {exc}", file=sys.stderr)
    table = render(figures, "make bench", modules)
    print(table)
    if args.write is not None and args.only == ",".join(MODULES) and not skipped:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(table)
        print(f"wrote {args.write}", file=sys.stderr)
    elif args.write is not None:
        print(
            f"did not write {args.write}: it records only a run of every benchmark", file=sys.stderr
        )
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
