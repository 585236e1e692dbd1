// libvirt's C library (Debian's libvirt-dev): its API imports into Swift as it is.
// libvirt-qemu: QMP commands (with descriptors) on a domain's monitor, which libvirt holds.
#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
