#!/bin/sh
# Waits until every URL given as an argument answers, then exits 0.
# Environment:
#   ATTEMPTS  how many times to try each URL (default 10)
#   DELAY     seconds between attempts (default 3)
#   TIMEOUT   seconds a single request may take (default 5)
# Exits 1 naming the first URL that never answered; 2 when called without a URL or with a
# variable that is not a number. Prints no variable's value before checking it is a number: one
# could come from a Secret, and a failure's output is copied into the ScriptRun's status and
# Events (busybox's `sleep` would echo a bad DELAY).
set -eu

ATTEMPTS="${ATTEMPTS:-10}"
DELAY="${DELAY:-3}"
TIMEOUT="${TIMEOUT:-5}"

fail() {
  echo "$1" >&2
  echo "$1" > /dev/termination-log 2>/dev/null || true
  exit "$2"
}

# A whole number from 1 to 999999 (no sign, no blanks).
whole() {
  case "$1" in
    '' | *[!0-9]* | 0 | 0* | ???????*) return 1 ;;
  esac
}

# Seconds: a whole number, or one with a fraction such as 0.5 (0 allowed).
seconds() {
  case "$1" in
    '' | . | *[!0-9.]* | *.*.* | ???????*) return 1 ;;
  esac
}

whole "$ATTEMPTS" || fail "ATTEMPTS must be a whole number from 1 to 999999 (value not shown)" 2
seconds "$DELAY" || fail "DELAY must be a number of seconds such as 3 or 0.5 (value not shown)" 2
whole "$TIMEOUT" || fail "TIMEOUT must be a whole number of seconds from 1 to 999999 (value not shown)" 2

if [ "$#" -eq 0 ]; then
  echo "usage: wait-for-endpoint.sh URL [URL...] (set spec.args in the ScriptRun)" >&2
  echo "no URL given" > /dev/termination-log 2>/dev/null || true
  exit 2
fi

for url in "$@"; do
  n=1
  # `timeout`, not `wget -T`: busybox builds without wget's timeout feature (Debian's before
  # 1.36.1-5) crash with a segmentation fault on -T.
  until timeout "$TIMEOUT" wget -q -O /dev/null "$url"; do
    if [ "$n" -ge "$ATTEMPTS" ]; then
      fail "$url did not answer after $n attempts" 1
    fi
    echo "waiting for $url (attempt $n/$ATTEMPTS)"
    n=$((n + 1))
    sleep "$DELAY"
  done
  echo "$url is up"
done
echo "all endpoints answered"
