#!/usr/bin/env bash
# Installs the system programs resumewatch runs locally, when they are missing:
# Java + Maven (the Kafka broker comes from Maven Central), a ClickHouse server,
# docker-compose (to check the deployment's compose file), and Chromium with a CJK font (the
# dashboard's end-to-end test and its screenshot).
# Safe to repeat: it does nothing when everything is there.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if ! command -v clickhouse >/dev/null 2>&1 && ! command -v clickhouse-server >/dev/null 2>&1; then
  need+=(clickhouse-server)
fi
if ! command -v clickhouse >/dev/null 2>&1 && ! command -v clickhouse-client >/dev/null 2>&1; then
  need+=(clickhouse-client)
fi
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# Validates docker/compose.yaml in the tests (`docker-compose config` needs no Docker engine).
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1; then
  SUDO="sudo"
else
  echo "resumewatch needs these Debian packages: ${need[*]}." >&2
  echo "Install them as root: apt-get install -y ${need[*]}" >&2
  exit 1
fi

echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package's init script may try to start a system-wide server; we run our own instead.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
