/* tls/ticket.c: see ticket.h. */
#include "tls/ticket.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <openssl/aes.h>
#include <openssl/cipher.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

/* The keys, under a read-write lock. Readers are handshakes (the ticket
 * callback) and hold it for one copy of a key; the writer is the control
 * plane, a few times a rotation period, for one copy of the set: so the
 * data path never waits longer than a memcpy of TLS_TICKET_KEYS_MAX keys. */
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static struct tls_ticket_key keys[TLS_TICKET_KEYS_MAX];
static size_t keys_len;
/* This process's own keys, when no shared one is current: [0] encrypts
 * for half of life_s, then [1] takes it and decrypts until its not_after,
 * as BoringSSL rotates its own. */
static struct tls_ticket_key local[2];
static int64_t life_s = 2 * 86400; /* tls_ticket_enable's lifetime */
static pthread_once_t local_once = PTHREAD_ONCE_INIT;

/* Under the write lock (or once). */
static void local_new(int64_t now)
{
	local[1] = local[0];
	RAND_bytes((uint8_t *)&local[0], sizeof(local[0]));
	local[0].not_before = now;
	local[0].not_after = now + life_s;
}

static void local_init(void)
{
	local_new(time(NULL));
	OPENSSL_cleanse(&local[1], sizeof(local[1]));
}

/* Under a lock: whether local[0] has encrypted for long enough. */
static bool local_due(int64_t now)
{
	return now >= local[0].not_before + (life_s / 2 ? life_s / 2 : 1);
}

static void local_rotate(int64_t now)
{
	pthread_rwlock_wrlock(&lock);
	if (local_due(now))
		local_new(now);
	pthread_rwlock_unlock(&lock);
}

void tls_ticket_keys_set(const struct tls_ticket_key *k, size_t n)
{
	if (n > TLS_TICKET_KEYS_MAX)
		n = TLS_TICKET_KEYS_MAX;
	pthread_rwlock_wrlock(&lock);
	OPENSSL_cleanse(keys, sizeof(keys));
	memcpy(keys, k, n * sizeof(*k));
	keys_len = n;
	pthread_rwlock_unlock(&lock);
}

/* The key to encrypt with at |now|: the newest that has started and not
 * ended; false when none has (then the local key). */
static bool current_locked(struct tls_ticket_key *out, int64_t now)
{
	const struct tls_ticket_key *best = NULL;
	size_t i;

	for (i = 0; i < keys_len; i++)
		if (keys[i].not_before <= now && now < keys[i].not_after &&
		    (!best || keys[i].not_before > best->not_before))
			best = &keys[i];
	if (best)
		*out = *best;
	return best != NULL;
}

bool tls_ticket_current(uint8_t out_name[16])
{
	int64_t now = time(NULL);
	struct tls_ticket_key k;
	bool shared, due;

	pthread_once(&local_once, local_init);
	pthread_rwlock_rdlock(&lock);
	due = local_due(now);
	pthread_rwlock_unlock(&lock);
	if (due)
		local_rotate(now);
	pthread_rwlock_rdlock(&lock);
	shared = current_locked(&k, now);
	memcpy(out_name, shared ? k.name : local[0].name, 16);
	pthread_rwlock_unlock(&lock);
	OPENSSL_cleanse(&k, sizeof(k));
	return shared;
}

/* BoringSSL's callback (see SSL_CTX_set_tlsext_ticket_key_cb): encrypt
 * returns 1 or -1; decrypt 0 (unknown key: a full handshake), 1, or 2 (an
 * older key: resumed, and a ticket under the current key is issued). */
static int ticket_cb(SSL *ssl, uint8_t *name, uint8_t *iv,
		     EVP_CIPHER_CTX *cctx, HMAC_CTX *hctx, int encrypt)
{
	int64_t now = time(NULL);
	struct tls_ticket_key k;
	bool found = false, is_current = false, due;
	uint8_t cur[16];
	size_t i;
	int ret = -1;

	pthread_once(&local_once, local_init);
	pthread_rwlock_rdlock(&lock);
	due = local_due(now);
	pthread_rwlock_unlock(&lock);
	if (due)
		local_rotate(now);
	pthread_rwlock_rdlock(&lock);
	if (encrypt) {
		if (!current_locked(&k, now))
			k = local[0];
		found = true;
	} else {
		struct tls_ticket_key c;

		if (current_locked(&c, now))
			memcpy(cur, c.name, 16);
		else
			memcpy(cur, local[0].name, 16);
		OPENSSL_cleanse(&c, sizeof(c));
		for (i = 0; i < keys_len && !found; i++)
			if (!CRYPTO_memcmp(keys[i].name, name, 16) &&
			    now < keys[i].not_after) {
				k = keys[i];
				found = true;
			}
		for (i = 0; i < 2 && !found; i++)
			if (!CRYPTO_memcmp(local[i].name, name, 16) &&
			    now < local[i].not_after) {
				k = local[i];
				found = true;
			}
		is_current = found && !memcmp(cur, k.name, 16);
	}
	pthread_rwlock_unlock(&lock);
	if (!found)
		return 0;
	if (encrypt) {
		memcpy(name, k.name, 16);
		if (!RAND_bytes(iv, AES_BLOCK_SIZE) ||
		    !EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes,
					iv) ||
		    !HMAC_Init_ex(hctx, k.hmac, sizeof(k.hmac), EVP_sha256(),
				  NULL))
			goto out;
		ret = 1;
	} else {
		if (!HMAC_Init_ex(hctx, k.hmac, sizeof(k.hmac), EVP_sha256(),
				  NULL) ||
		    !EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes,
					iv))
			goto out;
		ret = is_current ? 1 : 2;
	}
out:
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

void tls_ticket_enable(SSL_CTX *ctx, uint32_t lifetime_s)
{
	pthread_rwlock_wrlock(&lock);
	life_s = lifetime_s;
	pthread_rwlock_unlock(&lock);
	pthread_once(&local_once, local_init);
	SSL_CTX_set_tlsext_ticket_key_cb(ctx, ticket_cb);
	SSL_CTX_set_timeout(ctx, lifetime_s);
	SSL_CTX_set_session_psk_dhe_timeout(ctx, lifetime_s);
}
