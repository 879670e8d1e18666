/* tls/hello.c: ClientHello peek parser (contract in tls/hello.h).
 *
 * Every untrusted byte is read through BoringSSL's CBS cursor, so each read
 * is bounds-checked by construction; the code below only does arithmetic on
 * lengths that CBS has already vouched for.
 */
#include "tls/hello.h"

#include "tls/alert.h"

#include <string.h>

#include <openssl/bytestring.h>

/* Wire grammar, as read below.
 *
 * Record layer (RFC 8446 5.1; RFC 5246 6.2.1 for the version field):
 *
 *	struct {
 *		ContentType type;                  22 = handshake
 *		ProtocolVersion legacy_record_version;  major 3, minor anything
 *		uint16 length;                     1..2^14 for handshake records
 *		opaque fragment[TLSPlaintext.length];
 *	} TLSPlaintext;
 *
 *   "Handshake messages MAY be coalesced into a single TLSPlaintext record
 *    or fragmented across several records", and "Implementations MUST NOT
 *    send zero-length fragments of Handshake types". The ClientHello is the
 *    client's first message and nothing may follow it before the server
 *    answers, so its last record must end exactly where the message ends.
 *
 * Handshake layer (RFC 8446 4):
 *
 *	struct {
 *		HandshakeType msg_type;            1 = client_hello
 *		uint24 length;
 *		ClientHello body;
 *	} Handshake;
 *
 * ClientHello (RFC 8446 4.1.2; RFC 5246 7.4.1.2 allows the extensions
 * block to be absent, or empty, in a TLS 1.2 hello):
 *
 *	struct {
 *		ProtocolVersion legacy_version;
 *		Random random;                               32 bytes
 *		opaque legacy_session_id<0..32>;
 *		CipherSuite cipher_suites<2..2^16-2>;        even length
 *		opaque legacy_compression_methods<1..2^8-1>;
 *		Extension extensions<8..2^16-1>;             optional in 1.2
 *	} ClientHello;
 *
 *	struct {
 *		ExtensionType extension_type;      uint16
 *		opaque extension_data<0..2^16-1>;
 *	} Extension;
 *
 *   "There MUST NOT be more than one extension of the same type in a given
 *    extension block" (RFC 8446 4.2).
 *
 * server_name, type 0 (RFC 6066 3):
 *
 *	struct {
 *		NameType name_type;                0 = host_name
 *		select (name_type) {
 *			case host_name: HostName;
 *		} name;
 *	} ServerName;
 *	opaque HostName<1..2^16-1>;
 *	struct {
 *		ServerName server_name_list<1..2^16-1>
 *	} ServerNameList;
 *
 *   "The ServerNameList MUST NOT contain more than one name of the same
 *    name_type", and a DNS name is at most 255 bytes. We are stricter than
 *    the RFC: any name_type but host_name is rejected, because an entry we
 *    cannot read is an entry we cannot route on.
 *
 * Alerts (RFC 8446 6.2): bytes that do not fit the grammar, a length or a
 * vector size out of its range included, are decode_error; bytes that fit
 * it but break a rule in the RFCs' prose, or hold a value we refuse, are
 * illegal_parameter ("errors which conform to the formal protocol syntax
 * but are otherwise incorrect"). Where BoringSSL would refuse the same
 * hello with another alert, the comment at the check says so. A duplicate
 * extension is decode_error, as BoringSSL sends (ssl_client_hello_init).
 *
 * application_layer_protocol_negotiation, type 16 (RFC 7301 3.1):
 *
 *	opaque ProtocolName<1..2^8-1>;
 *	struct {
 *		ProtocolName protocol_name_list<2..2^16-1>
 *	} ProtocolNameList;
 *
 * signature_algorithms, type 13 (RFC 8446 4.2.3):
 *
 *	struct {
 *		SignatureScheme supported_signature_algorithms<2..2^16-2>;
 *	} SignatureSchemeList;
 *
 * supported_versions, type 43, in a ClientHello (RFC 8446 4.2.1):
 *
 *	struct {
 *		ProtocolVersion versions<2..254>;
 *	} SupportedVersions;
 *
 *   GREASE values (RFC 8701: 0x0a0a, 0x1a1a, ... 0xfafa) may appear in it
 *   and must be ignored.
 *
 * encrypted_client_hello, type 0xfe0d (draft-ietf-tls-esni-13 5):
 *
 *	enum { outer(0), inner(1) } ECHClientHelloType;
 *	struct {
 *		ECHClientHelloType type;
 *		select (ECHClientHello.type) {
 *			case outer:
 *				HpkeSymmetricCipherSuite cipher_suite;  u16 kdf, u16 aead
 *				uint8 config_id;
 *				opaque enc<0..2^16-1>;
 *				opaque payload<0..2^16-1>;
 *			case inner:
 *				Empty;
 *		};
 *	} ECHClientHello;
 *
 *   vmgate has no ECH keys and routes on the outer SNI. BoringSSL still
 *   reads an outer extension before any callback and refuses a malformed
 *   one with decode_error, so the router checks what BoringSSL checks
 *   (the type byte; for outer, the fields and nothing after them; the
 *   draft's payload<1..> is not enforced by it) and no more.
 */

enum {
	REC_HANDSHAKE = 22,
	REC_HEADER_LEN = 5,
	REC_MAX_LEN = 16384,
	HS_CLIENT_HELLO = 1,
	HS_HEADER_LEN = 4,
	RANDOM_LEN = 32,
	SESSION_ID_MAX = 32,
	HOST_NAME_MAX = 255,
	EXT_SERVER_NAME = 0,
	EXT_SUPPORTED_GROUPS = 10,
	EXT_SIGNATURE_ALGORITHMS = 13,
	EXT_ALPN = 16,
	EXT_SUPPORTED_VERSIONS = 43,
	EXT_ECH = 0xfe0d,
	ECH_OUTER = 0,
	NAME_TYPE_HOST_NAME = 0,
	VERSION_TLS12 = 0x0303,
	VERSION_TLS13 = 0x0304,
};

static bool is_grease(uint16_t v)
{
	return (v & 0x0f0f) == 0x0a0a;
}

/* read_record reads one record header from |recs| and as much of its
 * fragment as has arrived. On TLS_HELLO_OK the header was complete:
 * |out_len| is its declared length, |out_frag| the bytes of the fragment
 * received so far and |out_whole| whether that is all of them. Errors are
 * decided on the earliest byte that shows them, so that an answer other
 * than NEED_MORE never changes when more bytes arrive. On the first record
 * a wrong type or version means "this is not TLS at all"; later, it means a
 * broken TLS client. */
static enum tls_hello_result read_record(const char **out_err,
					 uint8_t *out_alert, CBS *out_frag,
					 size_t *out_len, bool *out_whole,
					 CBS *recs, bool first)
{
	uint8_t type, major, minor;
	uint16_t len;
	size_t avail;

	if (!CBS_get_u8(recs, &type))
		return TLS_HELLO_NEED_MORE;
	if (type != REC_HANDSHAKE) {
		*out_err = "record is not a handshake record";
		/* Not TLS at all on the first record; later, a message out of
		 * place (RFC 8446 6.2), as BoringSSL answers it. */
		*out_alert = TLS_ALERT_UNEXPECTED_MESSAGE;
		return first ? TLS_HELLO_NOT_TLS : TLS_HELLO_BAD;
	}
	if (!CBS_get_u8(recs, &major))
		return TLS_HELLO_NEED_MORE;
	if (major != 3) {
		*out_err = "record version is not 3.x";
		*out_alert = TLS_ALERT_PROTOCOL_VERSION; /* as BoringSSL */
		return first ? TLS_HELLO_NOT_TLS : TLS_HELLO_BAD;
	}
	if (!CBS_get_u8(recs, &minor) || !CBS_get_u16(recs, &len))
		return TLS_HELLO_NEED_MORE;
	if (len == 0) {
		*out_err = "zero-length handshake record";
		*out_alert = TLS_ALERT_UNEXPECTED_MESSAGE;
		return TLS_HELLO_BAD;
	}
	if (len > REC_MAX_LEN) {
		*out_err = "record longer than 2^14";
		*out_alert = TLS_ALERT_RECORD_OVERFLOW; /* RFC 8446 6.2 */
		return TLS_HELLO_BAD;
	}
	avail = CBS_len(recs);
	*out_len = len;
	*out_whole = avail >= len;
	if (!CBS_get_bytes(recs, out_frag, *out_whole ? len : avail))
		return TLS_HELLO_NEED_MORE; /* cannot happen: avail checked */
	return TLS_HELLO_OK;
}

/* parse_sni reads a server_name extension body into |out_name|, failing
 * closed on anything but exactly one usable host_name. */
static bool parse_sni(const char **out_err, uint8_t *out_alert,
		      CBS *out_name, CBS *ext)
{
	CBS list, name;
	uint8_t name_type;
	bool found = false;

	if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0) {
		*out_err = "bad SNI extension length";
		return false;
	}
	if (CBS_len(&list) == 0) {
		*out_err = "empty SNI list";
		return false;
	}
	while (CBS_len(&list) != 0) {
		if (!CBS_get_u8(&list, &name_type) ||
		    !CBS_get_u16_length_prefixed(&list, &name)) {
			*out_err = "truncated SNI entry";
			return false;
		}
		/* Well-formed entries that we refuse: illegal_parameter.
		 * BoringSSL refuses the same with unrecognized_name, and two
		 * entries with decode_error (it reads the list as exactly
		 * one entry). */
		if (name_type != NAME_TYPE_HOST_NAME) {
			*out_err = "unknown SNI name_type";
			*out_alert = TLS_ALERT_ILLEGAL_PARAMETER;
			return false;
		}
		if (found) {
			*out_err = "two host_name entries";
			*out_alert = TLS_ALERT_ILLEGAL_PARAMETER;
			return false;
		}
		if (CBS_len(&name) == 0) {
			*out_err = "empty SNI"; /* HostName<1..2^16-1> */
			return false;
		}
		if (CBS_len(&name) > HOST_NAME_MAX) {
			*out_err = "SNI longer than 255 bytes";
			*out_alert = TLS_ALERT_ILLEGAL_PARAMETER;
			return false;
		}
		/* A NUL would let "a.com\0.evil" mean different names to the
		 * router and to whoever prints or compares it as a C string. */
		if (CBS_contains_zero_byte(&name)) {
			*out_err = "SNI contains NUL";
			*out_alert = TLS_ALERT_ILLEGAL_PARAMETER;
			return false;
		}
		*out_name = name;
		found = true;
	}
	return true;
}

/* parse_alpn checks an ALPN extension body and returns the contents of its
 * ProtocolNameList in |out_list|. */
static bool parse_alpn(const char **out_err, CBS *out_list, CBS *ext)
{
	CBS list, names, name;

	if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0) {
		*out_err = "bad ALPN extension length";
		return false;
	}
	if (CBS_len(&list) == 0) {
		*out_err = "empty ALPN list";
		return false;
	}
	names = list;
	while (CBS_len(&names) != 0) {
		if (!CBS_get_u8_length_prefixed(&names, &name)) {
			*out_err = "truncated ALPN protocol name";
			return false;
		}
		if (CBS_len(&name) == 0) {
			*out_err = "empty ALPN protocol name";
			return false;
		}
	}
	*out_list = list;
	return true;
}

/* parse_sigalgs checks a signature_algorithms body and returns the
 * contents of its list in |out_list|. */
static bool parse_sigalgs(const char **out_err, CBS *out_list, CBS *ext)
{
	CBS list;

	if (!CBS_get_u16_length_prefixed(ext, &list) || CBS_len(ext) != 0) {
		*out_err = "bad signature_algorithms length";
		return false;
	}
	if (CBS_len(&list) == 0 || CBS_len(&list) % 2 != 0) {
		*out_err = "bad signature_algorithms list";
		return false;
	}
	*out_list = list;
	return true;
}

/* parse_ech checks an encrypted_client_hello body as far as BoringSSL
 * does before any callback (see the grammar above). */
static bool parse_ech(const char **out_err, CBS *ext)
{
	uint8_t type, config_id;
	uint16_t kdf, aead;
	CBS enc, payload;

	if (!CBS_get_u8(ext, &type)) {
		*out_err = "empty encrypted_client_hello";
		return false;
	}
	if (type != ECH_OUTER)
		return true;
	if (!CBS_get_u16(ext, &kdf) || !CBS_get_u16(ext, &aead) ||
	    !CBS_get_u8(ext, &config_id) ||
	    !CBS_get_u16_length_prefixed(ext, &enc) ||
	    !CBS_get_u16_length_prefixed(ext, &payload) || CBS_len(ext) != 0) {
		*out_err = "bad encrypted_client_hello";
		return false;
	}
	return true;
}

/* parse_versions reads a ClientHello supported_versions body and returns
 * the highest non-GREASE version in |out_max| and, in |out_tls|, the one
 * a server of TLS 1.2 and 1.3 agrees on: the highest of the two it lists,
 * whatever else it lists (BoringSSL's negotiate_version walks its own
 * versions, newest first, and takes the first the client offers). */
static bool parse_versions(const char **out_err, uint8_t *out_alert,
			   uint16_t *out_max, uint16_t *out_tls, CBS *ext)
{
	CBS list;
	uint16_t v, max = 0, tls = 0;
	bool found = false;

	if (!CBS_get_u8_length_prefixed(ext, &list) || CBS_len(ext) != 0) {
		*out_err = "bad supported_versions length";
		return false;
	}
	if (CBS_len(&list) == 0 || CBS_len(&list) % 2 != 0) {
		*out_err = "bad supported_versions list";
		return false;
	}
	while (CBS_get_u16(&list, &v)) {
		if (is_grease(v))
			continue;
		if (!found || v > max)
			max = v;
		if ((v == VERSION_TLS13 || v == VERSION_TLS12) && v > tls)
			tls = v;
		found = true;
	}
	if (!found) {
		/* Well-formed, but no version to agree on: protocol_version,
		 * as BoringSSL sends when nothing offered is one it speaks. */
		*out_err = "supported_versions has only GREASE";
		*out_alert = TLS_ALERT_PROTOCOL_VERSION;
		return false;
	}
	*out_max = max;
	*out_tls = tls;
	return true;
}

/* parse_extensions walks the extension block, rejects duplicates and
 * fills the SNI, ALPN, signature_algorithms, supported_groups and
 * max_version fields of |out|. */
static bool parse_extensions(struct tls_hello *out, CBS *exts)
{
	/* One bit per extension type: O(n) duplicate detection without
	 * allocating, where comparing every pair would let a hello full of
	 * empty extensions cost ~10^8 steps. */
	uint64_t seen[65536 / 64];
	CBS ext, sni, alpn, sigalgs;
	uint16_t type;

	memset(seen, 0, sizeof(seen));
	while (CBS_len(exts) != 0) {
		if (!CBS_get_u16(exts, &type) ||
		    !CBS_get_u16_length_prefixed(exts, &ext)) {
			out->error = "truncated extensions";
			return false;
		}
		if (seen[type / 64] & (UINT64_C(1) << (type % 64))) {
			out->error = "duplicate extension";
			return false;
		}
		seen[type / 64] |= UINT64_C(1) << (type % 64);

		switch (type) {
		case EXT_SERVER_NAME:
			if (!parse_sni(&out->error, &out->alert, &sni, &ext))
				return false;
			out->sni = CBS_data(&sni);
			out->sni_len = CBS_len(&sni);
			break;
		case EXT_ALPN:
			if (!parse_alpn(&out->error, &alpn, &ext))
				return false;
			out->alpn = CBS_data(&alpn);
			out->alpn_len = CBS_len(&alpn);
			break;
		case EXT_SIGNATURE_ALGORITHMS:
			if (!parse_sigalgs(&out->error, &sigalgs, &ext))
				return false;
			out->sigalgs = CBS_data(&sigalgs);
			out->sigalgs_len = CBS_len(&sigalgs);
			break;
		case EXT_SUPPORTED_GROUPS: {
			/* Kept when well-formed; otherwise BoringSSL refuses
			 * the hello itself (decode_error), and the router
			 * reads it as absent. */
			CBS list;

			if (CBS_get_u16_length_prefixed(&ext, &list) &&
			    CBS_len(&ext) == 0 && CBS_len(&list) % 2 == 0) {
				out->groups = CBS_data(&list);
				out->groups_len = CBS_len(&list);
				out->groups_present = true;
			}
			break;
		}
		case EXT_SUPPORTED_VERSIONS:
			if (!parse_versions(&out->error, &out->alert,
					    &out->max_version,
					    &out->tls_version, &ext))
				return false;
			break;
		case EXT_ECH:
			if (!parse_ech(&out->error, &ext))
				return false;
			break;
		}
	}
	return true;
}

/* parse_client_hello parses a complete handshake message |msg| (header
 * included) whose type and length were already checked. */
static bool parse_client_hello(struct tls_hello *out, CBS *msg)
{
	CBS body, session_id, ciphers, compression, exts;
	uint8_t type;

	if (!CBS_get_u8(msg, &type) ||
	    !CBS_get_u24_length_prefixed(msg, &body) || CBS_len(msg) != 0) {
		out->error = "bad handshake header"; /* checked by caller */
		return false;
	}
	if (!CBS_get_u16(&body, &out->legacy_version) ||
	    !CBS_skip(&body, RANDOM_LEN)) {
		out->error = "truncated ClientHello";
		return false;
	}
	if (!CBS_get_u8_length_prefixed(&body, &session_id) ||
	    CBS_len(&session_id) > SESSION_ID_MAX) {
		out->error = "bad session_id";
		return false;
	}
	if (!CBS_get_u16_length_prefixed(&body, &ciphers) ||
	    CBS_len(&ciphers) == 0 || CBS_len(&ciphers) % 2 != 0) {
		out->error = "bad cipher_suites";
		return false;
	}
	out->cipher_suites = CBS_data(&ciphers);
	out->cipher_suites_len = CBS_len(&ciphers);
	if (!CBS_get_u8_length_prefixed(&body, &compression) ||
	    CBS_len(&compression) == 0) {
		out->error = "bad compression_methods";
		return false;
	}
	/* Every version requires the null method (RFC 5246 7.4.1.2; RFC
	 * 8446 4.1.2 allows only it), and BoringSSL refuses a list without
	 * it with illegal_parameter: so do we. */
	if (!memchr(CBS_data(&compression), 0, CBS_len(&compression))) {
		out->error = "compression_methods without null";
		out->alert = TLS_ALERT_ILLEGAL_PARAMETER;
		return false;
	}
	out->max_version = out->legacy_version;
	/* Without supported_versions a server stops at TLS 1.2, whatever
	 * legacy_version says (RFC 8446 4.2.1). */
	out->tls_version = out->legacy_version >= VERSION_TLS12 ? VERSION_TLS12
								: 0;

	/* A hello that ends here is valid TLS 1.2-era syntax; it simply has
	 * no SNI, and the router decides what that means. */
	if (CBS_len(&body) == 0)
		return true;
	if (!CBS_get_u16_length_prefixed(&body, &exts)) {
		out->error = "truncated extensions";
		return false;
	}
	if (CBS_len(&body) != 0) {
		out->error = "trailing bytes after extensions";
		return false;
	}
	return parse_extensions(out, &exts);
}

/* walk_record reads the record at st->rec_off. When it is whole and
 * passes every check, it is recorded in |st| (TLS_HELLO_OK). Otherwise
 * |st| is left alone: an error, or NEED_MORE with out->records_len set. */
static enum tls_hello_result walk_record(struct tls_hello_state *st,
					 struct tls_hello *out, size_t max_len,
					 const uint8_t *in, size_t in_len)
{
	enum tls_hello_result r;
	uint8_t hdr[HS_HEADER_LEN];
	size_t hdr_len = st->hdr_len, msg_len = st->msg_len, rec_len;
	CBS recs, frag;
	bool whole;

	CBS_init(&recs, in, in_len);
	if (!CBS_skip(&recs, st->rec_off))
		return TLS_HELLO_NEED_MORE; /* cannot happen: peek checked */
	r = read_record(&out->error, &out->alert, &frag, &rec_len, &whole,
			&recs, st->rec_off == 0);
	if (r == TLS_HELLO_NEED_MORE)
		out->records_len = in_len + 1; /* a header byte */
	if (r != TLS_HELLO_OK)
		return r;

	/* The handshake header may itself be split across records. */
	memcpy(hdr, st->hdr, sizeof(hdr));
	if (hdr_len < HS_HEADER_LEN) {
		size_t n = HS_HEADER_LEN - hdr_len;
		uint8_t type;
		uint32_t body_len;
		CBS part = frag, h;

		if (n > CBS_len(&part))
			n = CBS_len(&part);
		if (!CBS_copy_bytes(&part, hdr + hdr_len, n))
			return TLS_HELLO_NEED_MORE; /* cannot happen */
		hdr_len += n;
		CBS_init(&h, hdr, hdr_len);
		if (CBS_get_u8(&h, &type) && type != HS_CLIENT_HELLO) {
			out->error = "handshake message is not a ClientHello";
			out->alert = TLS_ALERT_UNEXPECTED_MESSAGE;
			return TLS_HELLO_BAD;
		}
		if (CBS_get_u24(&h, &body_len)) {
			if (body_len > max_len) {
				out->error = "ClientHello longer than max_len";
				return TLS_HELLO_TOO_LARGE;
			}
			msg_len = HS_HEADER_LEN + (size_t)body_len;
		}
	}
	if (msg_len != 0 && rec_len > msg_len - st->msg_seen) {
		out->error = "data after ClientHello in its record";
		/* The client may send nothing more before the server's
		 * flight: a message out of place, as BoringSSL answers it. */
		out->alert = TLS_ALERT_UNEXPECTED_MESSAGE;
		return TLS_HELLO_BAD;
	}
	if (!whole) {
		/* Until the handshake header is complete, each of its bytes
		 * can decide (type, length); after it, nothing can change
		 * before this record is in. */
		if (hdr_len < HS_HEADER_LEN)
			out->records_len = in_len + 1;
		else
			out->records_len = in_len + (rec_len - CBS_len(&frag));
		return TLS_HELLO_NEED_MORE;
	}
	/* Every record carries at least one message byte and the message
	 * is at most 4 + 2^24 bytes, so these stay far below 2^32. */
	memcpy(st->hdr, hdr, sizeof(hdr));
	st->hdr_len = (uint8_t)hdr_len;
	st->msg_len = (uint32_t)msg_len;
	st->msg_seen += (uint32_t)rec_len;
	st->rec_off += REC_HEADER_LEN + (uint32_t)rec_len;
	return TLS_HELLO_OK;
}

static enum tls_hello_result peek(struct tls_hello_state *st,
				  struct tls_hello *out, uint8_t *scratch,
				  size_t scratch_len, size_t max_len,
				  const uint8_t *in, size_t in_len)
{
	enum tls_hello_result r;
	CBS recs, part, msg;

	memset(out, 0, sizeof(*out));
	if (st->rec_off > in_len) {
		out->error = "input shorter than at the last call";
		return TLS_HELLO_BAD; /* the caller broke the contract */
	}

	/* Pass 1: walk the record headers from where the last call stopped
	 * until the records carry the whole message, reading only the
	 * handshake header out of the fragments. Every check happens in
	 * stream order, so a final answer depends only on a prefix of the
	 * input and never changes as more arrives. A record is walked once,
	 * when it is whole (one still arriving costs a header read per call),
	 * so the calls together cost O(bytes received). */
	while (st->msg_len == 0 || st->msg_seen != st->msg_len) {
		r = walk_record(st, out, max_len, in, in_len);
		if (r != TLS_HELLO_OK)
			return r;
	}
	out->records_len = st->rec_off;

	/* Pass 2, once: the message is in. One record: view it in place.
	 * Several: join their fragments in scratch.
	 * (Not with CBB_init_fixed: this BoringSSL allocates the CBB's base.) */
	if (out->records_len == REC_HEADER_LEN + st->msg_len) {
		CBS_init(&msg, in, out->records_len);
		if (!CBS_skip(&msg, REC_HEADER_LEN)) {
			out->error = "record reassembly failed";
			return TLS_HELLO_BAD; /* cannot happen */
		}
	} else if (st->msg_len > scratch_len) {
		out->error = "ClientHello larger than the scratch buffer";
		return TLS_HELLO_BAD; /* the caller broke the contract */
	} else {
		size_t joined = 0, n;

		CBS_init(&recs, in, out->records_len);
		while (CBS_len(&recs) != 0) {
			if (!CBS_skip(&recs, REC_HEADER_LEN - 2) ||
			    !CBS_get_u16_length_prefixed(&recs, &part) ||
			    CBS_len(&part) > scratch_len - joined) {
				out->error = "record reassembly failed";
				return TLS_HELLO_BAD; /* cannot happen */
			}
			n = CBS_len(&part);
			if (!CBS_copy_bytes(&part, scratch + joined, n)) {
				out->error = "record reassembly failed";
				return TLS_HELLO_BAD; /* cannot happen */
			}
			joined += n;
		}
		CBS_init(&msg, scratch, joined);
	}

	if (!parse_client_hello(out, &msg)) {
		const char *err = out->error;
		uint8_t alert = out->alert;

		memset(out, 0, sizeof(*out));
		out->error = err;
		out->alert = alert;
		return TLS_HELLO_BAD;
	}
	return TLS_HELLO_OK;
}

enum tls_hello_result tls_hello_peek(struct tls_hello_state *st,
				     struct tls_hello *out, uint8_t *scratch,
				     size_t scratch_len, size_t max_len,
				     const uint8_t *in, size_t in_len)
{
	struct tls_hello_state fresh = { 0 };
	enum tls_hello_result r;

	r = peek(st ? st : &fresh, out, scratch, scratch_len, max_len, in,
		 in_len);
	/* A length that does not add up is the most common failure; the
	 * rules with another alert set theirs where they fail. */
	if ((r == TLS_HELLO_BAD || r == TLS_HELLO_TOO_LARGE) && !out->alert)
		out->alert = TLS_ALERT_DECODE_ERROR;
	return r;
}

const char *tls_hello_result_str(enum tls_hello_result r)
{
	switch (r) {
	case TLS_HELLO_OK:
		return "ok";
	case TLS_HELLO_NEED_MORE:
		return "need_more";
	case TLS_HELLO_NOT_TLS:
		return "not_tls";
	case TLS_HELLO_TOO_LARGE:
		return "too_large";
	case TLS_HELLO_BAD:
		return "bad";
	}
	return "unknown";
}
