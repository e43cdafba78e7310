#!/bin/sh
# Waits until every URL given as an argument answers, then exits 0.
# Environment:
#   ATTEMPTS  how many times to try each URL (default 10)
#   DELAY     seconds between attempts (default 3)
#   TIMEOUT   seconds a single request may take (default 5)
# Exits 1 naming the first URL that never answered; 2 when called without a URL.
set -eu

ATTEMPTS="${ATTEMPTS:-10}"
DELAY="${DELAY:-3}"
TIMEOUT="${TIMEOUT:-5}"

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
      echo "$url did not answer after $ATTEMPTS attempts" >&2
      echo "$url did not answer after $ATTEMPTS attempts" > /dev/termination-log 2>/dev/null || true
      exit 1
    fi
    echo "waiting for $url (attempt $n/$ATTEMPTS)"
    n=$((n + 1))
    sleep "$DELAY"
  done
  echo "$url is up"
done
echo "all endpoints answered"
