#!/bin/sh
# Test fixture of the real-node suite (tests/real_node/), never shipped: the tests run the operator
# from a copy of the repository whose scripts/ also holds this file. The first argument picks what
# it does; everything it finds out it prints, so the test reads it back with `kubectl logs`.
mode="$1"
shift
case "$mode" in
  sandbox)
    # Checks the sandbox from inside: identity, the mounted script, a read-only root file system.
    bad=0
    echo "uid=$(id -u) gid=$(id -g)"
    echo "script mode=$(stat -L -c %a "$0") path=$0"
    if grep -q " /scripts [^ ]* ro[, ]" /proc/mounts; then echo "/scripts read-only"; else echo "/scripts writable"; bad=1; fi
    for target in "$0" /scripts/new-file /new-file /tmp/new-file; do
      if (echo x > "$target") 2>/dev/null; then
        echo "write to $target succeeded"
        bad=1
      else
        echo "write to $target refused"
      fi
    done
    [ "$(id -u)" = 65532 ] && [ "$(id -g)" = 65532 ] || bad=1
    [ "$(stat -L -c %a "$0")" = 555 ] || bad=1
    exit "$bad"
    ;;
  args)
    # Prints every argument between brackets and the GREETING env var, byte for byte.
    echo "argc=$#"
    for a in "$@"; do printf '[%s]\n' "$a"; done
    printf 'GREETING=[%s]\n' "$GREETING"
    ;;
  fail)
    # Writes its reason to the termination log and exits 3.
    echo "giving up"
    printf '%s' "$1" > /dev/termination-log
    exit 3
    ;;
  crash)
    # Exits 7 without a termination message, after some output on both streams.
    for i in 1 2 3 4 5; do echo "step $i done"; done
    echo "fatal: disk on fire" >&2
    exit 7
    ;;
  sleep)
    echo "sleeping $1 s"
    sleep "$1"
    echo "woke up"
    ;;
  *)
    echo "probe.sh: unknown mode '$mode'" >&2
    exit 2
    ;;
esac
