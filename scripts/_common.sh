# Shared by scripts/start and scripts/test: root-or-sudo, Debian packages, the venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OPENMVNO_VENV:-$ROOT/.venv}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  # Install Debian packages that are missing (quietly; update the index once).
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "==> installing Debian packages: ${missing[*]}"
  # Wait for another apt/dpkg run to finish instead of failing at once on its lock.
  as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  # $1: pip extras spec, e.g. "." or ".[test]"
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  echo "==> installing Python packages ($1)"
  (cd "$ROOT" && "$VENV/bin/python" -m pip install -q -e "$1")
}

start_throwaway_pg() {
  # Start a PostgreSQL cluster in a temp dir as the postgres user (it refuses root);
  # sets PGURL and stops/removes the cluster when the calling script exits.
  PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  PGDIR="$(mktemp -d)"
  PGPORT="${OPENMVNO_TEST_PGPORT:-$(( 56000 + RANDOM % 2000 ))}"
  trap stop_throwaway_pg EXIT
  as_root chown postgres:postgres "$PGDIR"
  echo "==> starting PostgreSQL on 127.0.0.1:$PGPORT"
  as_root runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust \
    -E UTF8 --locale=C.UTF-8 >/dev/null
  as_root runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/pg.log" -w start \
    -o "-p $PGPORT -c listen_addresses=127.0.0.1 -k $PGDIR -c max_connections=300 $*" >/dev/null
  PGURL="postgresql+asyncpg://postgres@127.0.0.1:$PGPORT/postgres"
}

server_sized_pg_settings() {
  # docs/OPERATIONS.md's production settings, sized to this machine's RAM (pg_ctl -o flags).
  local mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
  echo "-c shared_buffers=$(( mb / 4 ))MB -c effective_cache_size=$(( mb / 2 ))MB" \
       "-c max_wal_size=8GB -c checkpoint_timeout=30min"
}

stop_throwaway_pg() {
  if [ -f "$PGDIR/data/postmaster.pid" ]; then
    as_root runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop \
      >/dev/null 2>&1 || true
  fi
  as_root rm -rf "$PGDIR"
}

npm_tool() {
  # Install an npm package for the tests into the test-tools folder (never into the repo's
  # source): $1 package@version. Tests find it through OPENMVNO_TEST_TOOLS.
  local tools="${OPENMVNO_TEST_TOOLS:-$ROOT/.test-tools}"
  local name="${1%@*}"
  [ -f "$tools/node_modules/$name/package.json" ] && return 0
  echo "==> installing npm $1 into $tools"
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "$1" >/dev/null
}
