#!/usr/bin/env bash
# Builds the sparc Debian guest from Debian's packages (debootstrap):
#   OUT/disk.qcow2   ext4 root: systemd, journald, bash, openssh-server and -client, a user
#                    `guest`, a root getty on ttyS0, the sparc-guest package (agent, DKMS
#                    helper built for the image's kernel), root able to `ssh localhost`
#   OUT/vmlinuz, OUT/initrd.img   the image's own kernel and initrd
#   OUT/guest.json   kernel version and command line
# Usage: Guest/build-debian.sh OUT SPARC_GUEST_DEB
# $SPARC_DEBIAN_MIRROR overrides the Debian archive (default: the one apt on this host uses).
set -euo pipefail
out=${1:?usage: build-debian.sh OUT SPARC_GUEST_DEB}
deb=${2:?usage: build-debian.sh OUT SPARC_GUEST_DEB}
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "build-debian: needs root (debootstrap, chroot, file ownership in the image)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-debian: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
[ -r "$deb" ] || { echo "build-debian: guest package $deb missing (make guest-package)" >&2; exit 2; }

mirror=${SPARC_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/sparc-debian.XXXXXX")
root=$work/root
cleanup() {
    for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

packages=systemd-sysv,udev,kmod,procps,bash,openssh-server,openssh-client,iproute2,less,linux-image-amd64,linux-headers-amd64,dkms
echo "build-debian: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; echo "build-debian: debootstrap failed" >&2; exit 2; }
kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)

echo sparc-debian > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tsparc-debian\n::1\tlocalhost ip6-localhost\n' > "$root/etc/hosts"
printf '/dev/vda\t/\text4\terrors=remount-ro\t0\t1\n' > "$root/etc/fstab"
chroot "$root" useradd --create-home --shell /bin/bash --uid 1000 guest
# Persistent journal: what journald keeps is part of what a checkpoint can leak.
mkdir -p "$root/var/log/journal"
# A root shell on the serial console (this image is for tests and demos, not production).
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat > "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 - $TERM
UNIT
# root can `ssh localhost` with a key made now (tests open real SSH sessions in the guest).
install -d -m 0700 "$root/root/.ssh"
ssh-keygen -q -t ed25519 -N "" -C root@sparc-debian -f "$root/root/.ssh/id_ed25519"
cp "$root/root/.ssh/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
echo "localhost $(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" > "$root/root/.ssh/known_hosts"
chmod 0600 "$root/root/.ssh/authorized_keys" "$root/root/.ssh/known_hosts"

# The guest package, installed as a user would: dpkg, with DKMS building the helper.
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
cp "$deb" "$root/tmp/sparc-guest.deb"
# As a user would: apt installs it, apt removes it without a trace, then it goes in for good.
chroot "$root" apt-get install -y -q /tmp/sparc-guest.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 2; }
chroot "$root" apt-get remove -y -q sparc-guest >>"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 2; }
left=$(cd "$root" && ls -d usr/sbin/sparc-agent usr/bin/sparc-rsdm lib/systemd/system/sparc-agent.service \
    lib/udev/rules.d/60-sparc-agent.rules usr/src/sparc-helper-* var/lib/dkms/sparc-helper lib/modules/*/updates/dkms/sparc_helper.ko* 2>/dev/null || true)
[ -z "$left" ] || { echo "build-debian: apt remove sparc-guest left files behind: $left" >&2; exit 2; }
chroot "$root" dpkg -i /tmp/sparc-guest.deb >>"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; exit 2; }
rm -f "$root/tmp/sparc-guest.deb"
ls "$root/lib/modules/$kver/updates/dkms/sparc_helper.ko"* >/dev/null 2>&1 ||
    { cat "$work/dpkg.log" >&2; echo "build-debian: DKMS did not build the kernel helper for $kver" >&2; exit 2; }
for m in dev proc sys; do umount "$root/$m"; done

# Test and benchmark helpers (socket receivers that never read, a memory holder, login-guard).
gcc -static -O2 -pthread -o "$root/usr/local/bin/sparc-probe" "$here/tools/sparc-probe.c"
strip "$root/usr/local/bin/sparc-probe"
install -m 0755 "$here/rootfs/bin/login-guard" "$root/usr/local/bin/login-guard"
install -d "$root/etc/sparc"
install -m 0644 "$here/rootfs/etc/sparc/guard-password" "$root/etc/sparc/guard-password"

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
truncate -s 6G "$work/disk.raw"
mkfs.ext4 -q -F -L sparc-root -d "$root" "$work/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
printf '{"kernelVersion":"%s","append":"console=ttyS0 root=/dev/vda rw init_on_free=1 quiet","built":"%s"}\n' \
    "$kver" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$work/guest.json"
mkdir -p "$out"
for f in vmlinuz initrd.img guest.json disk.qcow2; do mv -f "$work/$f" "$out/$f"; done
echo "debian guest: $out (kernel $kver, disk $(du -h "$out/disk.qcow2" | cut -f1))"
