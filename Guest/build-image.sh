#!/usr/bin/env bash
# Builds the sparc default guest from Debian packages on this machine:
#   OUT/vmlinuz      the Debian kernel
#   OUT/initrd.img   busybox, the needed modules, the static sparc-agent, the init scripts
#   OUT/data.qcow2   an ext4 data disk mounted at /data in the guest
#   OUT/guest.json   what went in (kernel version), for the host side
# Usage: Guest/build-image.sh OUT AGENT_BINARY
set -euo pipefail
out=${1:?usage: build-image.sh OUT AGENT_BINARY}
agent=${2:?usage: build-image.sh OUT AGENT_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
kver=${SPARC_GUEST_KERNEL:-$(ls /lib/modules | sort -V | tail -n 1)}
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || { echo "build-image: no guest kernel at $kernel (apt-get install linux-image-amd64)" >&2; exit 2; }
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "build-image: busybox-static is missing (apt-get install busybox-static)" >&2; exit 2; }
[ -x "$agent" ] || { echo "build-image: agent binary $agent missing" >&2; exit 2; }

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/sparc-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,etc/sparc,proc,sys,dev,run,tmp,data,root,home/guest,lib/modules,usr/bin,usr/sbin}

# busybox and its applets as symlinks
cp "$busybox" "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done

# modules in dependency order (modprobe resolves against the host's modules.dep for $kver)
: > "$root/etc/sparc/modules.order"
for m in virtio_pci virtio_console virtio_blk ext4 crc32c_generic crc32c-intel virtio_rng; do
    modprobe -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' | while read -r ko; do
        rel=${ko#/lib/modules/}
        if ! grep -qxF "$rel" "$root/etc/sparc/modules.order"; then
            mkdir -p "$root/lib/modules/$(dirname "$rel")"
            case "$ko" in
                *.ko.xz) xz -dc "$ko" > "$root/lib/modules/${rel%.xz}"; rel=${rel%.xz} ;;
                *.ko.zst) zstd -qdc "$ko" > "$root/lib/modules/${rel%.zst}"; rel=${rel%.zst} ;;
                *) cp "$ko" "$root/lib/modules/$rel" ;;
            esac
            echo "$rel" >> "$root/etc/sparc/modules.order"
        fi
    done
done
grep -q virtio_console "$root/etc/sparc/modules.order" || { echo "build-image: virtio_console module not found for $kver" >&2; exit 2; }

# The kernel helper, built against this kernel's headers (linux-headers-$kver).
kbuild=/lib/modules/$kver/build
[ -d "$kbuild" ] || { echo "build-image: no kernel headers at $kbuild (apt-get install linux-headers-amd64)" >&2; exit 2; }
cp "$here"/helper/Makefile "$here"/helper/*.c "$here"/helper/*.h "$work/"
make -s -C "$kbuild" M="$work" modules >"$work/helper.log" 2>&1 || { cat "$work/helper.log" >&2; echo "build-image: kernel helper did not build" >&2; exit 2; }
mkdir -p "$root/lib/modules/sparc"
strip --strip-debug -o "$root/lib/modules/sparc/sparc_helper.ko" "$work/sparc_helper.ko"

# Test and benchmark helper (socket receivers that never read, a memory holder).
gcc -static -O2 -pthread -o "$root/bin/sparc-probe" "$here/tools/sparc-probe.c"
strip "$root/bin/sparc-probe"

cp -a "$here/rootfs/etc/." "$root/etc/"
install -m 0755 "$here/rootfs/sparc-agent-run" "$root/sbin/sparc-agent-run"
install -m 0755 "$agent" "$root/sbin/sparc-agent"
ln -sf /sbin/sparc-agent "$root/bin/sparc-rsdm"
install -m 0755 "$here/rootfs/bin/login-guard" "$root/bin/login-guard"
strip "$root/sbin/sparc-agent" 2>/dev/null || true
ln -sf /sbin/init "$root/init" 2>/dev/null || true

(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet --owner=0:0) | gzip -1 > "$work/initrd.img"
cp "$kernel" "$work/vmlinuz"

# Data disk: 64 MiB ext4, fresh at each build so every test starts the same.
truncate -s 64M "$work/data.raw"
mkfs.ext4 -q -F -L sparcdata -m 0 "$work/data.raw"
qemu-img convert -q -f raw -O qcow2 "$work/data.raw" "$work/data.qcow2"

printf '{"kernelVersion":"%s","built":"%s"}\n' "$kver" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$work/guest.json"
for f in vmlinuz initrd.img data.qcow2 guest.json; do mv -f "$work/$f" "$out/$f"; done
echo "guest image: $out (kernel $kver, initrd $(du -h "$out/initrd.img" | cut -f1))"
