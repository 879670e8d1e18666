/* signer/main.c: vmgate-signer, the process that holds the private keys.
 *
 *   vmgate-signer --listen-fd N [--user NAME]    N is a listening Unix
 *                                                socket (vmgate's, or
 *                                                systemd's)
 *   vmgate-signer --socket PATH [--user NAME]    on its own: binds PATH
 *                                                (mode 0600)
 *   --socket-group NAME: with --socket, the socket is mode 0660 and group
 *   NAME (vmgate's), for a vmgate that runs as another user; set before
 *   dropping to --user, so the signer need not be in that group
 *   --quiet: only WARN and ERROR lines (vmgate passes it below log_level
 *   info)
 *   --supervised: vmgate's own child. SIGTERM and SIGINT are ignored:
 *   they come to the whole process group (systemd's stop, a terminal's
 *   Ctrl-C) while vmgate drains, and the handshakes of that drain still
 *   need their signatures. It goes on SIGUSR1 (vmgate's signerd_stop)
 *   or when vmgate dies (PR_SET_PDEATHSIG).
 *   --sched batch|normal: its scheduling policy, SCHED_BATCH by default
 *   (see sched_batch)
 *   --threads N: serving threads (see below)
 *
 * It answers the frames of signer/keyop.h: LOAD reads a PEM private key
 * (from the descriptor passed with it, else from its path) and keeps it
 * under its key id, which must be the SHA-256 of its public key's DER;
 * UNLOAD forgets one (vmgate's certificates no longer name it); SIGN
 * signs with one, in ECDSA, RSA-PSS, RSA PKCS#1 or Ed25519, with
 * OpenSSL 3's libcrypto (on the machine this was measured on it signs
 * P-256 about three times faster than Debian's BoringSSL: see the README).
 * It never sees a TLS record: only the message to sign.
 *
 * --threads N threads (vmgate passes its number of workers; on its own
 * the CPUs it may run on), each with its own epoll over the clients it
 * was given: the first thread accepts and hands each new client to the
 * thread with the fewest, so every vmgate worker's signatures have a
 * thread, and a core, of their own. Non-blocking sockets; every client
 * may have many requests in flight, answered in order (each answer
 * carries its request's id). The keys are shared under a lock that LOAD
 * and UNLOAD take to write and SIGN to read; each thread signs with
 * contexts of its own (struct key_ctxs). A malformed frame closes that
 * client's socket and is logged. Before serving it drops what it does not need: to the user
 * --user names (or vmgate-signer if that user exists), no capabilities,
 * no new privileges, not dumpable (no core file, no ptrace by its user),
 * and a seccomp filter that refuses new sockets, exec, ptrace, new
 * processes, io_uring, namespaces and eBPF (signer/sandbox.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "signer/keyop.h"
#include "signer/sandbox.h"

#define SIGNER_CLIENTS_MAX 1024
#define SIGNER_KEYS_MAX 65536
/* A key file's largest size: an RSA-8192 key is ~6.5 KB of PEM; a file
 * with the certificate chain in it too stays far below. */
#define SIGNER_KEY_FILE_MAX 1048576
#define STR_(x) #x
#define STR(x) STR_(x)
/* Answers waiting for a client that does not read: past this, stop
 * reading its requests until it catches up. */
#define SIGNER_OUT_MAX (256 * 1024)
#define SIGNER_IN_CAP (16 * KEYOP_FRAME_MAX)
#define SIGNER_FDS_MAX 8

/* A serving thread: its epoll, the pipe thread 0 hands it clients (and
 * the wake-up to stop) through, and its counts. */
struct thread {
	unsigned index;
	pthread_t tid;
	int ep;
	int pipe_r, pipe_w;
	atomic_uint nclients;
	unsigned long long signs, sign_errors;
};

struct client {
	struct thread *t; /* the one thread that serves it */
	int fd;
	uint8_t in[SIGNER_IN_CAP];
	size_t in_len;
	uint8_t *out;
	size_t out_len, out_cap;
	int fds[SIGNER_FDS_MAX]; /* passed with LOADs, in arrival order */
	unsigned nfds;
	uint32_t events; /* what epoll watches for it */
};

/* A key's signing contexts, made on its first SIGN with a scheme and kept:
 * EVP_DigestSignInit per signature costs ~3 us of OpenSSL 3's provider
 * set-up against a ~25 us P-256 signature. */
#define KEY_CTX_MAX 4
struct key_ctx {
	uint16_t sigalg;
	EVP_MD *md;         /* fetched once; NULL for Ed25519 (no prehash) */
	EVP_PKEY_CTX *pctx; /* signs a digest; NULL for Ed25519 */
};

/* One thread's contexts for one key: only that thread touches them,
 * under keys_lock read; UNLOAD frees them under keys_lock write. */
struct key_ctxs {
	struct key_ctx ctx[KEY_CTX_MAX];
	unsigned nctx;
};

struct key {
	uint64_t id;
	EVP_PKEY *pkey;
	struct key_ctxs *tctx; /* [nthreads] */
};

static pthread_rwlock_t keys_lock;
static struct key *keys; /* under keys_lock */
static size_t keys_len, keys_cap;
static struct thread *threads;
static unsigned nthreads;
static volatile sig_atomic_t stop;
static bool quiet;

static void logf_(const char *level, const char *event, const char *fmt, ...)
{
	va_list ap;

	if (quiet && strcmp(level, "INFO") == 0)
		return;
	fprintf(stderr, "vmgate-signer %s %s ", level, event);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* Under keys_lock. */
static struct key *key_find(uint64_t id)
{
	size_t i;

	for (i = 0; i < keys_len; i++)
		if (keys[i].id == id)
			return &keys[i];
	return NULL;
}

/* The key id of |pkey|: keyop_key_id of the SHA-256 of its public DER. */
static bool pkey_id(uint64_t *out, EVP_PKEY *pkey)
{
	unsigned char *der = NULL, digest[32];
	unsigned int dlen = 0;
	int len = i2d_PUBKEY(pkey, &der);
	bool ok;

	if (len <= 0)
		return false;
	ok = EVP_Digest(der, (size_t)len, digest, &dlen, EVP_sha256(), NULL) &&
	     dlen == sizeof(digest);
	OPENSSL_free(der);
	if (ok)
		*out = keyop_key_id(digest);
	return ok;
}

/* OpenSSL's passphrase callback: keys come unencrypted. Without one,
 * OpenSSL would ask for the passphrase on the terminal, and the thread
 * would wait there for good. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;
}

/* |fd| (passed with the LOAD), or |path| opened without blocking (a FIFO
 * would block the open and the reads) and never as a controlling
 * terminal: a stream on a regular file of at most SIGNER_KEY_FILE_MAX
 * bytes, else NULL with |*why| set. Takes |fd| in either case. */
static FILE *open_key(const char *path, int fd, const char **why)
{
	struct stat st;
	FILE *f;

	if (fd < 0)
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		*why = strerror(errno);
		return NULL;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		*why = "not a regular file";
	else if (st.st_size > SIGNER_KEY_FILE_MAX)
		*why = "larger than " STR(SIGNER_KEY_FILE_MAX) " bytes";
	else if ((f = fdopen(fd, "r")))
		return f;
	else
		*why = strerror(errno);
	close(fd);
	return NULL;
}

static uint8_t do_load(const struct keyop_msg *m, int fd)
{
	char path[KEYOP_DATA_MAX + 1];
	struct key_ctxs *tctx;
	EVP_PKEY *pkey = NULL;
	const char *why;
	uint64_t id;
	size_t len;
	FILE *f;

	memcpy(path, m->data, m->data_len);
	path[m->data_len] = '\0';
	if (memchr(path, '\0', m->data_len)) {
		if (fd >= 0)
			close(fd);
		return KEYOP_STATUS_FAILED;
	}
	if (!(f = open_key(path, fd, &why))) {
		logf_("WARN", "load", "key_id=%016llx path=%s error=\"%s\"",
		      (unsigned long long)m->key_id, path, why);
		return KEYOP_STATUS_FAILED;
	}
	pkey = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!pkey) {
		unsigned long e = ERR_peek_last_error();

		logf_("WARN", "load", "key_id=%016llx path=%s error=\"%s\"",
		      (unsigned long long)m->key_id, path,
		      ERR_GET_LIB(e) == ERR_LIB_PEM &&
				      ERR_GET_REASON(e) == PEM_R_BAD_PASSWORD_READ ?
			      "an encrypted key: give it unencrypted (the "
			      "signer holds it, readable by its user only)" :
			      "not a PEM private key");
		ERR_clear_error();
		return KEYOP_STATUS_FAILED;
	}
	if (!pkey_id(&id, pkey) || id != m->key_id) {
		logf_("WARN", "load", "key_id=%016llx path=%s error=\"the key "
		      "is not the certificate's\"",
		      (unsigned long long)m->key_id, path);
		EVP_PKEY_free(pkey);
		return KEYOP_STATUS_MISMATCH;
	}
	tctx = calloc(nthreads, sizeof(*tctx));
	pthread_rwlock_wrlock(&keys_lock);
	if (key_find(id)) {
		/* The same public key: the same private key. */
		pthread_rwlock_unlock(&keys_lock);
		EVP_PKEY_free(pkey);
		free(tctx);
		return KEYOP_STATUS_OK;
	}
	if (!tctx || keys_len == SIGNER_KEYS_MAX)
		goto failed;
	if (keys_len == keys_cap) {
		size_t cap = keys_cap ? 2 * keys_cap : 8;
		struct key *n = realloc(keys, cap * sizeof(*n));

		if (!n)
			goto failed;
		keys = n;
		keys_cap = cap;
	}
	keys[keys_len++] = (struct key){ .id = id, .pkey = pkey,
					 .tctx = tctx };
	len = keys_len;
	pthread_rwlock_unlock(&keys_lock);
	logf_("INFO", "load", "key_id=%016llx path=%s keys=%zu",
	      (unsigned long long)id, path, len);
	return KEYOP_STATUS_OK;
failed:
	pthread_rwlock_unlock(&keys_lock);
	EVP_PKEY_free(pkey);
	free(tctx);
	return KEYOP_STATUS_FAILED;
}

static void key_ctx_free(struct key_ctx *c)
{
	EVP_PKEY_CTX_free(c->pctx);
	EVP_MD_free(c->md);
}

/* Under keys_lock write: no thread is signing. */
static void key_clear(struct key *k)
{
	unsigned t, i;

	for (t = 0; t < nthreads; t++)
		for (i = 0; i < k->tctx[t].nctx; i++)
			key_ctx_free(&k->tctx[t].ctx[i]);
	free(k->tctx);
	k->tctx = NULL;
	EVP_PKEY_free(k->pkey);
	k->pkey = NULL;
}

/* The key leaves: no SIGN can use it any more (they read it under the
 * lock this takes to write). OpenSSL clears a private key's numbers as
 * it frees them. */
static uint8_t do_unload(const struct keyop_msg *m)
{
	struct key *k;
	size_t len;

	pthread_rwlock_wrlock(&keys_lock);
	k = key_find(m->key_id);
	if (!k) {
		pthread_rwlock_unlock(&keys_lock);
		return KEYOP_STATUS_NO_KEY;
	}
	key_clear(k);
	*k = keys[--keys_len];
	len = keys_len;
	pthread_rwlock_unlock(&keys_lock);
	logf_("INFO", "unload", "key_id=%016llx keys=%zu",
	      (unsigned long long)m->key_id, len);
	return KEYOP_STATUS_OK;
}

/* What a SignatureScheme (RFC 8446 4.2.3) asks of the key and the
 * digest. In TLS 1.2 an ECDSA scheme's curve is not the key's: BoringSSL
 * has checked what TLS 1.3 requires before asking. */
static bool scheme(uint16_t sigalg, int *out_type, const char **out_md,
		   bool *out_pss)
{
	*out_pss = false;
	switch (sigalg) {
	case 0x0201: *out_type = EVP_PKEY_RSA; *out_md = "SHA1"; break;
	case 0x0401: *out_type = EVP_PKEY_RSA; *out_md = "SHA256"; break;
	case 0x0501: *out_type = EVP_PKEY_RSA; *out_md = "SHA384"; break;
	case 0x0601: *out_type = EVP_PKEY_RSA; *out_md = "SHA512"; break;
	case 0x0804: *out_type = EVP_PKEY_RSA; *out_md = "SHA256";
		*out_pss = true; break;
	case 0x0805: *out_type = EVP_PKEY_RSA; *out_md = "SHA384";
		*out_pss = true; break;
	case 0x0806: *out_type = EVP_PKEY_RSA; *out_md = "SHA512";
		*out_pss = true; break;
	case 0x0203: *out_type = EVP_PKEY_EC; *out_md = "SHA1"; break;
	case 0x0403: *out_type = EVP_PKEY_EC; *out_md = "SHA256"; break;
	case 0x0503: *out_type = EVP_PKEY_EC; *out_md = "SHA384"; break;
	case 0x0603: *out_type = EVP_PKEY_EC; *out_md = "SHA512"; break;
	case 0x0807: *out_type = EVP_PKEY_ED25519; *out_md = NULL; break;
	default:
		return false;
	}
	return true;
}

/* The context that signs with |k| under |sigalg| on thread |t|: found,
 * or made and kept (NULL when it cannot be made). Under keys_lock. */
static struct key_ctx *key_ctx_get(struct key *k, const struct thread *t,
				   uint16_t sigalg)
{
	struct key_ctxs *kc = &k->tctx[t->index];
	struct key_ctx *c;
	const char *mdname;
	unsigned i;
	bool pss;
	int type;

	for (i = 0; i < kc->nctx; i++)
		if (kc->ctx[i].sigalg == sigalg)
			return &kc->ctx[i];
	if (!scheme(sigalg, &type, &mdname, &pss) ||
	    EVP_PKEY_get_base_id(k->pkey) != type ||
	    (size_t)EVP_PKEY_get_size(k->pkey) > KEYOP_DATA_MAX)
		return NULL;
	/* More schemes than slots (a client can choose among a key's
	 * schemes): the oldest gives way. */
	if (kc->nctx == KEY_CTX_MAX) {
		key_ctx_free(&kc->ctx[0]);
		memmove(kc->ctx, kc->ctx + 1, --kc->nctx * sizeof(kc->ctx[0]));
	}
	c = &kc->ctx[kc->nctx];
	memset(c, 0, sizeof(*c));
	c->sigalg = sigalg;
	if (mdname) {
		c->md = EVP_MD_fetch(NULL, mdname, NULL);
		c->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
		if (!c->md || !c->pctx ||
		    EVP_PKEY_sign_init(c->pctx) != 1 ||
		    EVP_PKEY_CTX_set_signature_md(c->pctx, c->md) != 1 ||
		    (pss &&
		     (EVP_PKEY_CTX_set_rsa_padding(c->pctx,
						   RSA_PKCS1_PSS_PADDING) != 1 ||
		      EVP_PKEY_CTX_set_rsa_pss_saltlen(
			      c->pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
		      EVP_PKEY_CTX_set_rsa_mgf1_md(c->pctx, c->md) != 1))) {
			EVP_PKEY_CTX_free(c->pctx);
			EVP_MD_free(c->md);
			ERR_clear_error();
			return NULL;
		}
	}
	kc->nctx++;
	return c;
}

/* Under keys_lock read. */
static uint8_t sign_locked(struct thread *t, const struct keyop_msg *m,
			   uint8_t *sig, size_t *sig_len)
{
	struct key *k = key_find(m->key_id);
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	struct key_ctx *c;
	EVP_MD_CTX *ctx;
	bool ok;

	*sig_len = 0;
	if (!k)
		return KEYOP_STATUS_NO_KEY;
	c = key_ctx_get(k, t, m->sigalg);
	if (!c)
		return KEYOP_STATUS_BAD_ALG;
	*sig_len = KEYOP_DATA_MAX;
	if (c->pctx) {
		ok = EVP_Digest(m->data, m->data_len, digest, &dlen, c->md,
				NULL) == 1 &&
		     EVP_PKEY_sign(c->pctx, sig, sig_len, digest, dlen) == 1;
	} else {
		/* Ed25519 signs the message itself, in one shot. */
		ctx = EVP_MD_CTX_new();
		ok = ctx &&
		     EVP_DigestSignInit(ctx, NULL, NULL, NULL, k->pkey) == 1 &&
		     EVP_DigestSign(ctx, sig, sig_len, m->data,
				    m->data_len) == 1;
		EVP_MD_CTX_free(ctx);
	}
	if (!ok) {
		*sig_len = 0;
		ERR_clear_error();
		return KEYOP_STATUS_FAILED;
	}
	return KEYOP_STATUS_OK;
}

/* Signs under keys_lock read: threads sign at once, each with its own
 * contexts, and an UNLOAD waits for the signatures under way. */
static uint8_t do_sign(struct thread *t, const struct keyop_msg *m,
		       uint8_t *sig, size_t *sig_len)
{
	uint8_t status;

	pthread_rwlock_rdlock(&keys_lock);
	status = sign_locked(t, m, sig, sig_len);
	pthread_rwlock_unlock(&keys_lock);
	t->signs++;
	if (status != KEYOP_STATUS_OK)
		t->sign_errors++;
	return status;
}

static bool out_append(struct client *c, const struct keyop_msg *a)
{
	size_t len;

	if (c->out_cap - c->out_len < KEYOP_FRAME_MAX) {
		size_t cap = c->out_cap ? c->out_cap * 2 : 4 * KEYOP_FRAME_MAX;
		uint8_t *n = realloc(c->out, cap);

		if (!n)
			return false;
		c->out = n;
		c->out_cap = cap;
	}
	return keyop_encode(c->out + c->out_len, &len,
			    c->out_cap - c->out_len, a) &&
	       (c->out_len += len, true);
}

static int take_fd(struct client *c)
{
	int fd;

	if (!c->nfds)
		return -1;
	fd = c->fds[0];
	memmove(c->fds, c->fds + 1, --c->nfds * sizeof(c->fds[0]));
	return fd;
}

/* Answers every whole frame in c->in. False: close the client. */
static bool serve(struct client *c)
{
	uint8_t sig[KEYOP_DATA_MAX];
	size_t off = 0, used;
	struct keyop_msg m;

	while (c->out_len < SIGNER_OUT_MAX) {
		struct keyop_msg a = { .type = KEYOP_ANSWER };
		enum keyop_parse p = keyop_decode(&m, &used, c->in + off,
						  c->in_len - off);

		if (p == KEYOP_NEED_MORE)
			break;
		if (p == KEYOP_BAD || m.type == KEYOP_ANSWER) {
			logf_("WARN", "bad_frame", "fd=%d closing", c->fd);
			return false;
		}
		a.id = m.id;
		if (m.type == KEYOP_LOAD) {
			a.status = do_load(&m, take_fd(c));
		} else if (m.type == KEYOP_UNLOAD) {
			a.status = do_unload(&m);
		} else {
			size_t sig_len;

			a.status = do_sign(c->t, &m, sig, &sig_len);
			a.data = sig;
			a.data_len = sig_len;
		}
		if (!out_append(c, &a))
			return false;
		off += used;
	}
	memmove(c->in, c->in + off, c->in_len - off);
	c->in_len -= off;
	return true;
}

static void client_free(struct client *c)
{
	while (c->nfds)
		close(take_fd(c));
	close(c->fd);
	free(c->out);
	free(c);
}

static bool client_read(struct client *c)
{
	char cbuf[CMSG_SPACE(SIGNER_FDS_MAX * sizeof(int))];
	struct iovec iov;
	struct msghdr mh;
	struct cmsghdr *cm;
	ssize_t n;

	for (;;) {
		if (c->out_len >= SIGNER_OUT_MAX)
			return true; /* it must read its answers first */
		iov.iov_base = c->in + c->in_len;
		iov.iov_len = sizeof(c->in) - c->in_len;
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		if (n == 0)
			return false;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			size_t i, nfd;

			if (cm->cmsg_level != SOL_SOCKET ||
			    cm->cmsg_type != SCM_RIGHTS)
				continue;
			nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (i = 0; i < nfd; i++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int),
				       sizeof(fd));
				if (c->nfds < SIGNER_FDS_MAX)
					c->fds[c->nfds++] = fd;
				else
					close(fd);
			}
		}
		c->in_len += (size_t)n;
		if (!serve(c))
			return false;
		/* Short: the socket had no more. epoll is level-triggered
		 * and says so if more comes; a recvmsg to see EAGAIN would
		 * be one more system call per signature. */
		if ((size_t)n < iov.iov_len)
			return true;
	}
}

static bool client_write(struct client *c)
{
	while (c->out_len) {
		ssize_t n = send(c->fd, c->out, c->out_len,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0)
			return errno == EAGAIN || errno == EINTR;
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	return true;
}

static int listen_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	umask(077);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 128) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* --socket-group: the members of |name| may connect too. The socket was
 * bound 0600 (umask 077), so it is never open wider than asked. Root may
 * give it any group; another user only one of its own. */
static bool socket_group(const char *path, const char *name)
{
	struct group *gr = getgrnam(name);

	if (!gr) {
		logf_("ERROR", "startup", "--socket-group: no group %s", name);
		return false;
	}
	if (chown(path, (uid_t)-1, gr->gr_gid) || chmod(path, 0660)) {
		logf_("ERROR", "startup", "--socket-group %s: %s: %s", name,
		      path, strerror(errno));
		return false;
	}
	return true;
}

/* Drops to |user| (NULL: vmgate-signer when it exists, else stays), then
 * gives up every capability, any gain of privilege and dumpability. */
static bool drop_privileges(const char *user, bool supervised)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[2] = { { 0 } };
	const char *name = user ? user : "vmgate-signer";
	struct passwd *pw = getpwnam(name);
	char why[160];

	if (!pw && user) {
		logf_("ERROR", "startup", "no user %s", user);
		return false;
	}
	if (pw && getuid() == 0) {
		if (setgroups(0, NULL) || setgid(pw->pw_gid) ||
		    setuid(pw->pw_uid)) {
			logf_("ERROR", "startup", "cannot become %s: %s", name,
			      strerror(errno));
			return false;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    syscall(SYS_capset, &hdr, data) || prctl(PR_SET_DUMPABLE, 0)) {
		logf_("ERROR", "startup", "cannot drop privileges: %s",
		      strerror(errno));
		return false;
	}
	/* The supervisor gone, nobody asks any more: go too. Set after
	 * setuid, which clears it. */
	if (supervised && prctl(PR_SET_PDEATHSIG, SIGUSR1))
		return false;
	/* Which user holds the keys, and why when it is not its own: root
	 * without capabilities still reads every root-owned file. */
	if (pw && getuid() == pw->pw_uid)
		why[0] = '\0';
	else if (pw)
		snprintf(why, sizeof(why), " reason=\"not started as root: "
			 "cannot become %s, kept the invoking user\"", name);
	else
		snprintf(why, sizeof(why), " reason=\"no user %s (useradd "
			 "--system %s): kept the invoking user\"", name, name);
	logf_(why[0] && getuid() == 0 ? "WARN" : "INFO", "startup",
	      "uid=%u gid=%u user=%s capabilities=none "
	      "seccomp=" SIGNER_SECCOMP_WHAT "%s",
	      (unsigned)getuid(), (unsigned)getgid(),
	      why[0] ? "invoking" : name, why);
	return true;
}

/* SCHED_BATCH: a signer woken by a request does not preempt the vmgate
 * worker that sent it (no wake-up preemption for batch tasks); it runs
 * when the worker waits on its ring or its slice ends, and then signs
 * every request queued by then in one go. On a core shared with the
 * worker that is ~10 signatures per time slice instead of ~3.5, and each
 * signature costs ~31 CPU-us instead of ~58 (W1: the rest was the
 * preemptions and the caches the worker had taken over); a request waits
 * at most a scheduler slice, far under vmgate's KEY_SIGNER_TIMEOUT_MS. */
static bool sched_batch(void)
{
	struct sched_param sp = { .sched_priority = 0 };

	if (sched_setscheduler(0, SCHED_BATCH, &sp) == 0)
		return true;
	logf_("WARN", "startup", "sched=normal reason=\"SCHED_BATCH: %s\"",
	      strerror(errno));
	return false;
}

/* The thread of the fewest clients, for a new one: thread 0 counts
 * what it hands over, each thread what it closes. */
static struct thread *least_busy(void)
{
	struct thread *best = &threads[0];
	unsigned i;

	for (i = 1; i < nthreads; i++)
		if (atomic_load(&threads[i].nclients) <
		    atomic_load(&best->nclients))
			best = &threads[i];
	return best;
}

static unsigned clients_total(void)
{
	unsigned i, n = 0;

	for (i = 0; i < nthreads; i++)
		n += atomic_load(&threads[i].nclients);
	return n;
}

static void client_add(struct thread *t, struct client *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	c->t = t;
	c->events = EPOLLIN;
	if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev)) {
		client_free(c);
		atomic_fetch_sub(&t->nclients, 1);
	}
}

/* Thread 0: a new client, for the thread with the fewest. */
static void on_accept(int lfd)
{
	struct client *c;
	struct thread *t;
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	c = clients_total() < SIGNER_CLIENTS_MAX ? calloc(1, sizeof(*c))
						 : NULL;
	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	t = least_busy();
	atomic_fetch_add(&t->nclients, 1);
	if (t == &threads[0]) {
		client_add(t, c);
	} else if (write(t->pipe_w, &c, sizeof(c)) != sizeof(c)) {
		client_free(c);
		atomic_fetch_sub(&t->nclients, 1);
	}
}

/* Another thread: the clients thread 0 handed over; NULL: stop. */
static bool on_pipe(struct thread *t)
{
	struct client *c;

	while (read(t->pipe_r, &c, sizeof(c)) == sizeof(c)) {
		if (!c)
			return false;
		client_add(t, c);
	}
	return true;
}

/* One client's event. False: it is closed. */
static bool on_client(struct thread *t, struct client *c, uint32_t events)
{
	struct epoll_event ev;
	bool ok;

	ok = !(events & EPOLLIN) || client_read(c);
	ok = ok && client_write(c);
	/* Requests left unread while answers pile up: read them once the
	 * answers are out. */
	if (ok && !c->out_len && c->in_len)
		ok = serve(c) && client_write(c);
	if (ok && (events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN))
		ok = false;
	/* Reading stops while its answers pile up, writing is watched only
	 * while some wait. */
	ev.events = (c->out_len < SIGNER_OUT_MAX ? EPOLLIN : 0) |
		    (c->out_len ? EPOLLOUT : 0);
	if (ok && ev.events != c->events) {
		c->events = ev.events;
		ev.data.ptr = c;
		ok = !epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
	}
	if (!ok) {
		epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
		client_free(c);
		atomic_fetch_sub(&t->nclients, 1);
	}
	return ok;
}

/* Thread |t|'s loop: its clients, and on thread 0 the listener (|lfd|;
 * -1 on the others, which watch their pipe). Thread 0 takes the stop
 * signals only while it waits (|waitmask|, NULL on the others, which
 * never take them): one that comes while it works is pending at its
 * next wait, which it ends at once, never one that sleeps through it. */
static void serve_loop(struct thread *t, int lfd, const sigset_t *waitmask)
{
	struct epoll_event evs[64];
	int i, n;

	while (!stop) {
		n = waitmask ? epoll_pwait(t->ep, evs, 64, -1, waitmask)
			     : epoll_wait(t->ep, evs, 64, -1);
		for (i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (!p)
				on_accept(lfd);
			else if (p == t) {
				if (!on_pipe(t))
					return;
			} else {
				on_client(t, p, evs[i].events);
			}
		}
	}
}

static void *thread_main(void *arg)
{
	serve_loop(arg, -1, NULL);
	return NULL;
}

/* The threads' epolls and pipes, then the threads beside this one
 * (thread 0), with the signals blocked: they come to thread 0. */
static bool threads_start(int lfd, unsigned n)
{
	struct epoll_event ev = { .events = EPOLLIN };
	pthread_rwlockattr_t attr;
	sigset_t all, old;
	cpu_set_t cpus;
	unsigned i;
	int err;

	if (!n)
		n = sched_getaffinity(0, sizeof(cpus), &cpus) ? 1
			: (unsigned)CPU_COUNT(&cpus);
	if (n > SIGNER_THREADS_MAX)
		n = SIGNER_THREADS_MAX;
	/* Writers first: a LOAD or UNLOAD waits for the signatures under
	 * way, not for every one that comes after them. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	err = pthread_rwlock_init(&keys_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	if (err) {
		errno = err;
		return false;
	}
	threads = calloc(n, sizeof(*threads));
	if (!threads)
		return false;
	nthreads = n;
	for (i = 0; i < n; i++) {
		struct thread *t = &threads[i];
		int p[2];

		t->index = i;
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		if (t->ep < 0)
			return false;
		ev.data.ptr = i ? (void *)t : NULL;
		if (i && pipe2(p, O_CLOEXEC | O_NONBLOCK))
			return false;
		if (i) {
			t->pipe_r = p[0];
			t->pipe_w = p[1];
		}
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, i ? t->pipe_r : lfd, &ev))
			return false;
	}
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (i = 1; i < n; i++) {
		err = pthread_create(&threads[i].tid, NULL, thread_main,
				     &threads[i]);
		if (err) {
			errno = err;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return i == n;
}

/* Thread 0, stopping: the others stop too, then the counts. */
static void threads_stop(void)
{
	struct client *none = NULL;
	unsigned long long signs = 0, errors = 0;
	char each[SIGNER_THREADS_MAX * 21] = "";
	size_t len = 0;
	unsigned i;

	for (i = 1; i < nthreads; i++)
		if (write(threads[i].pipe_w, &none, sizeof(none)) ==
		    sizeof(none))
			pthread_join(threads[i].tid, NULL);
	for (i = 0; i < nthreads; i++) {
		signs += threads[i].signs;
		errors += threads[i].sign_errors;
		len += (size_t)snprintf(each + len, sizeof(each) - len, "%s%llu",
					i ? "," : "", threads[i].signs);
	}
	logf_("INFO", "shutdown", "signs=%llu errors=%llu thread_signs=%s",
	      signs, errors, each);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmgate-signer (--listen-fd N | --socket PATH "
		   "[--socket-group NAME]) [--user NAME] [--quiet]\n"
		   "       [--sched batch|normal] [--threads N]\n"
		   "  --listen-fd N         serve the listening Unix socket N "
		   "(vmgate's, or systemd's)\n"
		   "  --socket PATH         bind PATH, mode 0600\n"
		   "  --socket-group NAME   with --socket: mode 0660, group "
		   "NAME (vmgate's group)\n"
		   "  --user NAME           started as root, become NAME "
		   "(default vmgate-signer)\n"
		   "  --quiet               only WARN and ERROR lines\n"
		   "  --sched batch|normal  scheduling policy (default batch: "
		   "a woken signer\n"
		   "                        waits for the CPU instead of "
		   "preempting vmgate)\n"
		   "  --threads N           serving threads, 1 to 64 (default: "
		   "the CPUs it may\n"
		   "                        run on; vmgate gives its own one "
		   "per worker)\n"
		   "  --supervised          vmgate's child: ignore SIGTERM "
		   "and SIGINT, stop on\n"
		   "                        SIGUSR1 or when the parent dies\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen-fd", required_argument, NULL, 'f' },
		{ "socket", required_argument, NULL, 's' },
		{ "socket-group", required_argument, NULL, 'g' },
		{ "user", required_argument, NULL, 'u' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "supervised", no_argument, NULL, 'S' },
		{ "sched", required_argument, NULL, 'P' },
		{ "threads", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *path = NULL, *user = NULL, *group = NULL;
	bool supervised = false, batch = true;
	unsigned nthreads_opt = 0;
	sigset_t stops, waitmask;
	int opt, lfd = -1;
	pid_t parent = getppid();
	struct sigaction sa = { .sa_handler = on_term };

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			lfd = atoi(optarg);
			break;
		case 's':
			path = optarg;
			break;
		case 'g':
			group = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'q':
			quiet = true;
			break;
		case 'S':
			supervised = true;
			break;
		case 'P':
			if (strcmp(optarg, "batch") && strcmp(optarg, "normal")) {
				logf_("ERROR", "startup", "--sched %s: batch or "
				      "normal", optarg);
				return 2;
			}
			batch = !strcmp(optarg, "batch");
			break;
		case 'T': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*optarg < '1' || *optarg > '9' || *end ||
			    v > SIGNER_THREADS_MAX) {
				logf_("ERROR", "startup", "--threads %s: 1 to "
				      "%d", optarg, SIGNER_THREADS_MAX);
				return 2;
			}
			nthreads_opt = (unsigned)v;
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if ((lfd < 0) == !path || (group && !path) || (supervised && path) ||
	    optind != argc) {
		usage(stderr);
		return 2;
	}
	if (path && (lfd = listen_path(path)) < 0) {
		logf_("ERROR", "startup", "cannot listen on %s: %s", path,
		      strerror(errno));
		return 1;
	}
	if (group && !socket_group(path, group))
		return 1;
	if (supervised) {
		signal(SIGTERM, SIG_IGN);
		signal(SIGINT, SIG_IGN);
		sigaction(SIGUSR1, &sa, NULL);
	} else {
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
	}
	signal(SIGPIPE, SIG_IGN);
	if (!drop_privileges(user, supervised))
		return 1;
	if (supervised && getppid() != parent)
		return 0; /* the supervisor died before PDEATHSIG was set */
	batch = batch && sched_batch();
	if (!signer_seccomp()) {
		logf_("ERROR", "startup", "seccomp: %s", strerror(errno));
		return 1;
	}
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &stops, &waitmask);
	if (!threads_start(lfd, nthreads_opt)) {
		logf_("ERROR", "startup", "threads: %s", strerror(errno));
		return 1;
	}
	logf_("INFO", "serving", "pid=%d sched=%s threads=%u", (int)getpid(),
	      batch ? "batch" : "normal", nthreads);
	serve_loop(&threads[0], lfd, &waitmask);
	threads_stop();
	return 0;
}
