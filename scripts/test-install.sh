#!/bin/bash
# The install test of 'make test': 'make install' into a staged prefix, then the installed
# sparc, run from outside the checkout, boots the installed guest image, answers with its
# agent and stops it; 'make uninstall' leaves nothing behind.
#
# It installs the debug build already made (CONFIG=debug) so CI does not build everything a
# second time; the release build takes the same install steps ('make run' and 'make bench' use it).
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
stage=$(mktemp -d /tmp/sparc-install-test.XXXXXX)
runtime=$(mktemp -d /tmp/sparc-install-rt.XXXXXX)
chmod 700 "$runtime"
prefix=/usr
sparc="$stage$prefix/bin/sparc"
vm=install-check
started=
fail() { echo "install test: FAILED: $*" >&2; exit 1; }
cleanup() {
    if [ -n "$started" ]; then
        SPARC_RUNTIME_DIR=$runtime/rt SPARC_STATE_DIR=$runtime/st timeout 60 "$sparc" vm stop --name "$vm" >/dev/null 2>&1 || true
    fi
    rm -rf "$stage" "$runtime"
}
trap cleanup EXIT

echo "install test: make install CONFIG=debug PREFIX=$prefix DESTDIR=$stage"
make -s install CONFIG=debug PREFIX=$prefix DESTDIR="$stage" GUEST_IMAGES=guest >/dev/null

for f in bin/sparc libexec/sparc/sparc-rsdmd share/man/man1/sparc.1 share/man/man1/sparc.checkpoint.1 \
    share/man/man1/sparc.restore.1 share/bash-completion/completions/sparc share/zsh/site-functions/_sparc \
    share/fish/vendor_completions.d/sparc.fish share/sparc/commit share/sparc/guest/vmlinuz share/sparc/guest/initrd.img; do
    [ -s "$stage$prefix/$f" ] || fail "$prefix/$f is missing or empty"
done
[ -x "$sparc" ] || fail "bin/sparc is not executable"
grep -q '^\.Dt SPARC.CHECKPOINT 1' "$stage$prefix/share/man/man1/sparc.checkpoint.1" || fail "sparc.checkpoint.1 is not a manual page"
for section in ENVIRONMENT FILES 'EXIT STATUS'; do
    grep -q "^\.Sh $section\$" "$stage$prefix/share/man/man1/sparc.1" || fail "sparc.1 has no $section section"
done
grep -q '^\.Sh KEYS$' "$stage$prefix/share/man/man1/sparc.tui.1" || fail "sparc.tui.1 does not list the keys"
if command -v groff >/dev/null; then
    man_text=$(groff -mandoc -Tutf8 -ww "$stage$prefix/share/man/man1/sparc.tui.1" 2>&1 >/dev/null) || true
    [ -z "$man_text" ] || fail "sparc.tui.1 does not render cleanly: $man_text"
fi
bash -n "$stage$prefix/share/bash-completion/completions/sparc" || fail "the bash completion does not parse"

cd /
commit=$(git -C "$checkout" rev-parse --short HEAD)
version=$("$sparc" --version)
[ "$version" = "sparc $(cat "$checkout/VERSION") (commit $commit)" ] || fail "--version says '$version', not the installed commit $commit"
echo "install test: $version"

# The installed binary on its own: its guest image, its RSDM daemon, its agent.
export SPARC_RUNTIME_DIR=$runtime/rt SPARC_STATE_DIR=$runtime/st SPARC_BUNDLES=$runtime/bundles
mkdir -m 700 -p "$SPARC_RUNTIME_DIR" "$SPARC_STATE_DIR"
started=1
timeout 300 "$sparc" vm start --name "$vm" --memory 256 >/dev/null || fail "the installed sparc could not start its guest"
timeout 120 "$sparc" ps --name "$vm" | grep -q 'sparc-agent' || fail "the installed guest's agent did not answer"
timeout 60 "$sparc" vm stop --name "$vm" >/dev/null || fail "vm stop failed"
started=

cd "$checkout"
make -s uninstall PREFIX=$prefix DESTDIR="$stage" >/dev/null
left=$(find "$stage" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "install test: passed (installed, booted its own guest image, uninstalled without a trace)"
