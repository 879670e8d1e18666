/* fuzz/testcert.h: throwaway keys and self-signed certificates for the
 * fuzz targets, made in memory with BoringSSL (no openssl(1), no files
 * committed). Not for anything but tests.
 */
#ifndef VMGATE_FUZZ_TESTCERT_H
#define VMGATE_FUZZ_TESTCERT_H

#include <stdbool.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* testcert_make makes a P-256 (|rsa| false) or RSA-2048 key and a
 * self-signed certificate for |cn| whose DNS SANs are the |nsans| names of
 * |sans|. Returns false on failure; free both with EVP_PKEY_free and
 * X509_free. */
bool testcert_make(EVP_PKEY **out_key, X509 **out_cert, bool rsa,
		   const char *cn, const char *const *sans, int nsans);

/* testcert_write writes them as PEM to |cert_path| and |key_path|. */
bool testcert_write(EVP_PKEY *key, X509 *cert, const char *cert_path,
		    const char *key_path);

/* testcert_make_files makes a certificate as testcert_make does and
 * writes it to DIR/BASE.pem and its key to DIR/BASE.key. */
bool testcert_make_files(const char *dir, const char *base, bool rsa,
			 const char *cn, const char *const *sans, int nsans);

/* testcert_tmpdir returns /tmp/vmgate-fuzz-TAG-UID, made if missing and
 * reused by later runs (static storage), or NULL. testcert_tmpdir_remove
 * deletes it and what is in it (one level deep). */
const char *testcert_tmpdir(const char *tag);
void testcert_tmpdir_remove(void);

#endif
