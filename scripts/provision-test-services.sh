#!/usr/bin/env bash
# `npm test`'s pretest: the OS packages the suite's real services need (tests/support starts them):
# redis-server and redis-cli, librdkafka's mock cluster headers, and gcc to build the mock's
# launcher, and Debian's chromium for the dashboard's browser tests (driven by playwright-core). Seconds when all are there; as root on Debian or Ubuntu it installs what is missing
# with apt; otherwise it stops with the exact command to run.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-server)
command -v gcc >/dev/null || missing+=(gcc)
test -f /usr/include/librdkafka/rdkafka_mock.h || missing+=(librdkafka-dev)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
packages=$(printf '%s\n' "${missing[@]}" | sort -u | xargs)
command="apt-get update && apt-get install -y ${packages}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "pretest: installing ${packages} (the test suite's services)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq ${packages} >/dev/null
  exit 0
fi
echo "pretest: the test suite needs ${packages}; install them first:" >&2
if command -v apt-get >/dev/null; then echo "  sudo sh -c '${command}'" >&2; else echo "  (Debian/Ubuntu) ${command}; elsewhere the same packages from your system's package manager" >&2; fi
exit 1
