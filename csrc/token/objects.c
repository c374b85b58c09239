/* The token's objects (PKCS#11 v2.40 5.7; attributes as in 4.4 data objects and 4.6 certificates): the device's
 * attestation certificates, if the backend has any, as public X.509 certificate objects (handles 1..n), then the
 * public data object "qrng health report" (handle n+1) whose CKA_VALUE is the report as the session last read it.
 * Every object is a token object, public and read-only. The certificates are parsed once, in C_Initialize. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "qrng_pkcs11.h"
#include "qrng_ckconst.h"
#include "token.h"
#include "internal.h"

#define MAX_CERT_ATTRS 14

static const qrng_backend *const B = &qrng_module_backend;

typedef struct { CK_ATTRIBUTE_TYPE type; const void *value; CK_ULONG len; } attr_t;

typedef struct {
    unsigned char *der, *subject, *issuer, *serial;   /* owned; the DER encodings */
    int der_len, subject_len, issuer_len, serial_len;
    unsigned char sha1[20];
    attr_t attrs[MAX_CERT_ATTRS];
    size_t n_attrs;
} cert_t;

static const CK_ULONG k_data = CKO_DATA, k_certificate = CKO_CERTIFICATE, k_x509 = CKC_X_509, k_category = 0;
static const CK_BBOOL k_true = 1, k_false = 0;
static const char k_health_label[] = "qrng health report", k_app[] = "qrng-ceremony";
static const char k_cert_label[] = "qrng device attestation";

static const CK_ATTRIBUTE_TYPE k_health_types[] = { CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_MODIFIABLE, CKA_LABEL,
                                                    CKA_APPLICATION, CKA_OBJECT_ID, CKA_VALUE };

static cert_t g_certs[QRNG_MAX_OBJECTS - 1];
static size_t g_n_certs;
static CK_ATTRIBUTE_TYPE g_cert_types[MAX_CERT_ATTRS];

static void add(cert_t *c, CK_ATTRIBUTE_TYPE t, const void *v, size_t len) {
    c->attrs[c->n_attrs].type = t;
    c->attrs[c->n_attrs].value = v;
    c->attrs[c->n_attrs].len = (CK_ULONG)len;
    g_cert_types[c->n_attrs] = t;
    c->n_attrs++;
}

static void free_cert(cert_t *c) {
    free(c->der);
    OPENSSL_free(c->subject);
    OPENSSL_free(c->issuer);
    OPENSSL_free(c->serial);
    memset(c, 0, sizeof *c);
}

/* one certificate from its DER: CKR_OK, CKR_HOST_MEMORY, or CKR_GENERAL_ERROR (not a certificate) */
static CK_RV parse(cert_t *c, const unsigned char *der, size_t len) {
    const unsigned char *p = der;
    X509 *x = len <= 1u << 20 ? d2i_X509(NULL, &p, (long)len) : NULL;
    if (!x || p != der + len) { X509_free(x); return CKR_GENERAL_ERROR; }
    c->der = malloc(len);
    if (c->der) memcpy(c->der, der, len);
    c->der_len = (int)len;
    c->subject_len = i2d_X509_NAME(X509_get_subject_name(x), &c->subject);
    c->issuer_len = i2d_X509_NAME(X509_get_issuer_name(x), &c->issuer);
    c->serial_len = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &c->serial);   /* CKA_SERIAL_NUMBER: DER INTEGER */
    X509_free(x);
    if (!c->der || c->subject_len <= 0 || c->issuer_len <= 0 || c->serial_len <= 0 ||
        !EVP_Digest(der, len, c->sha1, NULL, EVP_sha1(), NULL)) {
        free_cert(c);
        return CKR_HOST_MEMORY;
    }
    add(c, CKA_CLASS, &k_certificate, sizeof k_certificate);
    add(c, CKA_CERTIFICATE_TYPE, &k_x509, sizeof k_x509);
    add(c, CKA_TOKEN, &k_true, 1);
    add(c, CKA_PRIVATE, &k_false, 1);
    add(c, CKA_MODIFIABLE, &k_false, 1);
    add(c, CKA_TRUSTED, &k_false, 1);
    add(c, CKA_CERTIFICATE_CATEGORY, &k_category, sizeof k_category);
    add(c, CKA_LABEL, k_cert_label, sizeof k_cert_label - 1);
    add(c, CKA_ID, c->sha1, 8);                     /* the certificate's SHA-1 fingerprint, first 8 bytes */
    add(c, CKA_SUBJECT, c->subject, (size_t)c->subject_len);
    add(c, CKA_ISSUER, c->issuer, (size_t)c->issuer_len);
    add(c, CKA_SERIAL_NUMBER, c->serial, (size_t)c->serial_len);
    add(c, CKA_VALUE, c->der, len);
    add(c, CKA_CHECK_VALUE, c->sha1, 3);             /* 4.6.3: the first 3 bytes of the SHA-1 hash */
    return CKR_OK;
}

CK_RV qrng_objects_load(const qrng_backend *backend) {
    qrng_objects_free();
    for (size_t i = 0; backend->certificate && g_n_certs < QRNG_MAX_OBJECTS - 1; i++) {
        size_t len = 0;
        const unsigned char *der = backend->certificate(i, &len);
        if (!der) break;
        CK_RV rv = parse(&g_certs[g_n_certs], der, len);
        if (rv != CKR_OK) { qrng_objects_free(); return rv; }
        g_n_certs++;
    }
    return CKR_OK;
}

void qrng_objects_free(void) {
    for (size_t i = 0; i < g_n_certs; i++) free_cert(&g_certs[i]);
    g_n_certs = 0;
}

CK_ULONG qrng_object_count(void) { return (CK_ULONG)g_n_certs + 1; }
CK_OBJECT_HANDLE qrng_health_handle(void) { return (CK_OBJECT_HANDLE)g_n_certs + 1; }

static int health_attr(CK_ATTRIBUTE_TYPE t, const char *health, size_t health_len, attr_t *a) {
    switch (t) {
    case CKA_CLASS: a->value = &k_data; a->len = sizeof k_data; return 0;
    case CKA_TOKEN: a->value = &k_true; a->len = 1; return 0;
    case CKA_PRIVATE: case CKA_MODIFIABLE: a->value = &k_false; a->len = 1; return 0;
    case CKA_LABEL: a->value = k_health_label; a->len = sizeof k_health_label - 1; return 0;
    case CKA_APPLICATION: a->value = k_app; a->len = sizeof k_app - 1; return 0;
    case CKA_OBJECT_ID: a->value = ""; a->len = 0; return 0;
    case CKA_VALUE: a->value = health; a->len = (CK_ULONG)health_len; return 0;
    default: return -1;
    }
}

int qrng_object_attr(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t, const char *health, size_t health_len,
                     const void **value, CK_ULONG *len) {
    attr_t a = {t, NULL, 0};
    if (h == qrng_health_handle()) {
        if (health_attr(t, health, health_len, &a)) return -1;
    } else if (h >= 1 && h <= g_n_certs) {
        const cert_t *c = &g_certs[h - 1];
        size_t i = 0;
        while (i < c->n_attrs && c->attrs[i].type != t) i++;
        if (i == c->n_attrs) return -1;
        a = c->attrs[i];
    } else {
        return -1;
    }
    *value = a.value;
    *len = a.len;
    return 0;
}

size_t qrng_object_types(CK_OBJECT_HANDLE h, const CK_ATTRIBUTE_TYPE **types) {
    if (h == qrng_health_handle()) { *types = k_health_types; return sizeof k_health_types / sizeof k_health_types[0]; }
    if (h >= 1 && h <= g_n_certs) { *types = g_cert_types; return g_certs[h - 1].n_attrs; }
    *types = NULL;
    return 0;
}

/* --- the object calls (5.7) ------------------------------------------------------------------------------ */
static CK_RV snapshot(session_t *s) {
    size_t n = 0;
    char *h = B->health(&n);
    if (!h) return CKR_HOST_MEMORY;
    free(s->health);
    s->health = h;
    s->health_len = n;
    return CKR_OK;
}

static int matches(const session_t *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *t, CK_ULONG n) {
    for (CK_ULONG i = 0; i < n; i++) {
        const void *value;
        CK_ULONG len;
        if (qrng_object_attr(h, t[i].type, s->health, s->health_len, &value, &len) || len != t[i].ulValueLen ||
            (len && (!t[i].pValue || memcmp(value, t[i].pValue, len))))
            return 0;
    }
    return 1;
}

static CK_RV find_init(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pTemplate && ulCount) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : s->finding ? CKR_OPERATION_ACTIVE : CKR_OK;
    if (rv == CKR_OK && !s->health) rv = snapshot(s);
    if (rv == CKR_OK) {
        s->finding = 1;
        s->n_found = s->find_pos = 0;
        for (CK_OBJECT_HANDLE h = 1; h <= qrng_object_count(); h++)
            if (matches(s, h, pTemplate, ulCount)) s->found[s->n_found++] = h;
    }
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount) {
    CALL("C_FindObjectsInit", find_init(hSession, pTemplate, ulCount));
}

static CK_RV find(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,
                  CK_ULONG_PTR pulObjectCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulObjectCount || (!phObject && ulMaxObjectCount)) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : !s->finding ? CKR_OPERATION_NOT_INITIALIZED : CKR_OK;
    if (rv == CKR_OK) {
        *pulObjectCount = 0;
        while (*pulObjectCount < ulMaxObjectCount && s->find_pos < s->n_found)
            phObject[(*pulObjectCount)++] = s->found[s->find_pos++];
    }
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount,
                                CK_ULONG_PTR pulObjectCount) {
    CALL("C_FindObjects", find(hSession, phObject, ulMaxObjectCount, pulObjectCount));
}

static CK_RV find_final(CK_SESSION_HANDLE hSession) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : !s->finding ? CKR_OPERATION_NOT_INITIALIZED : CKR_OK;
    if (rv == CKR_OK) s->finding = 0;
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE hSession) { CALL("C_FindObjectsFinal", find_final(hSession)); }

/* one attribute into the caller's template entry (5.7 C_GetAttributeValue cases 1-5); returns the entry's code */
static CK_RV copy_attribute(const session_t *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE *t) {
    const void *value;
    CK_ULONG len;
    if (qrng_object_attr(h, t->type, s->health, s->health_len, &value, &len)) {
        t->ulValueLen = CK_UNAVAILABLE_INFORMATION;
        return CKR_ATTRIBUTE_TYPE_INVALID;
    }
    if (!t->pValue) { t->ulValueLen = len; return CKR_OK; }
    if (t->ulValueLen < len) { t->ulValueLen = CK_UNAVAILABLE_INFORMATION; return CKR_BUFFER_TOO_SMALL; }
    if (len) memcpy(t->pValue, value, len);
    t->ulValueLen = len;
    return CKR_OK;
}

static int object_exists(CK_OBJECT_HANDLE h) { return h >= 1 && h <= qrng_object_count(); }

/* C_GetAttributeValue (5.7): a size query (pValue NULL) for the health report's CKA_VALUE takes a new snapshot of
   the report, so the value read next has exactly the size just given */
static CK_RV get_attribute_value(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                                 CK_ULONG ulCount) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pTemplate && ulCount) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : !object_exists(hObject) ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
    for (CK_ULONG i = 0; rv == CKR_OK && hObject == qrng_health_handle() && i < ulCount; i++)
        if (pTemplate[i].type == CKA_VALUE && (!pTemplate[i].pValue || !s->health)) rv = snapshot(s);
    CK_RV worst = rv;
    for (CK_ULONG i = 0; rv == CKR_OK && i < ulCount; i++) {
        CK_RV one = copy_attribute(s, hObject, &pTemplate[i]);
        if (one == CKR_ATTRIBUTE_TYPE_INVALID || (one != CKR_OK && worst == CKR_OK)) worst = one;
    }
    qrng_unlock();
    return worst;
}

QRNG_EXPORT CK_RV C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
                                      CK_ULONG ulCount) {
    CALL("C_GetAttributeValue", get_attribute_value(hSession, hObject, pTemplate, ulCount));
}

static CK_RV get_object_size(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize) {
    if (!qrng_initialized) return CKR_CRYPTOKI_NOT_INITIALIZED;
    if (!pulSize) return CKR_ARGUMENTS_BAD;
    qrng_lock();
    session_t *s = qrng_session(hSession);
    CK_RV rv = !s ? CKR_SESSION_HANDLE_INVALID : !object_exists(hObject) ? CKR_OBJECT_HANDLE_INVALID : CKR_OK;
    if (rv == CKR_OK && hObject == qrng_health_handle() && !s->health) rv = snapshot(s);
    if (rv == CKR_OK) {             /* the sum of the attribute values' lengths */
        const CK_ATTRIBUTE_TYPE *types;
        size_t n = qrng_object_types(hObject, &types);
        const void *value;
        CK_ULONG len;
        *pulSize = 0;
        for (size_t i = 0; i < n; i++)
            if (!qrng_object_attr(hObject, types[i], s->health, s->health_len, &value, &len)) *pulSize += len;
    }
    qrng_unlock();
    return rv;
}

QRNG_EXPORT CK_RV C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize) {
    CALL("C_GetObjectSize", get_object_size(hSession, hObject, pulSize));
}

