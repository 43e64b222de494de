/*
 * Unit tests of container id parsing from cgroup paths, one case per runtime layout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/container.h"

#define ID_A "3f1c9a0b7d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"
#define ID_B "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void expect_id(const char *path, const char *want)
{
	char out[CONTAINER_ID_LEN + 1];

	memset(out, '#', sizeof(out));
	if (!want) {
		assert_false(container_id_from_cgroup(path, strlen(path), out));
		assert_int_equal(out[0], '#'); /* left untouched */
		return;
	}
	assert_true(container_id_from_cgroup(path, strlen(path), out));
	assert_string_equal(out, want);
}

static void test_runtimes(void **state)
{
	expect_id("/system.slice/docker-" ID_A ".scope", ID_A);
	expect_id("/docker/" ID_A, ID_A);
	expect_id("/kubepods.slice/kubepods-burstable.slice/"
		  "kubepods-burstable-pod0c2b1e2a_8c1d_4b7e_9f3a_1b2c3d4e5f60.slice/"
		  "cri-containerd-" ID_A ".scope",
		  ID_A);
	expect_id("/kubepods/besteffort/pod0c2b1e2a-8c1d-4b7e-9f3a-1b2c3d4e5f60/" ID_A, ID_A);
	expect_id("/kubepods.slice/kubepods-pod1.slice/crio-" ID_A ".scope", ID_A);
	expect_id("/machine.slice/libpod-" ID_A ".scope", ID_A);
	expect_id("/machine.slice/libpod-" ID_A ".scope/container", ID_A);
	expect_id("/libpod_parent/libpod-" ID_A ".scope", ID_A);
	/* cgroup v1 style with trailing slash */
	expect_id("/docker/" ID_A "/", ID_A);
}

static void test_not_containers(void **state)
{
	expect_id("/", NULL);
	expect_id("", NULL);
	expect_id("/init.scope", NULL);
	expect_id("/user.slice/user-1000.slice/session-3.scope", NULL);
	expect_id("/system.slice/docker.service", NULL);
	/* the runtime's monitor runs beside the container, not in it */
	expect_id("/machine.slice/libpod-conmon-" ID_A ".scope", NULL);
	expect_id("/kubepods.slice/crio-conmon-" ID_A ".scope", NULL);
	/* wrong length, wrong case, wrong suffix, unknown prefix */
	expect_id("/docker/" ID_A "0", NULL);
	expect_id("/docker/0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde", NULL);
	expect_id("/docker/3F1C9A0B7D2E4F5A6B7C8D9E0F1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C", NULL);
	expect_id("/system.slice/docker-" ID_A ".service", NULL);
	expect_id("/system.slice/docker-" ID_A, NULL);
	expect_id("/system.slice/rkt-" ID_A ".scope", NULL);
	expect_id("/system.slice/docker-.scope", NULL);
	expect_id(".scope", NULL);
}

static void test_nested_takes_innermost(void **state)
{
	expect_id("/docker/" ID_A "/docker/" ID_B, ID_B);
	expect_id("/system.slice/docker-" ID_A ".scope/kubepods/pod1/" ID_B, ID_B);
}

static void test_length_is_respected(void **state)
{
	char path[] = "/docker/" ID_A "/docker/" ID_B;
	char out[CONTAINER_ID_LEN + 1];
	size_t first = strlen("/docker/" ID_A);

	/* only the first @len bytes count, even though more follow */
	assert_true(container_id_from_cgroup(path, first, out));
	assert_string_equal(out, ID_A);
	assert_false(container_id_from_cgroup(path, first - 1, out));
	assert_false(container_id_from_cgroup(path, 0, out));
}

static void test_long_path(void **state)
{
	static char path[1 << 20];
	char out[CONTAINER_ID_LEN + 1];
	size_t n = sizeof(path) - 1;

	memset(path, '/', n);
	for (size_t i = 1; i < n; i += 2)
		path[i] = 'a';
	path[n] = '\0';
	assert_false(container_id_from_cgroup(path, n, out));
	memcpy(path + n - CONTAINER_ID_LEN - 1, "/" ID_B, CONTAINER_ID_LEN + 1);
	assert_true(container_id_from_cgroup(path, n, out));
	assert_string_equal(out, ID_B);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_runtimes),
	    cmocka_unit_test(test_not_containers),
	    cmocka_unit_test(test_nested_takes_innermost),
	    cmocka_unit_test(test_length_is_respected),
	    cmocka_unit_test(test_long_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
