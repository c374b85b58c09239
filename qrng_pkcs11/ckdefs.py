"""PKCS#11 constants and the C declarations, kept as data (PKCS#11 Base Specification v2.40, v3.0).

One table (FUNCTIONS) feeds the cffi cdef, the C function list and the C wrappers, so the three
cannot drift. Values are the specification's.
"""

from __future__ import annotations

# --- return values (v2.40 section 3.6) ---------------------------------------------------------------
CKR_OK = 0x000
CKR_CANCEL = 0x001
CKR_HOST_MEMORY = 0x002
CKR_SLOT_ID_INVALID = 0x003
CKR_GENERAL_ERROR = 0x005
CKR_FUNCTION_FAILED = 0x006
CKR_ARGUMENTS_BAD = 0x007
CKR_NO_EVENT = 0x008
CKR_CANT_LOCK = 0x00A
CKR_ATTRIBUTE_SENSITIVE = 0x011
CKR_ATTRIBUTE_TYPE_INVALID = 0x012
CKR_ATTRIBUTE_VALUE_INVALID = 0x013
CKR_DEVICE_ERROR = 0x030
CKR_DEVICE_MEMORY = 0x031
CKR_DEVICE_REMOVED = 0x032
CKR_FUNCTION_NOT_PARALLEL = 0x051
CKR_FUNCTION_NOT_SUPPORTED = 0x054
CKR_MECHANISM_INVALID = 0x070
CKR_OBJECT_HANDLE_INVALID = 0x082
CKR_OPERATION_ACTIVE = 0x090
CKR_OPERATION_NOT_INITIALIZED = 0x091
CKR_PIN_INCORRECT = 0x0A0
CKR_SESSION_CLOSED = 0x0B0
CKR_SESSION_COUNT = 0x0B1
CKR_SESSION_HANDLE_INVALID = 0x0B3
CKR_SESSION_PARALLEL_NOT_SUPPORTED = 0x0B4
CKR_SESSION_READ_ONLY = 0x0B5
CKR_SESSION_READ_ONLY_EXISTS = 0x0B7
CKR_SESSION_READ_WRITE_SO_EXISTS = 0x0B8
CKR_TEMPLATE_INCONSISTENT = 0x0D1
CKR_TOKEN_NOT_PRESENT = 0x0E0
CKR_TOKEN_NOT_RECOGNIZED = 0x0E1
CKR_TOKEN_WRITE_PROTECTED = 0x0E2
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_USER_TYPE_INVALID = 0x103
CKR_USER_ANOTHER_ALREADY_LOGGED_IN = 0x104
CKR_USER_TOO_MANY_TYPES = 0x105
CKR_RANDOM_SEED_NOT_SUPPORTED = 0x120
CKR_RANDOM_NO_RNG = 0x121
CKR_BUFFER_TOO_SMALL = 0x150
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKR_MUTEX_BAD = 0x1A0
CKR_MUTEX_NOT_LOCKED = 0x1A1

CKR_NAMES = {v: k for k, v in dict(globals()).items() if k.startswith("CKR_") and isinstance(v, int)}

# --- flags ---------------------------------------------------------------------------------------------
CKF_TOKEN_PRESENT = 0x1
CKF_REMOVABLE_DEVICE = 0x2
CKF_HW_SLOT = 0x4
CKF_RNG = 0x1
CKF_WRITE_PROTECTED = 0x2
CKF_LOGIN_REQUIRED = 0x4
CKF_USER_PIN_INITIALIZED = 0x8
CKF_TOKEN_INITIALIZED = 0x400
CKF_ERROR_STATE = 0x01000000  # v3.0: the token failed a self-test and is in an error state
CKF_RW_SESSION = 0x2
CKF_SERIAL_SESSION = 0x4
CKF_LIBRARY_CANT_CREATE_OS_THREADS = 0x1
CKF_OS_LOCKING_OK = 0x2
CKF_DONT_BLOCK = 0x1

# --- users and session states (5.5, 5.6) ------------------------------------------------------------------
CKU_SO = 0
CKU_USER = 1
CKU_CONTEXT_SPECIFIC = 2
CKS_RO_PUBLIC_SESSION = 0
CKS_RO_USER_FUNCTIONS = 1
CKS_RW_PUBLIC_SESSION = 2
CKS_RW_USER_FUNCTIONS = 3
CKS_RW_SO_FUNCTIONS = 4

# --- objects and attributes -----------------------------------------------------------------------------
CKO_DATA = 0
CKO_CERTIFICATE = 1
CKC_X_509 = 0
CKA_CLASS = 0x000
CKA_TOKEN = 0x001
CKA_PRIVATE = 0x002
CKA_LABEL = 0x003
CKA_APPLICATION = 0x010
CKA_VALUE = 0x011
CKA_OBJECT_ID = 0x012
CKA_CERTIFICATE_TYPE = 0x080
CKA_ISSUER = 0x081
CKA_SERIAL_NUMBER = 0x082
CKA_TRUSTED = 0x086
CKA_CERTIFICATE_CATEGORY = 0x087
CKA_CHECK_VALUE = 0x090
CKA_SUBJECT = 0x101
CKA_ID = 0x102
CKA_MODIFIABLE = 0x170
CKA_COPYABLE = 0x171
CKA_DESTROYABLE = 0x172
CKA_START_DATE = 0x110
CKA_END_DATE = 0x111

CK_UNAVAILABLE_INFORMATION = 0xFFFFFFFFFFFFFFFF
CK_EFFECTIVELY_INFINITE = 0
CK_INVALID_HANDLE = 0

# --- C declarations -----------------------------------------------------------------------------------------
TYPES = r"""
typedef unsigned char CK_BYTE;
typedef CK_BYTE CK_CHAR;
typedef CK_BYTE CK_UTF8CHAR;
typedef CK_BYTE CK_BBOOL;
typedef unsigned long CK_ULONG;
typedef long CK_LONG;
typedef CK_ULONG CK_FLAGS;
typedef CK_BYTE *CK_BYTE_PTR;
typedef CK_CHAR *CK_CHAR_PTR;
typedef CK_UTF8CHAR *CK_UTF8CHAR_PTR;
typedef CK_ULONG *CK_ULONG_PTR;
typedef void *CK_VOID_PTR;
typedef CK_VOID_PTR *CK_VOID_PTR_PTR;
typedef CK_ULONG CK_RV;
typedef CK_ULONG CK_SLOT_ID;
typedef CK_SLOT_ID *CK_SLOT_ID_PTR;
typedef CK_ULONG CK_SESSION_HANDLE;
typedef CK_SESSION_HANDLE *CK_SESSION_HANDLE_PTR;
typedef CK_ULONG CK_OBJECT_HANDLE;
typedef CK_OBJECT_HANDLE *CK_OBJECT_HANDLE_PTR;
typedef CK_ULONG CK_USER_TYPE;
typedef CK_ULONG CK_STATE;
typedef CK_ULONG CK_MECHANISM_TYPE;
typedef CK_MECHANISM_TYPE *CK_MECHANISM_TYPE_PTR;
typedef CK_ULONG CK_ATTRIBUTE_TYPE;
typedef CK_ULONG CK_NOTIFICATION;
typedef struct CK_VERSION { CK_BYTE major; CK_BYTE minor; } CK_VERSION;
typedef CK_VERSION *CK_VERSION_PTR;
typedef struct CK_INFO {
  CK_VERSION cryptokiVersion; CK_UTF8CHAR manufacturerID[32]; CK_FLAGS flags;
  CK_UTF8CHAR libraryDescription[32]; CK_VERSION libraryVersion;
} CK_INFO;
typedef CK_INFO *CK_INFO_PTR;
typedef struct CK_SLOT_INFO {
  CK_UTF8CHAR slotDescription[64]; CK_UTF8CHAR manufacturerID[32]; CK_FLAGS flags;
  CK_VERSION hardwareVersion; CK_VERSION firmwareVersion;
} CK_SLOT_INFO;
typedef CK_SLOT_INFO *CK_SLOT_INFO_PTR;
typedef struct CK_TOKEN_INFO {
  CK_UTF8CHAR label[32]; CK_UTF8CHAR manufacturerID[32]; CK_UTF8CHAR model[16]; CK_CHAR serialNumber[16];
  CK_FLAGS flags; CK_ULONG ulMaxSessionCount; CK_ULONG ulSessionCount; CK_ULONG ulMaxRwSessionCount;
  CK_ULONG ulRwSessionCount; CK_ULONG ulMaxPinLen; CK_ULONG ulMinPinLen; CK_ULONG ulTotalPublicMemory;
  CK_ULONG ulFreePublicMemory; CK_ULONG ulTotalPrivateMemory; CK_ULONG ulFreePrivateMemory;
  CK_VERSION hardwareVersion; CK_VERSION firmwareVersion; CK_CHAR utcTime[16];
} CK_TOKEN_INFO;
typedef CK_TOKEN_INFO *CK_TOKEN_INFO_PTR;
typedef struct CK_SESSION_INFO {
  CK_SLOT_ID slotID; CK_STATE state; CK_FLAGS flags; CK_ULONG ulDeviceError;
} CK_SESSION_INFO;
typedef CK_SESSION_INFO *CK_SESSION_INFO_PTR;
typedef struct CK_ATTRIBUTE { CK_ATTRIBUTE_TYPE type; CK_VOID_PTR pValue; CK_ULONG ulValueLen; } CK_ATTRIBUTE;
typedef CK_ATTRIBUTE *CK_ATTRIBUTE_PTR;
typedef struct CK_MECHANISM { CK_MECHANISM_TYPE mechanism; CK_VOID_PTR pParameter; CK_ULONG ulParameterLen; } CK_MECHANISM;
typedef CK_MECHANISM *CK_MECHANISM_PTR;
typedef struct CK_MECHANISM_INFO { CK_ULONG ulMinKeySize; CK_ULONG ulMaxKeySize; CK_FLAGS flags; } CK_MECHANISM_INFO;
typedef CK_MECHANISM_INFO *CK_MECHANISM_INFO_PTR;
typedef CK_RV (*CK_NOTIFY)(CK_SESSION_HANDLE, CK_NOTIFICATION, CK_VOID_PTR);
typedef CK_RV (*CK_CREATEMUTEX)(CK_VOID_PTR_PTR);
typedef CK_RV (*CK_DESTROYMUTEX)(CK_VOID_PTR);
typedef CK_RV (*CK_LOCKMUTEX)(CK_VOID_PTR);
typedef CK_RV (*CK_UNLOCKMUTEX)(CK_VOID_PTR);
typedef struct CK_C_INITIALIZE_ARGS {
  CK_CREATEMUTEX CreateMutex; CK_DESTROYMUTEX DestroyMutex; CK_LOCKMUTEX LockMutex; CK_UNLOCKMUTEX UnlockMutex;
  CK_FLAGS flags; CK_VOID_PTR pReserved;
} CK_C_INITIALIZE_ARGS;
typedef CK_C_INITIALIZE_ARGS *CK_C_INITIALIZE_ARGS_PTR;
"""

# (name, parameters) in CK_FUNCTION_LIST order (v2.40 section 5.2). Each parameter is "TYPE name".
FUNCTIONS: list[tuple[str, list[str]]] = [
    ("C_Initialize", ["CK_VOID_PTR pInitArgs"]),
    ("C_Finalize", ["CK_VOID_PTR pReserved"]),
    ("C_GetInfo", ["CK_INFO_PTR pInfo"]),
    ("C_GetFunctionList", ["void *ppFunctionList"]),
    ("C_GetSlotList", ["CK_BBOOL tokenPresent", "CK_SLOT_ID_PTR pSlotList", "CK_ULONG_PTR pulCount"]),
    ("C_GetSlotInfo", ["CK_SLOT_ID slotID", "CK_SLOT_INFO_PTR pInfo"]),
    ("C_GetTokenInfo", ["CK_SLOT_ID slotID", "CK_TOKEN_INFO_PTR pInfo"]),
    ("C_GetMechanismList", ["CK_SLOT_ID slotID", "CK_MECHANISM_TYPE_PTR pMechanismList", "CK_ULONG_PTR pulCount"]),
    ("C_GetMechanismInfo", ["CK_SLOT_ID slotID", "CK_MECHANISM_TYPE type", "CK_MECHANISM_INFO_PTR pInfo"]),
    ("C_InitToken", ["CK_SLOT_ID slotID", "CK_UTF8CHAR_PTR pPin", "CK_ULONG ulPinLen", "CK_UTF8CHAR_PTR pLabel"]),
    ("C_InitPIN", ["CK_SESSION_HANDLE hSession", "CK_UTF8CHAR_PTR pPin", "CK_ULONG ulPinLen"]),
    ("C_SetPIN", ["CK_SESSION_HANDLE hSession", "CK_UTF8CHAR_PTR pOldPin", "CK_ULONG ulOldLen",
                  "CK_UTF8CHAR_PTR pNewPin", "CK_ULONG ulNewLen"]),
    ("C_OpenSession", ["CK_SLOT_ID slotID", "CK_FLAGS flags", "CK_VOID_PTR pApplication", "CK_NOTIFY Notify",
                       "CK_SESSION_HANDLE_PTR phSession"]),
    ("C_CloseSession", ["CK_SESSION_HANDLE hSession"]),
    ("C_CloseAllSessions", ["CK_SLOT_ID slotID"]),
    ("C_GetSessionInfo", ["CK_SESSION_HANDLE hSession", "CK_SESSION_INFO_PTR pInfo"]),
    ("C_GetOperationState", ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pOperationState",
                             "CK_ULONG_PTR pulOperationStateLen"]),
    ("C_SetOperationState", ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pOperationState",
                             "CK_ULONG ulOperationStateLen", "CK_OBJECT_HANDLE hEncryptionKey",
                             "CK_OBJECT_HANDLE hAuthenticationKey"]),
    ("C_Login", ["CK_SESSION_HANDLE hSession", "CK_USER_TYPE userType", "CK_UTF8CHAR_PTR pPin", "CK_ULONG ulPinLen"]),
    ("C_Logout", ["CK_SESSION_HANDLE hSession"]),
    ("C_CreateObject", ["CK_SESSION_HANDLE hSession", "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulCount",
                        "CK_OBJECT_HANDLE_PTR phObject"]),
    ("C_CopyObject", ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE hObject", "CK_ATTRIBUTE_PTR pTemplate",
                      "CK_ULONG ulCount", "CK_OBJECT_HANDLE_PTR phNewObject"]),
    ("C_DestroyObject", ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE hObject"]),
    ("C_GetObjectSize", ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE hObject", "CK_ULONG_PTR pulSize"]),
    ("C_GetAttributeValue", ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE hObject", "CK_ATTRIBUTE_PTR pTemplate",
                             "CK_ULONG ulCount"]),
    ("C_SetAttributeValue", ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE hObject", "CK_ATTRIBUTE_PTR pTemplate",
                             "CK_ULONG ulCount"]),
    ("C_FindObjectsInit", ["CK_SESSION_HANDLE hSession", "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulCount"]),
    ("C_FindObjects", ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE_PTR phObject", "CK_ULONG ulMaxObjectCount",
                       "CK_ULONG_PTR pulObjectCount"]),
    ("C_FindObjectsFinal", ["CK_SESSION_HANDLE hSession"]),
]

_CRYPT = [
    ("EncryptInit", "init"), ("Encrypt", "oneshot"), ("EncryptUpdate", "update"), ("EncryptFinal", "final"),
    ("DecryptInit", "init"), ("Decrypt", "oneshot"), ("DecryptUpdate", "update"), ("DecryptFinal", "final"),
    ("DigestInit", "dinit"), ("Digest", "oneshot"), ("DigestUpdate", "dupdate"), ("DigestKey", "dkey"),
    ("DigestFinal", "final"),
    ("SignInit", "init"), ("Sign", "oneshot"), ("SignUpdate", "dupdate"), ("SignFinal", "final"),
    ("SignRecoverInit", "init"), ("SignRecover", "oneshot"),
    ("VerifyInit", "init"), ("Verify", "verify"), ("VerifyUpdate", "dupdate"), ("VerifyFinal", "vfinal"),
    ("VerifyRecoverInit", "init"), ("VerifyRecover", "oneshot"),
    ("DigestEncryptUpdate", "update"), ("DecryptDigestUpdate", "update"), ("SignEncryptUpdate", "update"),
    ("DecryptVerifyUpdate", "update"),
]
_SHAPES = {
    "init": ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism", "CK_OBJECT_HANDLE hKey"],
    "dinit": ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism"],
    "oneshot": ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pIn", "CK_ULONG ulInLen", "CK_BYTE_PTR pOut",
                "CK_ULONG_PTR pulOutLen"],
    "update": ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pIn", "CK_ULONG ulInLen", "CK_BYTE_PTR pOut",
               "CK_ULONG_PTR pulOutLen"],
    "dupdate": ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pPart", "CK_ULONG ulPartLen"],
    "dkey": ["CK_SESSION_HANDLE hSession", "CK_OBJECT_HANDLE hKey"],
    "final": ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pOut", "CK_ULONG_PTR pulOutLen"],
    "verify": ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pData", "CK_ULONG ulDataLen", "CK_BYTE_PTR pSignature",
               "CK_ULONG ulSignatureLen"],
    "vfinal": ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pSignature", "CK_ULONG ulSignatureLen"],
}
FUNCTIONS += [(f"C_{name}", _SHAPES[shape]) for name, shape in _CRYPT]
FUNCTIONS += [
    ("C_GenerateKey", ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism", "CK_ATTRIBUTE_PTR pTemplate",
                       "CK_ULONG ulCount", "CK_OBJECT_HANDLE_PTR phKey"]),
    ("C_GenerateKeyPair", ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism",
                           "CK_ATTRIBUTE_PTR pPublicKeyTemplate", "CK_ULONG ulPublicKeyAttributeCount",
                           "CK_ATTRIBUTE_PTR pPrivateKeyTemplate", "CK_ULONG ulPrivateKeyAttributeCount",
                           "CK_OBJECT_HANDLE_PTR phPublicKey", "CK_OBJECT_HANDLE_PTR phPrivateKey"]),
    ("C_WrapKey", ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism", "CK_OBJECT_HANDLE hWrappingKey",
                   "CK_OBJECT_HANDLE hKey", "CK_BYTE_PTR pWrappedKey", "CK_ULONG_PTR pulWrappedKeyLen"]),
    ("C_UnwrapKey", ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism", "CK_OBJECT_HANDLE hUnwrappingKey",
                     "CK_BYTE_PTR pWrappedKey", "CK_ULONG ulWrappedKeyLen", "CK_ATTRIBUTE_PTR pTemplate",
                     "CK_ULONG ulAttributeCount", "CK_OBJECT_HANDLE_PTR phKey"]),
    ("C_DeriveKey", ["CK_SESSION_HANDLE hSession", "CK_MECHANISM_PTR pMechanism", "CK_OBJECT_HANDLE hBaseKey",
                     "CK_ATTRIBUTE_PTR pTemplate", "CK_ULONG ulAttributeCount", "CK_OBJECT_HANDLE_PTR phKey"]),
    ("C_SeedRandom", ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pSeed", "CK_ULONG ulSeedLen"]),
    ("C_GenerateRandom", ["CK_SESSION_HANDLE hSession", "CK_BYTE_PTR pRandomData", "CK_ULONG ulRandomLen"]),
    ("C_GetFunctionStatus", ["CK_SESSION_HANDLE hSession"]),
    ("C_CancelFunction", ["CK_SESSION_HANDLE hSession"]),
    ("C_WaitForSlotEvent", ["CK_FLAGS flags", "CK_SLOT_ID_PTR pSlot", "CK_VOID_PTR pReserved"]),
]
assert len(FUNCTIONS) == 68, len(FUNCTIONS)

