/*
 * libFuzzer target for the regex engine (rx.h): any bytes as up to eight patterns and a text.
 * A refused pattern must say why on one line; a regex set, given the atoms found in the text
 * the way the engine finds them (ignoring ASCII case), must report exactly the regexes that
 * match the text on their own: the atoms may only spare work, never lose a match.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rx.h"

#define FUZZ_RX_MAX	 4096
#define FUZZ_RX_PATTERNS 8

static unsigned char fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Whether @atom occurs in @s ignoring ASCII case, as the engine's Hyperscan scan finds it. */
static int contains_folded(const char *s, size_t n, const char *atom, size_t m)
{
	if (m == 0)
		return 1;
	for (size_t i = 0; i + m <= n; i++) {
		size_t k = 0;
		while (k < m && fold((unsigned char)s[i + k]) == fold((unsigned char)atom[k]))
			k++;
		if (k == m)
			return 1;
	}
	return 0;
}

struct seen {
	unsigned char hit[FUZZ_RX_PATTERNS];
	int calls;
};

static void on_hit(void *ctx, unsigned id)
{
	struct seen *s = ctx;
	if (id >= FUZZ_RX_PATTERNS || s->hit[id])
		abort(); /* out of range, or reported twice */
	s->hit[id] = 1;
	s->calls++;
}

/* Input: pattern\0pattern\0...\0text (the last part is the text). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p[FUZZ_RX_PATTERNS + 1];
	size_t len[FUZZ_RX_PATTERNS + 1], n = 0, at = 0;
	struct rx *one[FUZZ_RX_PATTERNS] = {0};
	unsigned in_set[FUZZ_RX_PATTERNS];
	struct rx_set *set = NULL;
	unsigned *atoms = NULL;
	char err[256];
	size_t n_set = 0;

	if (size > FUZZ_RX_MAX)
		return 0;
	while (n < FUZZ_RX_PATTERNS + 1) {
		const char *z = memchr(data + at, '\0', size - at);
		size_t l = z ? (size_t)(z - (const char *)data) - at : size - at;
		p[n] = (const char *)data + at;
		len[n++] = l;
		if (!z)
			break;
		at += l + 1;
	}
	if (n < 2)
		return 0;
	const char *text = p[n - 1];
	size_t tlen = len[n - 1];
	if (rx_set_new(&set) < 0)
		return 0;
	for (size_t i = 0; i + 1 < n; i++) {
		err[0] = '\0';
		int r = rx_new(p[i], len[i], &one[i], err, sizeof(err));
		if (r == -EINVAL && (err[0] == '\0' || strchr(err, '\n')))
			abort();
		if (r < 0)
			continue;
		if (rx_set_add(set, p[i], len[i], err, sizeof(err)) != 0)
			abort(); /* what compiles alone is accepted by a set */
		in_set[n_set++] = (unsigned)i;
	}
	if (n_set > 0 && rx_set_compile(set) == 0) {
		size_t na = rx_set_atom_count(set), found = 0;
		atoms = malloc((na ? na : 1) * sizeof(*atoms));
		if (!atoms)
			goto out;
		for (size_t a = 0; a < na; a++) {
			size_t al;
			const char *s = rx_set_atom(set, a, &al);
			for (size_t k = 0; k < al; k++) {
				if (s[k] >= 'A' && s[k] <= 'Z')
					abort(); /* atoms are lower case */
			}
			if (contains_folded(text, tlen, s, al))
				atoms[found++] = (unsigned)a;
		}
		struct seen seen = {{0}, 0};
		int m = rx_set_match(set, text, tlen, atoms, found, on_hit, &seen);
		if (m >= 0 && m != seen.calls)
			abort();
		for (size_t k = 0; m >= 0 && k < n_set; k++) {
			if (!!seen.hit[k] != rx_search(one[in_set[k]], text, tlen))
				abort(); /* the set and the regex alone disagree */
		}
	}
out:
	free(atoms);
	rx_set_free(set);
	for (size_t i = 0; i < FUZZ_RX_PATTERNS; i++)
		rx_free(one[i]);
	return 0;
}
