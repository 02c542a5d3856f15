#!/usr/bin/env bash
# Installs the time-series servers the telemetry tests start on free ports:
#   victoria-metrics  - accepts the InfluxDB v2 write API (/api/v2/write) used by the writer
#   influxdb (1.x)    - runs the dashboards' InfluxQL queries against points in our schema
# Idempotent; needs root (CI runs as root). Installing does not leave the servers running.
set -euo pipefail

need=()
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
if [ "${#need[@]}" -eq 0 ]; then
    echo "install-tsdb: victoria-metrics and influxd already present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the Debian packages from starting (and enabling) their system services.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
command -v victoria-metrics
command -v influxd
