#!/usr/bin/env bash
# Builds the sparc guest package: OUT_DIR/sparc-guest_VERSION_amd64.deb
#   /usr/sbin/sparc-agent (static), /usr/bin/sparc-rsdm, the kernel helper as DKMS source,
#   a systemd unit started when the agent's virtio-serial port appears (udev rule).
# Usage: Guest/package/build-package.sh OUT_DIR AGENT_BINARY VERSION
set -euo pipefail
out=${1:?usage: build-package.sh OUT_DIR AGENT_BINARY VERSION}
agent=${2:?usage: build-package.sh OUT_DIR AGENT_BINARY VERSION}
version=${3:?usage: build-package.sh OUT_DIR AGENT_BINARY VERSION}
here=$(cd "$(dirname "$0")" && pwd)
[ -x "$agent" ] || { echo "build-package: agent binary $agent missing" >&2; exit 2; }
command -v dpkg-deb >/dev/null || { echo "build-package: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sparc-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/sparc-guest
install -d -m 0755 "$root"/DEBIAN "$root"/usr/sbin "$root"/usr/bin "$root"/lib/systemd/system "$root"/lib/udev/rules.d \
    "$root"/usr/src/sparc-helper-"$version" "$root"/usr/share/doc/sparc-guest
install -m 0755 "$agent" "$root"/usr/sbin/sparc-agent
strip "$root"/usr/sbin/sparc-agent 2>/dev/null || true
ln -s ../sbin/sparc-agent "$root"/usr/bin/sparc-rsdm
install -m 0644 "$here"/../helper/*.c "$here"/../helper/*.h "$here"/../helper/Makefile "$root"/usr/src/sparc-helper-"$version"/
sed "s/@VERSION@/$version/" "$here"/dkms.conf > "$root"/usr/src/sparc-helper-"$version"/dkms.conf
install -m 0644 "$here"/sparc-agent.service "$root"/lib/systemd/system/
install -m 0644 "$here"/60-sparc-agent.rules "$root"/lib/udev/rules.d/
install -m 0644 "$here"/copyright "$root"/usr/share/doc/sparc-guest/copyright
for script in postinst prerm postrm; do
    sed "s/@VERSION@/$version/" "$here/$script" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$here"/control > "$root"/DEBIAN/control

mkdir -p "$out"
deb="$out/sparc-guest_${version}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.tmp" >/dev/null
mv -f "$deb.tmp" "$deb"
echo "guest package: $deb ($(du -h "$deb" | cut -f1))"
