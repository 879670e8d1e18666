/* fuzz/testcert.c: see testcert.h. */
#include "fuzz/testcert.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

static EVP_PKEY *make_key(bool rsa)
{
	EVP_PKEY *pkey = EVP_PKEY_new();

	if (!pkey)
		return NULL;
	if (rsa) {
		RSA *r = RSA_new();
		BIGNUM *e = BN_new();

		if (!r || !e || !BN_set_word(e, RSA_F4) ||
		    !RSA_generate_key_ex(r, 2048, e, NULL) ||
		    !EVP_PKEY_assign_RSA(pkey, r)) {
			RSA_free(r);
			BN_free(e);
			EVP_PKEY_free(pkey);
			return NULL;
		}
		BN_free(e);
	} else {
		EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);

		if (!ec || !EC_KEY_generate_key(ec) ||
		    !EVP_PKEY_assign_EC_KEY(pkey, ec)) {
			EC_KEY_free(ec);
			EVP_PKEY_free(pkey);
			return NULL;
		}
	}
	return pkey;
}

static bool add_sans(X509 *x, const char *const *sans, int nsans)
{
	GENERAL_NAMES *names = GENERAL_NAMES_new();
	bool ok = names != NULL;

	for (int i = 0; ok && i < nsans; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		ok = g && s && ASN1_STRING_set(s, sans[i], -1);
		if (ok) {
			GENERAL_NAME_set0_value(g, GEN_DNS, s);
			s = NULL;
			ok = sk_GENERAL_NAME_push(names, g) != 0;
			if (ok)
				g = NULL;
		}
		ASN1_IA5STRING_free(s);
		GENERAL_NAME_free(g);
	}
	ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0);
	GENERAL_NAMES_free(names);
	return ok;
}

bool testcert_make(EVP_PKEY **out_key, X509 **out_cert, bool rsa,
		   const char *cn, const char *const *sans, int nsans)
{
	EVP_PKEY *pkey = make_key(rsa);
	X509 *x = X509_new();
	X509_NAME *name;

	if (!pkey || !x)
		goto err;
	name = X509_get_subject_name(x);
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !ASN1_INTEGER_set(X509_get_serialNumber(x), 1) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365) ||
	    !X509_set_pubkey(x, pkey) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const uint8_t *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, name) ||
	    (nsans && !add_sans(x, sans, nsans)) ||
	    !X509_sign(x, pkey, EVP_sha256()))
		goto err;
	*out_key = pkey;
	*out_cert = x;
	return true;
err:
	EVP_PKEY_free(pkey);
	X509_free(x);
	return false;
}

bool testcert_write(EVP_PKEY *key, X509 *cert, const char *cert_path,
		    const char *key_path)
{
	FILE *c = fopen(cert_path, "w"), *k = fopen(key_path, "w");
	bool ok = c && k && PEM_write_X509(c, cert) &&
		  PEM_write_PrivateKey(k, key, NULL, NULL, 0, NULL, NULL);

	if (c && fclose(c))
		ok = false;
	if (k && fclose(k))
		ok = false;
	return ok;
}

bool testcert_make_files(const char *dir, const char *base, bool rsa,
			 const char *cn, const char *const *sans, int nsans)
{
	char cert_path[256], key_path[256];
	EVP_PKEY *key;
	X509 *cert;
	bool ok;

	snprintf(cert_path, sizeof(cert_path), "%s/%s.pem", dir, base);
	snprintf(key_path, sizeof(key_path), "%s/%s.key", dir, base);
	if (!testcert_make(&key, &cert, rsa, cn, sans, nsans))
		return false;
	ok = testcert_write(key, cert, cert_path, key_path);
	EVP_PKEY_free(key);
	X509_free(cert);
	return ok;
}

static char tmpdir[64];

void testcert_tmpdir_remove(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[320];

	if (!tmpdir[0])
		return;
	if (d) {
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
			if (unlink(path) != 0)
				rmdir(path);
		}
		closedir(d);
	}
	rmdir(tmpdir);
}

/* One fixed directory per target and user, emptied and reused by every
 * run: libFuzzer ends with _Exit, so nothing at exit would remove it. */
const char *testcert_tmpdir(const char *tag)
{
	if (tmpdir[0])
		return tmpdir;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vmgate-fuzz-%s-%u", tag,
		 (unsigned)getuid());
	if (mkdir(tmpdir, 0700) != 0 && errno != EEXIST) {
		tmpdir[0] = '\0';
		return NULL;
	}
	return tmpdir;
}
