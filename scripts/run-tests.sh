#!/usr/bin/env bash
# Runs every test in two lanes side by side on the machine's cores: the Debian guest's
# end-to-end tests (a 1 GiB systemd guest under TCG: mostly booting and systemd) with two
# more classes, and everything else. Each lane is one XCTest process that runs its classes in
# order, so a class still shares one booted VM between its cases; VM names, runtime and
# state directories differ between classes, so the lanes share nothing.
# Two `swift test` processes cannot share a build directory (SwiftPM locks it for the whole
# run), so the test bundle SwiftPM built is run directly. The Debian lane's log follows the
# other's. Exit status: 0 only when both lanes pass.
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=.build/debug/sparcPackageTests.xctest
[ -x "$bundle" ] || { echo "run-tests: $bundle is missing: build the tests first (swift build --build-tests)" >&2; exit 2; }
# The Debian guest's classes and, to even the lanes out (~20 minutes each under CI's load),
# the libvirt and free-memory classes.
slow=EndToEndTests.DebianTests,EndToEndTests.LibvirtTests,EndToEndTests.FreeMemoryTests
rest=$("$bundle" --list-tests | sed -n 's|^\([A-Za-z0-9_]*\.[A-Za-z0-9_]*\)/.*|\1|p' | sort -u | grep -vxF -e "${slow//,/$'\n'}" | paste -sd, -)
[ -n "$rest" ] || { echo "run-tests: no tests listed by $bundle" >&2; exit 2; }
log=$(mktemp /tmp/sparc-debian-lane.XXXXXX)
trap 'rm -f "$log"' EXIT
lane() { timeout --kill-after=60 4500 stdbuf -oL -eL "$bundle" "$1"; }
lane "$slow" > "$log" 2>&1 &
debian=$!
lane "$rest"
rest_status=$?
wait "$debian"
debian_status=$?
echo "=== the Debian lane ($slow), run at the same time ==="
cat "$log"
echo "run-tests: everything else exited $rest_status, $slow exited $debian_status"
[ "$rest_status" = 0 ] && [ "$debian_status" = 0 ]
