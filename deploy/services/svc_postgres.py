"""PostgreSQL for development and tests: a private cluster from Debian's server packages (standard library only)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

from svc_common import HOST, POSTGRES_DB, ServiceError, Settings, log_tail, port_open, require_tool, wait_until


class Postgres:
    """A private PostgreSQL cluster from Debian's packages; as root it runs as the `postgres` system user."""

    name = "postgres"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = settings.postgres_port
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # The postgres user cannot enter root's private folders, so the cluster lives in a folder of its own.
            digest = hashlib.sha256(str(settings.state).encode()).hexdigest()[:10]
            self.state = Path("/var/tmp") / f"bottega-postgres-{digest}"
        else:
            self.state = settings.state / "postgres"
        self.data = self.state / "data"
        self.log = self.state / "postgres.log"

    def bindir(self) -> Path:
        candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if not candidates:
            raise ServiceError("PostgreSQL server binaries are missing: run `make setup` (installs `postgresql`)")
        return candidates[-1].parent

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_root:
            cmd = [require_tool("runuser"), "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd="/")
        if check and done.returncode != 0:
            raise ServiceError(
                f"[postgres] {' '.join(args)} failed:\n{done.stdout}{done.stderr}\n"
                f"Last lines of {self.log}:\n{log_tail(self.log)}"
            )
        return done

    def running(self) -> bool:
        return (
            self.data.exists()
            and self.run(str(self.bindir() / "pg_ctl"), "status", "-D", str(self.data), check=False).returncode == 0
        )

    def ready(self) -> bool:
        done = self.run(str(self.bindir() / "pg_isready"), "-h", HOST, "-p", str(self.port), check=False)
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        psql = self.bindir() / "psql"
        exe = str(psql) if psql.exists() else require_tool("psql")
        return self.run(
            exe, "-h", HOST, "-p", str(self.port), "-U", "postgres", "-d", database, "-tAc", sql
        ).stdout.strip()

    def initialise(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.state, "postgres", "postgres")
        self.state.chmod(0o700)
        if not (self.data / "PG_VERSION").exists():
            self.run(
                str(self.bindir() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            )

    def up(self) -> None:
        if self.running() and self.ready():
            print(f"[postgres] already running (port {self.port})")
            return
        started = time.monotonic()
        if not self.running():
            if port_open(self.port):
                raise ServiceError(
                    f"[postgres] port {self.port} is taken by another process; set BOTTEGA_POSTGRES_PORT to a free port"
                )
            self.initialise()
            options = (
                f"-p {self.port} -k {self.state} -c listen_addresses={HOST} -c max_connections=200 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            self.run(
                str(self.bindir() / "pg_ctl"),
                "start",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
            )
        wait_until("[postgres]", self.ready, 60, self.log, self.running)
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{POSTGRES_DB}'") != "1":
            self.psql(f"CREATE DATABASE {POSTGRES_DB}")
        self.psql("SELECT 1", POSTGRES_DB)
        print(f"[postgres] ready on {HOST}:{self.port} in {time.monotonic() - started:.1f} s (log: {self.log})")

    def down(self) -> None:
        if not self.running():
            print("[postgres] not running")
            return
        self.run(str(self.bindir() / "pg_ctl"), "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")
        print("[postgres] stopped")

    def fetch(self) -> None:
        self.bindir()

    def status(self) -> str:
        if not self.running():
            return f"{self.name:<10} stopped   port {self.port:<6} log {self.log}"
        health = "ready" if self.ready() else "starting"
        return f"{self.name:<10} {health:<9} port {self.port:<6} data {self.data} log {self.log}"
