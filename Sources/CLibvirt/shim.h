// libvirt's C library (Debian's libvirt-dev): its API imports into Swift as it is.
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
