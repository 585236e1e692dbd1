#ifndef SPARC_COPENSSL_SHIM_H
#define SPARC_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#endif
