/* tls/ticket.h: session-ticket keys shared by a fleet.
 *
 * Without it BoringSSL encrypts tickets with keys of its own that it
 * rotates itself, so only the appliance that issued a ticket can resume
 * it. In fleet mode the control plane hands in keys that every appliance
 * holds (ctl/fleet.c takes them from etcd): tls_ticket_enable puts a
 * ticket key callback on an SSL_CTX, which encrypts with the current key
 * and decrypts with any key it holds, by its 16-byte name. Setting that
 * callback turns BoringSSL's own rotation off, so this module rotates:
 * the current key is the newest whose not_before has passed, and a key is
 * dropped once its not_after has (whether or not the control plane has
 * said so). While no shared key is current (before the first arrive, or
 * etcd down past their expiry), random keys of this process's own are
 * used, rotated as BoringSSL rotates its own: each encrypts for half the
 * ticket lifetime and decrypts for all of it.
 *
 * tls/ knows nothing of etcd: keys come in through tls_ticket_keys_set.
 */
#ifndef VMGATE_TLS_TICKET_H
#define VMGATE_TLS_TICKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

#define TLS_TICKET_KEYS_MAX 32

struct tls_ticket_key {
	uint8_t name[16];
	uint8_t aes[32];    /* AES-256-CBC */
	uint8_t hmac[32];   /* HMAC-SHA256 */
	int64_t not_before; /* Unix seconds: encrypts from then ... */
	int64_t not_after;  /* ... and decrypts until then */
};

/* tls_ticket_keys_set replaces the shared keys with |keys| (copied; at
 * most TLS_TICKET_KEYS_MAX are kept). Control plane, any thread. */
void tls_ticket_keys_set(const struct tls_ticket_key *keys, size_t n);

/* tls_ticket_current writes the name of the key tickets are encrypted
 * with now, and says whether it is a shared one (false: the local key). */
bool tls_ticket_current(uint8_t out_name[16]);

/* tls_ticket_enable makes |ctx| use the shared keys, with tickets valid
 * for |lifetime_s| seconds. */
void tls_ticket_enable(SSL_CTX *ctx, uint32_t lifetime_s);

#endif
