"""The shipped Prometheus files: the scrape config and the alert rules pass promtool, and the
alerts fire (and stay quiet) as `alerts_test.yml` says, on series shaped like our metrics.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.procs import REPO
from tests.support.prometheus import promtool_binary

DEPLOY = REPO / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path = DEPLOY) -> None:
    done = subprocess.run(
        [promtool_binary(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_scrape_config_and_its_rules_are_valid() -> None:
    promtool("check", "config", "prometheus.yml")
    promtool("check", "rules", "alerts.yml")


def test_the_alerts_fire_on_a_stale_view_a_failing_credential_and_no_keys() -> None:
    promtool("test", "rules", "alerts_test.yml", cwd=Path(__file__).parent)
