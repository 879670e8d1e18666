/* route/host.c: hostname validation and normalisation.
 *
 * The SNI a client sends is untrusted; the router only ever compares names
 * that passed through here, so the trie and the VM table can use plain
 * byte comparisons on lowercase LDH labels.
 */
#include "route/route.h"

#include <arpa/inet.h>
#include <string.h>

#define HOST_MAX 253  /* RFC 1035 2.3.4, without the trailing dot */
#define LABEL_MAX 63

/* Letters, digits and hyphen; '.' is handled by the caller. A table
 * keeps the per-byte loop branch-light: SNI is checked on every connection
 * before anything else is done with it. */
static const bool host_ldh[256] = {
	['a' ... 'z'] = true,
	['A' ... 'Z'] = true,
	['0' ... '9'] = true,
	['-'] = true,
};

bool route_host_normalize(char *out, size_t *out_len, size_t out_cap,
			  const uint8_t *in, size_t in_len)
{
	size_t i, label_start = 0;

	if (in_len == 0 || in_len > HOST_MAX || out_cap < in_len + 1)
		return false;

	/* Labels are checked when their end ('.' or the end of the name) is
	 * reached. Every valid byte already has bit 0x20 set except the
	 * uppercase letters, so "| 0x20" lowercases without a branch.
	 * Underscores are refused on purpose: RFC 1123 host names, not DNS
	 * record names. */
	for (i = 0; i < in_len; i++) {
		uint8_t c = in[i];

		if (c == '.') {
			if (i == label_start || i - label_start > LABEL_MAX ||
			    in[label_start] == '-' || in[i - 1] == '-')
				return false;
			label_start = i + 1;
		} else if (!host_ldh[c]) {
			return false;
		}
		out[i] = (char)(c | 0x20);
	}
	if (i == label_start || i - label_start > LABEL_MAX ||
	    in[label_start] == '-' || in[i - 1] == '-')
		return false;
	out[in_len] = '\0';
	*out_len = in_len;
	return true;
}

bool route_vm_id_norm(char out[ROUTE_VM_ID_MAX + 1], size_t *out_len,
		      const char *in, size_t in_len)
{
	return in_len <= ROUTE_VM_ID_MAX &&
	       route_host_normalize(out, out_len, ROUTE_VM_ID_MAX + 1,
				    (const uint8_t *)in, in_len) &&
	       !memchr(out, '.', *out_len);
}

enum route_addr_status route_parse_vm_addr(struct in6_addr *out,
					   const char *s, size_t len)
{
	/* The longest textual IPv6 address is 45 bytes. */
	char buf[INET6_ADDRSTRLEN + 1];
	struct in_addr a4;

	/* inet_pton stops at a NUL: "fd00::1\0junk" is not fd00::1. */
	if (len >= sizeof(buf) || memchr(s, '\0', len))
		return ROUTE_ADDR_BAD;
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return ROUTE_ADDR_V4;
	if (inet_pton(AF_INET6, buf, out) != 1)
		return ROUTE_ADDR_BAD;
	/* IPv4-mapped is IPv4 in disguise: the VM would be reached over
	 * IPv4. */
	if (IN6_IS_ADDR_V4MAPPED(out))
		return ROUTE_ADDR_V4;
	if (IN6_IS_ADDR_UNSPECIFIED(out) || IN6_IS_ADDR_MULTICAST(out))
		return ROUTE_ADDR_NOT_ONE;
	return ROUTE_ADDR_OK;
}
