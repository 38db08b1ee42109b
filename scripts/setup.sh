#!/bin/bash
# Set up this machine for the demo and the tests: Debian packages (when root),
# the virtual environment with current PyPI releases (.venv), and the one
# module Debian lacks for the Debian-packages run (.deb-extra: inotify-simple,
# which the Debian package carries inside itself). Idempotent; quiet when done.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3 python3-venv python3-dev gcc libcap-dev
      python3-cryptography python3-serial python3-gnupg python3-prctl
      python3-asn1crypto python3-idna python3-pytest python3-hypothesis python3-pytest-xdist
      gnupg xdelta openssl passwd util-linux procps
      softhsm2 python3-pykcs11 python3-crc32c)

missing=()
for p in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
fi

# The venv uses Debian's interpreter: the daemons run under other users in the
# tests and the demo, and they must be able to execute it (not a pyenv under /root).
# It is rebuilt when pyproject.toml (dependencies, packages, entry points) changes.
stamp=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat .venv/.pyproject.sha256 2>/dev/null)" != "$stamp" ] \
   || ! .venv/bin/python -c 'import pytest, xdist, hypothesis, gnupg, prctl, pkilint, badkeys, idna, PyKCS11' 2>/dev/null; then
  echo "setup: building .venv with current PyPI releases"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,lint,keychecks,pkcs11,dev]'
  echo "$stamp" > .venv/.pyproject.sha256
fi
if [ ! -f .deb-extra/inotify_simple.py ]; then
  .venv/bin/pip install -q --target .deb-extra inotify-simple
fi
