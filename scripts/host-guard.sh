#!/usr/bin/env bash
# The host's own files must come out of 'make test' exactly as they went in: a test once
# overwrote /etc/shadow (qemu-img truncates a data file it is only shown). 'record FILE'
# writes the digest of each guarded file (and of every file under a guarded directory, with
# its type and owner) into FILE; 'check FILE' compares, names each file that changed,
# appeared or went away, and exits 1 if any did.
#
# Guarded: the account databases, sudo's rules, root's SSH keys and the host's SSH keys,
# where present. Nothing here writes to them; the record lives outside the checkout.
set -uo pipefail

guarded=(/etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/sudoers /etc/sudoers.d /root/.ssh /etc/ssh /etc/hosts /etc/fstab)

snapshot() {
    local p
    for p in "${guarded[@]}"; do
        [ -e "$p" ] || [ -L "$p" ] || continue
        # Each entry: path, type, owner, mode, and for a regular file its SHA-256. -P: a
        # symlink is recorded as one, never followed.
        find -P "$p" -printf '%p\t%y\t%U:%G\t%m\t' -exec sh -c '
            if [ -f "$1" ] && [ ! -L "$1" ]; then sha256sum < "$1" | cut -d" " -f1; else echo -; fi' _ {} \; 2>/dev/null
    done | LC_ALL=C sort
}

case "${1:-}" in
record)
    [ -n "${2:-}" ] || { echo "host-guard: record needs a file" >&2; exit 2; }
    snapshot > "$2"
    echo "host-guard: recorded $(wc -l < "$2") guarded host file(s)"
    ;;
check)
    [ -f "${2:-}" ] || { echo "host-guard: no record at '${2:-}'" >&2; exit 2; }
    now=$(mktemp /tmp/sparc-host-guard-now.XXXXXX)
    trap 'rm -f "$now"' EXIT
    snapshot > "$now"
    changed=$(LC_ALL=C join -t $'\t' -a1 -a2 -e '(absent)' -o 0,1.2,1.3,1.4,1.5,2.2,2.3,2.4,2.5 "$2" "$now" \
        | awk -F'\t' '$2 != $6 || $3 != $7 || $4 != $8 || $5 != $9 { print $1 }')
    if [ -n "$changed" ]; then
        echo "host-guard: FAILED: the tests changed host files:" >&2
        printf '  %s\n' $changed >&2
        exit 1
    fi
    echo "host-guard: every guarded host file is as it was ($(wc -l < "$now") checked)"
    ;;
*)
    echo "usage: host-guard.sh record|check FILE" >&2
    exit 2
    ;;
esac
