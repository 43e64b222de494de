/*
 * Unit tests for vigil-server's credentials (src/server/auth.c): the "ID.SECRET" form, that
 * only the hash of a secret is needed to check it, and that malformed credentials are refused.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/server.h"

static void credentials_round_trip(void **state)
{
	char id[STORE_ID_BYTES], token[STORE_TOKEN_BYTES], id2[STORE_ID_BYTES];
	uint8_t hash[STORE_SECRET_HASH], hash2[STORE_SECRET_HASH];

	assert_int_equal(auth_new_credential(id, token, hash), 0);
	assert_int_equal(strlen(id), 32);
	assert_int_equal(strlen(token), 32 + 1 + 64);
	assert_memory_equal(token, id, 32);
	assert_int_equal(token[32], '.');
	/* the secret is not the hash, and the hash is what checks it */
	assert_null(memmem(token, strlen(token), hash, sizeof(hash)));
	assert_int_equal(auth_split(token, id2, hash2), 0);
	assert_string_equal(id, id2);
	assert_true(auth_hash_equal(hash, hash2));
	/* one character of the secret changed: another hash */
	token[40] = token[40] == 'a' ? 'b' : 'a';
	assert_int_equal(auth_split(token, id2, hash2), 0);
	assert_false(auth_hash_equal(hash, hash2));
	/* two credentials differ */
	char other[STORE_TOKEN_BYTES];
	uint8_t h3[STORE_SECRET_HASH];
	assert_int_equal(auth_new_credential(id2, other, h3), 0);
	assert_string_not_equal(id, id2);
	assert_false(auth_hash_equal(hash, h3));
	(void)state;
}

static void malformed_credentials(void **state)
{
	char id[STORE_ID_BYTES];
	uint8_t hash[STORE_SECRET_HASH];
	char good_secret[65];

	memset(good_secret, 'a', 64);
	good_secret[64] = '\0';
	static const char *const bad[] = {
	    "",
	    "nodot",
	    ".",
	    "0123456789abcdef0123456789abcdef.",
	    "0123456789abcdef0123456789abcde.aa",
	    "0123456789ABCDEF0123456789ABCDEF.aaaa",
	    "../../../../etc/"
	    "passwd.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(auth_split(bad[i], id, hash), -EINVAL);
	char tok[STORE_TOKEN_BYTES];
	snprintf(tok, sizeof(tok), "0123456789abcdef0123456789abcdef.%s", good_secret);
	assert_int_equal(auth_split(tok, id, hash), 0);
	/* a secret one character short or long */
	tok[strlen(tok) - 1] = '\0';
	assert_int_equal(auth_split(tok, id, hash), -EINVAL);
	snprintf(tok, sizeof(tok), "0123456789abcdef0123456789abcdef.%sa", good_secret);
	assert_int_equal(auth_split(tok, id, hash), -EINVAL);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(credentials_round_trip),
	    cmocka_unit_test(malformed_credentials),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
