"""Start, stop and inspect the real services the test suite runs against: Cassandra, Kafka and PostgreSQL.

No Docker engine is needed: Cassandra and Kafka are assembled from Maven Central jars into a cache outside the
repository and run with `java -cp`; PostgreSQL comes from Debian's packages and runs as a private cluster.
Standard library only, so it runs before the project's virtual environment exists.

    python3 deploy/services/svc.py fetch|up|down|status|env [cassandra kafka postgres]

Settings (environment): BOTTEGA_SERVICES_STATE (data, logs, pid files; default <repo>/.services),
BOTTEGA_SERVERS_CACHE (jars; default ~/.cache/bottega/servers), BOTTEGA_CASSANDRA_PORT (19042),
BOTTEGA_CASSANDRA_STORAGE_PORT (17000), BOTTEGA_KAFKA_PORT (19092), BOTTEGA_KAFKA_CONTROLLER_PORT (19093),
BOTTEGA_POSTGRES_PORT (15432).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import string
import subprocess
import sys
import time
import uuid
from pathlib import Path

import probes
from svc_common import (
    DEFAULT_PORTS,
    HERE,
    HOST,
    SERVICES,
    ServiceError,
    Settings,
    port_open,
    require_tool,
    wait_until,
)
from svc_postgres import Postgres

__all__ = ["DEFAULT_PORTS", "SERVICES", "Cassandra", "Kafka", "Postgres", "ServiceError", "Settings", "main"]


class JavaService:
    """A JVM server whose classpath is assembled from Maven Central by the pom.xml in its folder."""

    name = ""
    main_class = ""
    ready_line = ""
    start_timeout = 90.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = settings.state / self.name
        self.log = self.state / f"{self.name}.log"
        self.pid_file = self.state / f"{self.name}.pid"

    @property
    def pom(self) -> Path:
        return HERE / "conf" / self.name / "pom.xml"

    @property
    def lib(self) -> Path:
        digest = hashlib.sha256(self.pom.read_bytes()).hexdigest()[:12]
        return self.settings.cache / f"{self.name}-{digest}" / "lib"

    @property
    def port(self) -> int:
        raise NotImplementedError

    def fetch(self) -> None:
        marker = self.lib / ".complete"
        if marker.exists():
            return
        mvn = require_tool("mvn")
        staging = self.lib.with_name("lib.partial")
        shutil.rmtree(staging, ignore_errors=True)
        print(f"[{self.name}] fetching jars from Maven Central into {self.lib.parent}", flush=True)
        cmd = [mvn, "-q", "-B", "-f", str(self.pom), "package", f"-DoutputDirectory={staging}"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        shutil.rmtree(self.pom.parent / "target", ignore_errors=True)
        if done.returncode != 0:
            raise ServiceError(f"[{self.name}] mvn failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr}")
        shutil.rmtree(self.lib, ignore_errors=True)
        staging.rename(self.lib)
        marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if self.main_class.encode() in cmdline else None

    def jvm_args(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration and initialise storage before the JVM starts."""

    def ready(self) -> bool:
        raise NotImplementedError

    def up(self) -> None:
        if self.pid() is not None and self.ready():
            print(f"[{self.name}] already running (pid {self.pid()}, port {self.port})")
            return
        proc: subprocess.Popen[bytes] | None = None
        if self.pid() is None:
            if port_open(self.port):
                raise ServiceError(
                    f"[{self.name}] port {self.port} is taken by another process; set a free port "
                    "in the environment (see deploy/services/svc.py)"
                )
            self.fetch()
            self.state.mkdir(parents=True, exist_ok=True)
            self.prepare()
            java = require_tool("java")
            if self.log.exists():
                self.log.replace(self.log.with_suffix(".log.prev"))
            with self.log.open("ab") as out:
                proc = subprocess.Popen(
                    [java, *self.jvm_args(), self.main_class, *self.main_args()],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.state,
                    start_new_session=True,
                )
            self.pid_file.write_text(f"{proc.pid}\n")
        started = time.monotonic()
        # While the JVM starts, ask our own child whether it lives; /proc may show the launcher mid-exec.
        wait_until(
            f"[{self.name}]",
            self.ready,
            self.start_timeout,
            self.log,
            lambda: proc.poll() is None if proc is not None else self.pid() is not None,
        )
        print(f"[{self.name}] ready on {HOST}:{self.port} in {time.monotonic() - started:.1f} s (log: {self.log})")

    def main_args(self) -> list[str]:
        return []

    def log_says(self, line: str) -> bool:
        return self.log.exists() and line in self.log.read_text(errors="replace")

    def down(self) -> None:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            print(f"[{self.name}] not running")
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.pid() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        print(f"[{self.name}] stopped")

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return f"{self.name:<10} stopped   port {self.port:<6} log {self.log}"
        health = "ready" if self.ready() else "starting"
        return f"{self.name:<10} {health:<9} port {self.port:<6} pid {pid} log {self.log}"


class Cassandra(JavaService):
    name = "cassandra"
    main_class = "org.apache.cassandra.service.CassandraDaemon"
    ready_line = "Starting listening for CQL clients"
    start_timeout = 120.0

    @property
    def port(self) -> int:
        return self.settings.cassandra_port

    def prepare(self) -> None:
        template = string.Template((HERE / "conf" / "cassandra" / "cassandra.yaml.in").read_text())
        config = template.substitute(
            state=self.state, native_port=self.port, storage_port=self.settings.cassandra_storage_port
        )
        (self.state / "cassandra.yaml").write_text(config)

    def jvm_args(self) -> list[str]:
        jamm = sorted(self.lib.glob("jamm-*.jar"))
        if not jamm:
            raise ServiceError(f"[cassandra] no jamm jar in {self.lib}; delete that folder and run `make services-up`")
        opts = (HERE / "conf" / "cassandra" / "jvm17.options").read_text().split()
        return [
            "-Xms512m",
            "-Xmx1g",
            *opts,
            f"-javaagent:{jamm[-1]}",
            f"-Dcassandra.config=file://{self.state / 'cassandra.yaml'}",
            f"-Dlogback.configurationFile={HERE / 'conf' / 'cassandra' / 'logback.xml'}",
            f"-Dcassandra.logdir={self.state}",
            f"-Dcassandra.storagedir={self.state}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=100",
            "-cp",
            f"{self.lib}/*",
        ]

    def ready(self) -> bool:
        if not self.log_says(self.ready_line):
            return False
        try:
            probes.cql_query_answers(HOST, self.port)
        except (OSError, probes.ProbeError):
            return False
        return True


class Kafka(JavaService):
    name = "kafka"
    main_class = "kafka.Kafka"
    ready_line = "Kafka Server started"
    start_timeout = 60.0

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def config(self) -> Path:
        return self.state / "server.properties"

    def prepare(self) -> None:
        template = string.Template((HERE / "conf" / "kafka" / "server.properties.in").read_text())
        self.config.write_text(
            template.substitute(state=self.state, port=self.port, controller_port=self.settings.kafka_controller_port)
        )
        cluster_file = self.state / "cluster.id"
        if not cluster_file.exists():
            cluster_file.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=") + "\n")
        cmd = [
            require_tool("java"),
            *self.base_jvm_args(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(self.config),
            "--ignore-formatted",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"[kafka] formatting storage failed:\n{done.stdout}{done.stderr}")

    def base_jvm_args(self) -> list[str]:
        return [
            f"-Dlog4j2.configurationFile={HERE / 'conf' / 'kafka' / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.state}",
            "-Djava.awt.headless=true",
            "-cp",
            f"{self.lib}/*",
        ]

    def jvm_args(self) -> list[str]:
        return ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", *self.base_jvm_args()]

    def main_args(self) -> list[str]:
        return [str(self.config)]

    def ready(self) -> bool:
        if not self.log_says(self.ready_line):
            return False
        try:
            return probes.kafka_broker_count(HOST, self.port) >= 1
        except (OSError, probes.ProbeError):
            return False


def build(settings: Settings) -> dict[str, Postgres | Cassandra | Kafka]:
    return {"postgres": Postgres(settings), "cassandra": Cassandra(settings), "kafka": Kafka(settings)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "up", "down", "status", "env"])
    parser.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.services) - set(SERVICES))
    if unknown:
        parser.error(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    try:
        settings = Settings.from_env()
        services = build(settings)
        names = args.services or list(SERVICES)
        if args.command == "env":
            for key, value in settings.client_env().items():
                print(f"export {key}={value}")
            return 0
        if args.command == "down":
            names = list(reversed(names))
        for name in names:
            service = services[name]
            if args.command == "status":
                print(service.status())
            else:
                getattr(service, args.command)()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
