#!/usr/bin/env bash
# System packages the integration tests use: a real Docker engine (Debian's docker.io), a local registry
# (docker-registry), busybox-static to build test images without pulling, util-linux's unshare.
# Idempotent; needs root. Starts dockerd when none is running and builds the test images.
set -euo pipefail
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
if [ "${#need[@]}" -gt 0 ]; then
  echo "[ci] apt-get install ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "[ci] starting dockerd" >&2
  (setsid dockerd >/var/log/tcw-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "[ci] dockerd did not start; see /var/log/tcw-dockerd.log" >&2; exit 1; }
fi
bash "$(dirname "${BASH_SOURCE[0]}")/build-test-images.sh"
