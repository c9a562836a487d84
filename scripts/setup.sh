#!/usr/bin/env bash
# Installs everything the project needs, idempotently: Debian packages (redis, postgresql,
# maven, docker-compose, prometheus, prometheus-alertmanager, chromium, libjemalloc2), the Python venv with pinned dependencies, the Kinesis emulator (npm) and the
# Flink connector uber-jar (Maven Central). Safe to run again; it skips what is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# --- prerequisites a fresh machine must already have
PY=$(command -v python3.11 || true)
[ -n "$PY" ] || die "python3.11 not found (Python 3.11 is a prerequisite: Managed Flink 1.20 runs 3.11)"
command -v java >/dev/null || die "java not found (Java 17 is a prerequisite for Flink 1.20)"
java -version 2>&1 | grep -qE 'version "(17|11)' || die "Flink 1.20 needs Java 11 or 17; found: $(java -version 2>&1 | head -1)"
command -v node >/dev/null && command -v npm >/dev/null || die "node/npm not found (Node.js is a prerequisite for the Kinesis emulator)"

# --- Debian packages
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
command -v mvn >/dev/null || missing+=(maven)
command -v promtool >/dev/null || missing+=(prometheus)  # the local stack's metrics server and promtool for rule tests
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)  # where the alerts go
command -v docker-compose >/dev/null || missing+=(docker-compose)  # validates docker-compose.yml; no engine needed
command -v chromium >/dev/null || missing+=(chromium)  # headless: the live web view's browser test
ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || missing+=(libjemalloc2)  # the mini cluster JVM's allocator (RocksDB fragments glibc's)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# the Debian package may start its own cluster on 5432; ours runs on its own port and data dir

# --- Python venv from the lock file: every package pinned and hash-checked (requirements.lock is
# compiled from pyproject.toml: uv pip compile pyproject.toml --extra dev --generate-hashes ...; see README).
# --no-deps: the lock holds every package already, and one (protobuf, deploy/lock/overrides.txt)
# departs on purpose from a dependency's own bound, which pip's resolver would refuse
stamp=.venv/.installed-$(cat pyproject.toml requirements.lock | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
  say "pip install --require-hashes -r requirements.lock (apache-flink 1.20.5 and every dependency pinned)"
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  rm -f .venv/.installed-*; touch "$stamp"
fi

# --- Kinesis API emulator (kinesalite, pinned by package-lock.json)
if [ ! -f rig/kinesalite/node_modules/kinesalite/cli.js ]; then
  say "npm ci kinesalite"
  (cd rig/kinesalite && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi

# --- Flink Kinesis connector uber-jar + S3 filesystem plugin from Maven Central
jar=deploy/flink/target/btcpred-flink-connectors.jar
if [ ! -f "$jar" ] || [ deploy/flink/pom.xml -nt "$jar" ]; then
  say "mvn package deploy/flink (flink-connector-kinesis 4.3.0-1.19, shaded)"
  (cd deploy/flink && mvn -q -B package -DskipTests)
fi
# --- the one secrets source (.local/secrets) and what docker-compose mounts from it (Redis's ACL file)
.venv/bin/python -m deploy.compose_files >/dev/null
# --- a port of the stack held by another program (a distribution's own redis-server, postgresql,
# prometheus or alertmanager, which their packages start): said now, never stopped behind your back
.venv/bin/python -m rig.stack check
say "ready"
