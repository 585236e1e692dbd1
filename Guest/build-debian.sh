#!/usr/bin/env bash
# Builds the sparc Debian guest from Debian's packages (debootstrap):
#   OUT/disk.qcow2   ext4 root: systemd, journald, bash, openssh-server and -client, a user
#                    `guest`, a root getty on ttyS0, the sparc-guest package (agent, DKMS
#                    helper built for the image's kernel), root able to `ssh localhost`
#   OUT/ssh-key      root's private key in the image (the host's way in over --net user)
#                    The disk boots itself: GRUB in the MBR gap, root on /dev/vda1,
#                    /dev/vda2 a spare partition of type swap (1 GiB, not enabled).
#   OUT/vmlinuz, OUT/initrd.img   copies of the image's kernel and initrd (for --boot kernel)
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

packages=systemd-sysv,udev,kmod,procps,bash,openssh-server,openssh-client,iproute2,less,tmux,linux-image-amd64,linux-headers-amd64,dkms,grub-pc-bin
echo "build-debian: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; echo "build-debian: debootstrap failed" >&2; exit 2; }
kver=$(ls "$root/lib/modules" | sort -V | tail -n 1)

echo sparc-debian > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tsparc-debian\n::1\tlocalhost ip6-localhost\n' > "$root/etc/hosts"
printf '/dev/vda1\t/\text4\terrors=remount-ro\t0\t1\n' > "$root/etc/fstab"
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
# The same key lets the host in through a forwarded port (sparc vm start --net user,hostfwd=…).
install -m 0600 "$root/root/.ssh/id_ed25519" "$work/ssh-key"
# DHCP on the network card when a VM has one (QEMU's user networking answers it; DNS at 10.0.2.3).
cat > "$root/etc/systemd/network/50-sparc-wired.network" <<'NET'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
chroot "$root" systemctl enable -q systemd-networkd.service
# No card is the default: nothing may wait for a network that is not there.
chroot "$root" systemctl mask -q systemd-networkd-wait-online.service
echo "nameserver 10.0.2.3" > "$root/etc/resolv.conf"

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

# The disk boots itself (SeaBIOS, then GRUB from the MBR gap, then the kernel and initrd the
# guest's own packages keep under /boot): no host file is needed to boot or restore it.
append="console=ttyS0 root=/dev/vda1 rw init_on_free=1 quiet"
kernel=/boot/vmlinuz-$kver; initrd=/boot/initrd.img-$kver
# Debian keeps /vmlinuz and /initrd.img pointing at the newest kernel: an upgrade in the guest boots.
[ -e "$root/vmlinuz" ] && [ -e "$root/initrd.img" ] && { kernel=/vmlinuz; initrd=/initrd.img; }
install -d "$root/boot/grub"
cp -r "$root/usr/lib/grub/i386-pc" "$root/boot/grub/"
cat > "$root/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry 'Debian GNU/Linux 12 (sparc guest)' {
    linux $kernel $append
    initrd $initrd
}
CFG
chroot "$root" grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p '(hd0,msdos1)/boot/grub' \
    biosdisk part_msdos ext2 normal linux configfile serial terminal echo test search
cp "$root/boot/grub/i386-pc/core.img" "$root/boot/grub/i386-pc/boot.img" "$work/"
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -lt 2047 ] || { echo "build-debian: GRUB's core image does not fit before the partition" >&2; exit 2; }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"
# Partition 1 (root, 5 GiB from 1 MiB) and partition 2 (type swap, the rest, not enabled: tests
# and users turn it on with mkswap/swapon). The file system is made in place (no loop device, no mount).
truncate -s 6G "$work/disk.raw"
printf 'start=2048, size=10485760, type=83, bootable\ntype=82\n' | sfdisk -q "$work/disk.raw"
mkfs.ext4 -q -F -L sparc-root -E offset=1048576 -d "$root" "$work/disk.raw" $(( 5 * 1024 * 1024 ))k
# GRUB's boot sector code (the partition table stays) and its core image right after it:
# boot.img loads sector 1, whose block list grub-mkimage has filled in.
dd if="$work/boot.img" of="$work/disk.raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$work/disk.raw" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
printf '{"kernelVersion":"%s","append":"%s","boot":"disk","built":"%s"}\n' \
    "$kver" "$append" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$work/guest.json"
mkdir -p "$out"
for f in vmlinuz initrd.img guest.json disk.qcow2 ssh-key; do mv -f "$work/$f" "$out/$f"; done
echo "debian guest: $out (kernel $kver, disk $(du -h "$out/disk.qcow2" | cut -f1))"
