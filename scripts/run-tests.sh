#!/bin/bash
# make test's suite, once on Debian's own python3-* packages and once on PyPI's (.venv).
#
# The Debian package's own tests (tests/package: a .deb built, two Debian systems made
# with mmdebstrap, the package installed into each) spend most of their time in apt,
# dpkg and mmdebstrap, not in Python. They run on Debian's python3 in the background
# while the suite runs on PyPI's, so that they hold up neither run; the tests that
# measure elapsed time (marker "timing") run last, alone, where their figures mean
# something. The property tests draw every example on PyPI's releases and a quarter
# of them on Debian's (tests/support/examples.py says why). Arguments (make test
# PYTEST_ARGS=...) go to every pytest run; with any, the package's tests run only
# where the arguments name them.
set -u
cd "$(dirname "$0")/.."
deb=(env "PYTHONPATH=$PWD:$PWD/.deb-extra" TEST_EXAMPLES_SHARE=0.25 /usr/bin/python3 -m pytest)
venv=(.venv/bin/python -m pytest)
parallel=(-n "${WORKERS:-4}" --dist loadgroup -m "not timing")
status=0
ok() { [ "$1" = 0 ] || [ "$1" = 5 ]; }  # pytest's 5: nothing selected

if [ $# = 0 ]; then
  echo "== tests on Debian's packages (/usr/bin/python3), the Debian package's aside"
  "${deb[@]}" "${parallel[@]}" --ignore=tests/package || status=1
  echo "== the Debian package's tests (Debian's python3) beside the tests on PyPI's releases (.venv)"
  log=$(mktemp)
  "${deb[@]}" -n 2 --dist loadgroup -m "not timing" tests/package > "$log" 2>&1 &
  package=$!
  "${venv[@]}" "${parallel[@]}" --ignore=tests/package || status=1
  wait "$package" || status=1
  echo "== the Debian package's tests, as they ran"
  cat "$log"
  rm -f "$log"
else
  echo "== tests on Debian's packages (/usr/bin/python3)"
  "${deb[@]}" "${parallel[@]}" "$@"; ok $? || status=1
  echo "== tests on current PyPI releases (.venv)"
  "${venv[@]}" "${parallel[@]}" "$@"; ok $? || status=1
fi
echo "== the tests that measure elapsed time, alone: on Debian's packages, then on PyPI's"
"${deb[@]}" -m timing "$@"; ok $? || status=1
"${venv[@]}" -m timing "$@"; ok $? || status=1
exit $status
