/* The hand-written half of libqrng-pkcs11.so: interpreter start-up, locking, fork safety and the
   C_GenerateRandom fast path. The declarations below are also the cffi cdef (Python calls them). */
#ifndef QRNG_PKCS11_MODULE_H
#define QRNG_PKCS11_MODULE_H
void qrng_session_mark(CK_ULONG handle, int open);
void qrng_fast_configure(int enabled);
void qrng_buffer_clear(void);
int qrng_started_python(void);
int qrng_enter(const char *fn);
void qrng_leave(void);
#endif
