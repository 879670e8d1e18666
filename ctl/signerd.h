/* ctl/signerd.h: vmgate's side of vmgate-signer (CONFIG_KEY_SIGNER): it
 * starts and supervises the signer, and gives it the keys.
 *
 * By default vmgate runs the signer as its child: a private directory
 * (mkdtemp under $RUNTIME_DIRECTORY, else /tmp, mode 0700) holds its
 * socket, signer.sock, which the workers connect to. A (re)start binds
 * signer.sock.new, starts build's vmgate-signer beside the vmgate binary
 * with that listening socket as its fd 3, loads the keys into it (at
 * startup the first store's, every one or vmgate stops; on a restart
 * every held store's, logging the ones that fail), and only then renames
 * the socket into place: a worker never reaches a signer still loading. When the child exits,
 * the socket is removed at once (handshakes fail fast meanwhile) and the
 * child restarted after a back-off (100 ms, doubling to 5 s; back to 100
 * ms once one has lived 10 s).
 *
 * With tls.signer, the signer is someone else's: vmgate only connects,
 * loads the keys, and reloads them whenever its control connection had to
 * be made again (the signer restarted).
 *
 * signerd remembers the certificate stores vmgate holds (the published
 * one, retired ones workers may still use, one a reload is building):
 * when one is freed, its keys that no other names are UNLOADed once the
 * handshakes that began on it are over (the handshake timeout and the
 * signer's own), so a key whose certificate left appliance.yaml stops
 * signing soon after the last worker has moved on from the store that
 * had it, and no handshake in progress loses the key it began with. The signer's key table
 * is one for all its clients: an external signer serves one vmgate.
 *
 * Our own signer gets a key as its file opened and passed (SCM_RIGHTS):
 * vmgate never reads a key's bytes, and the signer may run as a user that
 * cannot open the file. An external signer (tls.signer) gets the absolute
 * path only and opens the file itself, as its own user: vmgate's user
 * need not, and should not, be able to read it (the Debian package's
 * keys are root:vmgate-signer 0640). The signer checks that the key is
 * the certificate's (its key id) and answers before the next one.
 *
 * Everything runs on the thread that holds the control lock, and blocks
 * (a few milliseconds per key, 3 s at most per answer): control plane
 * only.
 */
#ifndef VMGATE_CTL_SIGNERD_H
#define VMGATE_CTL_SIGNERD_H

#include <stddef.h>
#include <stdint.h>

struct tls_ctx;

/* signerd_start starts (or, with |external|, connects to) the signer and
 * loads |tls|'s keys; |*out_path| is the socket the workers connect to.
 * A signer of vmgate's own serves with |threads| threads (one per
 * worker, at most SIGNER_THREADS_MAX); a freed store's keys stay until
 * handshakes of |handshake_ms| that began on it are over. 0, or -errno with a message in |err|. */
int signerd_start(const char *external, const struct tls_ctx *tls,
		  unsigned threads, uint32_t handshake_ms,
		  const char **out_path, char *err, size_t err_len);

/* signerd_load loads |tls|'s keys into the running signer: a reload
 * calls it before it publishes |tls|. 0, or -errno with |err|
 * ("KEYFILE: reason"). */
int signerd_load(const struct tls_ctx *tls, char *err, size_t err_len);

/* signerd_forget: vmgate has freed |tls| (no worker can reach it any
 * more, but a handshake that began on it may still sign). Once the
 * handshake timeout and the signer's own have passed, each of its keys
 * that no store vmgate then holds leaves the signer (UNLOAD, from
 * signerd_tick), with a `signer keys_dropped=N` line; what cannot be
 * sent then is sent once the signer is reached again. Called before
 * |tls| is freed. */
void signerd_forget(const struct tls_ctx *tls);

/* signerd_tick supervises: restarts an exited child (or reconnects to an
 * external signer) and loads every store vmgate holds into it (a key
 * that fails is logged, the others still load), and UNLOADs the keys
 * whose time has come. Under the control lock, every turn of the main
 * loop. */
void signerd_tick(void);

/* signerd_stop ends the child and removes its directory. */
void signerd_stop(void);

#endif
