"""Prometheus metrics: `catalog` declares every metric and the calls that update them;
`endpoint` serves `/metrics` on its own address (one process, or a `--workers` supervisor).

Nothing here imports the server or the issuer, so any module may report to `catalog`.
"""
