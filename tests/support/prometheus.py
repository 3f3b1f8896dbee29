"""Scraping `/metrics` in the tests: the text, its samples, and `promtool check metrics` on it."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mcp_warden.metrics.endpoint import BANNER
from tests.support.procs import required


def promtool_binary() -> str:
    """promtool's path, or skip (fail in CI, where MCP_WARDEN_REQUIRE_PROMTOOL=1)."""
    reason = "promtool not installed (apt-get install prometheus; .ci/run does it)"
    return required(shutil.which("promtool"), reason, "MCP_WARDEN_REQUIRE_PROMTOOL")


def check_metrics(text: str) -> None:
    """`promtool check metrics` accepts `text` (format and naming lint), or the test fails."""
    done = subprocess.run(
        [promtool_binary(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def metrics_url(log: Path) -> str:
    """The URL a process announced with `mcp-warden: metrics on URL` in its log."""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(BANNER):
            return line.removeprefix(BANNER)
    raise AssertionError(f"no {BANNER.strip()!r} line in {log}")


@dataclass(frozen=True)
class Scrape:
    """One scrape of `/metrics`: its text and its samples."""

    text: str

    def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` with exactly these labels (None: there is none)."""
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def series(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample named `name`."""
        return [
            sample.labels
            for family in text_string_to_metric_families(self.text)
            for sample in family.samples
            if sample.name == name
        ]

    def names(self) -> set[str]:
        return set(re.findall(r"^# TYPE (\S+)", self.text, flags=re.MULTILINE))


def scrape(url: str) -> Scrape:
    response = httpx.get(url, timeout=10.0, trust_env=False)
    assert response.status_code == 200, response.text[:200]
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)
