/* C_GetFunctionList and the PKCS#11 v3.0 interface discovery (v3.0 5.4), shared by libqrng-pkcs11.so and
   libqrng-pkcs11-qrngd.so: each links its own generated qrng_function_list. */
#include <string.h>

#include "qrng_pkcs11.h"

QRNG_EXPORT CK_RV C_GetFunctionList(void *ppFunctionList) {
    if (!ppFunctionList) return CKR_ARGUMENTS_BAD;
    *(CK_FUNCTION_LIST **)ppFunctionList = &qrng_function_list;
    return CKR_OK;
}

/* one interface, "PKCS 11" version 2.40, pointing at the list above */
static CK_INTERFACE g_interface = { (CK_CHAR *)"PKCS 11", &qrng_function_list, 0 };

QRNG_EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount) {
    if (!pulCount) return CKR_ARGUMENTS_BAD;
    if (!pInterfacesList) { *pulCount = 1; return CKR_OK; }
    if (*pulCount < 1) { *pulCount = 1; return CKR_BUFFER_TOO_SMALL; }
    pInterfacesList[0] = g_interface;
    *pulCount = 1;
    return CKR_OK;
}

QRNG_EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                                 CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags) {
    if (!ppInterface) return CKR_ARGUMENTS_BAD;
    if (pInterfaceName && strcmp((const char *)pInterfaceName, "PKCS 11") != 0) return CKR_ARGUMENTS_BAD;
    if (pVersion && (pVersion->major != 2 || pVersion->minor != 40)) return CKR_ARGUMENTS_BAD;
    if (flags & ~g_interface.flags) return CKR_ARGUMENTS_BAD;
    *ppInterface = &g_interface;
    return CKR_OK;
}
