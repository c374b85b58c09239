/* What the in-process module's C offers its Python half. The declarations below are also the cffi cdef. */
#ifndef QRNG_PKCS11_MODULE_H
#define QRNG_PKCS11_MODULE_H
void qrng_buffer_clear(void);
int qrng_started_python(void);
#endif
