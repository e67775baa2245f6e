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
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import probes

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
HOST = "127.0.0.1"
SERVICES = ("postgres", "cassandra", "kafka")
DEFAULT_PORTS = {
    "BOTTEGA_CASSANDRA_PORT": 19042,
    "BOTTEGA_CASSANDRA_STORAGE_PORT": 17000,
    "BOTTEGA_KAFKA_PORT": 19092,
    "BOTTEGA_KAFKA_CONTROLLER_PORT": 19093,
    "BOTTEGA_POSTGRES_PORT": 15432,
}
POSTGRES_DB = "bottega"


class ServiceError(Exception):
    """A service could not be fetched, started or stopped; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    state: Path
    cache: Path
    cassandra_port: int
    cassandra_storage_port: int
    kafka_port: int
    kafka_controller_port: int
    postgres_port: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        ports = {}
        for key, default in DEFAULT_PORTS.items():
            raw = env.get(key, str(default))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ServiceError(f"{key}={raw!r} is not a TCP port number")
            ports[key] = int(raw)
        home = Path(env.get("HOME", str(Path.home())))
        return cls(
            state=Path(env.get("BOTTEGA_SERVICES_STATE", str(REPO / ".services"))).resolve(),
            cache=Path(env.get("BOTTEGA_SERVERS_CACHE", str(home / ".cache" / "bottega" / "servers"))).resolve(),
            cassandra_port=ports["BOTTEGA_CASSANDRA_PORT"],
            cassandra_storage_port=ports["BOTTEGA_CASSANDRA_STORAGE_PORT"],
            kafka_port=ports["BOTTEGA_KAFKA_PORT"],
            kafka_controller_port=ports["BOTTEGA_KAFKA_CONTROLLER_PORT"],
            postgres_port=ports["BOTTEGA_POSTGRES_PORT"],
        )

    def client_env(self) -> dict[str, str]:
        """What a client (the tests) needs to reach the running services."""
        return {
            "BOTTEGA_TEST_CASSANDRA_HOSTS": f"{HOST}:{self.cassandra_port}",
            "BOTTEGA_TEST_KAFKA_BOOTSTRAP": f"{HOST}:{self.kafka_port}",
            "BOTTEGA_TEST_POSTGRES_URL": f"postgresql+psycopg://postgres@{HOST}:{self.postgres_port}/{POSTGRES_DB}",
        }


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise ServiceError(f"{what} exited while starting. Last lines of {log}:\n{log_tail(log)}")
        time.sleep(0.25)
    raise ServiceError(f"{what} was not ready after {timeout:.0f} s. Last lines of {log}:\n{log_tail(log)}")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH: run `make setup` (it installs the JDK 17, Maven and PostgreSQL)")
    return path


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
