#!/bin/bash
# Build the Debian package signer-appliance_*_all.deb from this tree.
#
# Uses Debian's own tools only (debhelper compat 13, dh-python,
# pybuild-plugin-pyproject) and no network but Debian's archive (to install
# the build dependencies, as root, when they are missing). The tree is copied
# to a temporary directory with packaging/debian as debian/, so the source
# tree stays clean. Prints the path of the .deb on its last line.
#
#   scripts/build-deb.sh [OUT_DIR]     (default: dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
OUT=$(realpath -m "${1:-dist}")

# Debian's interpreter and tools, whatever python3 a virtualenv or pyenv puts first.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME
export LC_ALL=C.UTF-8 DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-nocheck}"

BUILD_DEPS=(dpkg-dev debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools)
missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "build-deb: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  else
    echo "build-deb: missing build dependencies (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
fi

# The package version comes from debian/changelog; it must match pyproject's.
deb_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
py_version=$(/usr/bin/python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
if [ "$deb_version" != "$py_version" ]; then
  echo "build-deb: packaging/debian/changelog says $deb_version, pyproject.toml says $py_version" >&2
  exit 1
fi

WORK=$(mktemp -d /tmp/signer-deb.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
TREE="$WORK/signer-appliance-$deb_version"
mkdir "$TREE"
# The files git knows of (tracked, or new and not ignored): no .venv, no caches.
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$SRC" ls-files -z --cached --others --exclude-standard \
    | (cd "$SRC" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
    | tar -C "$SRC" --null -T - -cf - | tar -C "$TREE" -xf -
else
  tar -C "$SRC" --exclude=.venv --exclude=.deb-extra --exclude=.git --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.hypothesis --exclude=dist --exclude=build -cf - . \
    | tar -C "$TREE" -xf -
fi
rm -rf "$TREE/debian"
cp -a "$SRC/packaging/debian" "$TREE/debian"

start=$(date +%s)
(cd "$TREE" && dpkg-buildpackage -b -us -uc) > "$WORK/build.log" 2>&1 || {
  tail -60 "$WORK/build.log" >&2
  echo "build-deb: dpkg-buildpackage failed (log above)" >&2
  exit 1
}
mkdir -p "$OUT"
deb="signer-appliance_${deb_version}_all.deb"
cp "$WORK/$deb" "$OUT/$deb"
cp "$WORK/build.log" "$OUT/build.log"
echo "build-deb: built in $(( $(date +%s) - start )) s; log in $OUT/build.log" >&2
echo "$OUT/$deb"
