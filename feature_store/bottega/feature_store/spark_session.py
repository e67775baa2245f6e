"""Spark sessions for the feature store's Spark engines, and the Kafka source jars that streaming needs.

pyspark ships Spark itself but not the Structured Streaming Kafka source (`spark-sql-kafka-0-10_2.13`), which must
be the same version as pyspark. The jars come from Maven Central with Maven (`mvn`), by the pom in
`deploy/services/conf/spark-kafka/` (it excludes what pyspark already ships), into the same cache as the services'
jars: `$BOTTEGA_SERVERS_CACHE` (default `~/.cache/bottega/servers`) `/spark-kafka-<pom hash>/lib`.

    python -m bottega.feature_store.spark_session fetch     # download them once (seconds); prints the folder
    python -m bottega.feature_store.spark_session jars      # the comma-separated list for `spark.jars`

`BOTTEGA_SPARK_JARS` (comma-separated jar files or folders of jars) overrides the cache, e.g. on a cluster or in an
installed package without the repository's pom. `BOTTEGA_SPARK_MASTER` sets the master of the sessions built here
(default `local[*]`, or what `spark-submit` gave).

The jars must be on the classpath when the JVM starts (`spark.jars`); `build_session(kafka=True)` does that. For a
session that is already running without them, `add_kafka_jars` adds them at run time (`ADD JAR`): batch reads and
streaming work, but Spark logs harmless ClassNotFoundException lines for the Kafka source's metrics.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bottega.core.extras import require

log = logging.getLogger(__name__)

JARS_ENV = "BOTTEGA_SPARK_JARS"
MASTER_ENV = "BOTTEGA_SPARK_MASTER"
CACHE_ENV = "BOTTEGA_SERVERS_CACHE"
FETCH_COMMAND = "python -m bottega.feature_store.spark_session fetch"
KAFKA_SOURCE_CLASS = "org.apache.spark.sql.kafka010.KafkaSourceProvider"
KAFKA_JAR_RE = re.compile(r"^spark-sql-kafka-0-10_(?P<scala>[\d.]+)-(?P<version>[^/]+)\.jar$")


class SparkJarsMissing(RuntimeError):
    """The Kafka source jars are not where they should be; the message says how to get them."""


def default_pom() -> Path | None:
    """The repository's `deploy/services/conf/spark-kafka/pom.xml`, when running from a checkout."""
    pom = Path(__file__).resolve().parents[3] / "deploy" / "services" / "conf" / "spark-kafka" / "pom.xml"
    return pom if pom.is_file() else None


def cache_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    home = Path(env.get("HOME", str(Path.home())))
    return Path(env.get(CACHE_ENV, str(home / ".cache" / "bottega" / "servers"))).resolve()


def jar_dir(pom: Path, cache: Path) -> Path:
    """Where the jars of `pom` are cached: one folder per pom content, like the services' jars."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    return cache / f"spark-kafka-{digest}" / "lib"


def fetch_kafka_jars(pom: Path | None = None, cache: Path | None = None) -> Path:
    """Copy the Kafka source jars from Maven Central into the cache (nothing when already there); their folder."""
    pom = pom or default_pom()
    if pom is None:
        raise SparkJarsMissing(f"no spark-kafka pom.xml next to this installation: set {JARS_ENV} to the jars")
    lib = jar_dir(pom, cache or cache_root())
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SparkJarsMissing("`mvn` is not on PATH: install Maven (`make setup` does) to fetch the Kafka jars")
    staging = lib.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("fetching the Spark Kafka source jars into %s", lib.parent)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "package", f"-DoutputDirectory={staging}"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    shutil.rmtree(pom.parent / "target", ignore_errors=True)
    if done.returncode != 0:
        raise SparkJarsMissing(f"mvn failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return lib


def _expand(entry: str) -> list[Path]:
    path = Path(entry).expanduser()
    if path.is_dir():
        return sorted(path.glob("*.jar"))
    if path.is_file():
        return [path]
    raise SparkJarsMissing(f"{JARS_ENV} names {entry!r}, which is neither a jar nor a folder of jars")


def kafka_jars(env: Mapping[str, str] | None = None, *, fetch: bool = False) -> list[str]:
    """The jar files the Kafka source needs: `BOTTEGA_SPARK_JARS`, else the cache (fetched first when `fetch`)."""
    env = os.environ if env is None else env
    if env.get(JARS_ENV):
        jars = [str(p) for entry in env[JARS_ENV].split(",") if entry.strip() for p in _expand(entry.strip())]
    else:
        pom = default_pom()
        if pom is None:
            raise SparkJarsMissing(f"set {JARS_ENV} to the spark-sql-kafka-0-10 jars (and kafka-clients)")
        lib = jar_dir(pom, cache_root(env))
        if fetch:
            fetch_kafka_jars(pom, cache_root(env))
        if not (lib / ".complete").exists():
            raise SparkJarsMissing(f"the Spark Kafka source jars are not in {lib.parent}: run `{FETCH_COMMAND}`")
        jars = [str(p) for p in sorted(lib.glob("*.jar"))]
    check_kafka_jars(jars)
    return jars


def kafka_source_version(jars: list[str]) -> str | None:
    """The Spark version of the `spark-sql-kafka-0-10` jar in `jars` (None when there is none)."""
    for jar in jars:
        match = KAFKA_JAR_RE.match(Path(jar).name)
        if match:
            return match.group("version")
    return None


def check_kafka_jars(jars: list[str], spark_version: str | None = None) -> None:
    """Raise SparkJarsMissing unless `jars` hold the Kafka source built for this pyspark's version."""
    if spark_version is None:
        import pyspark

        spark_version = pyspark.__version__
    found = kafka_source_version(jars)
    if found is None:
        raise SparkJarsMissing(f"no spark-sql-kafka-0-10 jar among {len(jars)} jar(s): run `{FETCH_COMMAND}`")
    if found != spark_version:
        raise SparkJarsMissing(
            f"the Kafka source jar is for Spark {found} but pyspark is {spark_version}: set spark.version in "
            f"deploy/services/conf/spark-kafka/pom.xml to {spark_version} (or fix {JARS_ENV})"
        )


def has_kafka_source(spark: Any) -> bool:
    """Whether a running session can load the Kafka source."""
    return bool(spark._jvm.org.apache.spark.util.Utils.classIsLoadable(KAFKA_SOURCE_CLASS))


def add_kafka_jars(spark: Any, jars: list[str] | None = None) -> None:
    """Make the Kafka source available to a session that started without it (`ADD JAR`; see the module doc)."""
    if has_kafka_source(spark):
        return
    for jar in jars if jars is not None else kafka_jars():
        spark.sql("ADD JAR " + "'" + jar.replace("'", "\\'") + "'")
    if not has_kafka_source(spark):
        raise SparkJarsMissing("the Kafka source is still not loadable after ADD JAR")


def build_session(
    app_name: str = "bottega",
    *,
    master: str | None = None,
    kafka: bool = False,
    conf: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """A SparkSession (the running one when there is one): UTC, Arrow transfers, Python workers on this
    interpreter, and with `kafka` the Kafka source jars on the classpath (see `kafka_jars`)."""
    require("pyspark", "spark")
    from pyspark.sql import SparkSession

    env = os.environ if env is None else env
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    master = master or env.get(MASTER_ENV) or (None if env.get("PYSPARK_GATEWAY_PORT") else "local[*]")
    if master:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **(conf or {}),
    }
    if kafka:
        settings["spark.jars"] = ",".join(kafka_jars(env))
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if kafka:
        add_kafka_jars(session, settings["spark.jars"].split(","))
    return session


def running_session() -> Any | None:
    """The session already running in this process (active in this thread, or the default one), if any."""
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    try:
        return SparkSession.active()
    except PySparkRuntimeError:
        return None


@contextmanager
def spark_session(app_name: str = "bottega", *, kafka: bool = False) -> Iterator[Any]:
    """The running session, or a new one that is stopped on exit (for jobs and the CLI)."""
    require("pyspark", "spark")
    running = running_session()
    if running is not None:
        if kafka:
            add_kafka_jars(running)
        yield running
        return
    session = build_session(app_name, kafka=kafka)
    try:
        yield session
    finally:
        session.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in (["fetch"], ["jars"]):
        print(f"usage: python -m {__spec__.name if __spec__ else 'spark_session'} fetch|jars", file=sys.stderr)
        return 2
    try:
        if args == ["fetch"]:
            if os.environ.get(JARS_ENV):
                print(f"{JARS_ENV} is set: nothing to fetch")
            else:
                print(fetch_kafka_jars())
        else:
            print(",".join(kafka_jars()))
    except SparkJarsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
