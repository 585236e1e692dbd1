#ifndef SPARC_CZSTD_SHIM_H
#define SPARC_CZSTD_SHIM_H
#include <zstd.h>
#endif
