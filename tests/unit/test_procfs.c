/*
 * Unit tests of the /proc text parsers: stat with hostile comm, status ids, loginuid, tty
 * names, cgroup lines and command lines.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/procfs.h"

#define ID_A "3f1c9a0b7d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"

/* A real line's fields 3 to 52, after comm. */
#define STAT_TAIL                                                                                  \
	" S 1234 4321 4321 34816 4400 4194560 1711 0 0 0 3 1 0 0 20 0 1 0 987654 9183232 "         \
	"1307 18446744073709551615 94773451411456 94773452316077 140729436510224 0 0 0 "           \
	"65536 3686404 1266761467 1 0 0 17 3 0 0 0 0 0 94773452558448 94773452605700 "             \
	"94773477142528 140729436515345 140729436515355 140729436515355 140729436516334 0\n"

static int parse_stat_str(const char *s, struct procfs_stat *st)
{
	return procfs_parse_stat(s, strlen(s), st);
}

static void test_stat(void **state)
{
	struct procfs_stat st;

	assert_int_equal(parse_stat_str("4400 (bash)" STAT_TAIL, &st), 0);
	assert_int_equal(st.pid, 4400);
	assert_string_equal(st.comm, "bash");
	assert_int_equal(st.state, 'S');
	assert_int_equal(st.ppid, 1234);
	assert_int_equal(st.tty_nr, 34816);
	assert_int_equal(st.start_ticks, 987654);
}

static void test_stat_hostile_comm(void **state)
{
	struct procfs_stat st;

	/* a process may name itself anything: spaces, parentheses, digits that look like fields */
	assert_int_equal(parse_stat_str("77 (a) S 1 2 3 (x)" STAT_TAIL, &st), 0);
	assert_string_equal(st.comm, "a) S 1 2 3 (x");
	assert_int_equal(st.ppid, 1234);
	assert_int_equal(st.start_ticks, 987654);
	assert_int_equal(parse_stat_str("77 ())" STAT_TAIL, &st), 0);
	assert_string_equal(st.comm, ")");
	assert_int_equal(parse_stat_str("77 ()" STAT_TAIL, &st), 0);
	assert_string_equal(st.comm, "");

	/* a comm longer than any kernel prints is cut, not overflowed */
	char line[1024];
	char comm[200];
	memset(comm, 'c', sizeof(comm) - 1);
	comm[sizeof(comm) - 1] = '\0';
	assert_true(snprintf(line, sizeof(line), "9 (%s)%s", comm, STAT_TAIL) < (int)sizeof(line));
	assert_int_equal(parse_stat_str(line, &st), 0);
	assert_int_equal(strlen(st.comm), PROCFS_COMM_MAX);
}

static void test_stat_malformed(void **state)
{
	struct procfs_stat st;

	assert_int_equal(parse_stat_str("", &st), -EINVAL);
	assert_int_equal(parse_stat_str("12 (x", &st), -EINVAL);
	assert_int_equal(parse_stat_str("12 x) S 1", &st), -EINVAL);
	assert_int_equal(parse_stat_str("(x)" STAT_TAIL, &st), -EINVAL);
	assert_int_equal(parse_stat_str("0 (x)" STAT_TAIL, &st), -EINVAL);
	/* cut before field 22 */
	assert_int_equal(
	    parse_stat_str("12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18", &st), -EINVAL);
	assert_int_equal(parse_stat_str("12 (x) S -1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
					"18 19",
					&st),
			 -EINVAL);
	assert_int_equal(parse_stat_str("12 (x)", &st), -EINVAL);
	assert_int_equal(parse_stat_str("12 (x) ", &st), -EINVAL);
	assert_int_equal(parse_stat_str("99999999999 (x)" STAT_TAIL, &st), -EINVAL);
	assert_int_equal(parse_stat_str("12 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
					"18 99999999999999999999999",
					&st),
			 -EINVAL);
	/* the exact minimum is accepted; a negative tpgid is normal */
	assert_int_equal(parse_stat_str("12 (x) S 1 2 3 0 -1 6 7 8 9 10 11 12 13 14 15 16 17 "
					"18 19",
					&st),
			 0);
	assert_int_equal(st.start_ticks, 19);
	assert_int_equal(st.tty_nr, 0);
}

static void test_status(void **state)
{
	static const char status[] = "Name:\tsudo\nUmask:\t0022\nState:\tS (sleeping)\n"
				     "Tgid:\t5\nPid:\t5\nPPid:\t1\nTracerPid:\t0\n"
				     "Uid:\t1000\t0\t0\t0\nGid:\t100\t50\t50\t50\nFDSize:\t64\n";
	uint32_t uid = 9, euid = 9, gid = 9, egid = 9;

	assert_int_equal(
	    procfs_parse_status_ids(status, sizeof(status) - 1, &uid, &euid, &gid, &egid), 0);
	assert_int_equal(uid, 1000);
	assert_int_equal(euid, 0);
	assert_int_equal(gid, 100);
	assert_int_equal(egid, 50);

	/* a name that looks like a Uid line is escaped by the kernel, but be sure anyway:
	 * only a line that starts with the key counts */
	static const char tricky[] = "Name:\tUid:\t0\t0\nUid:\t7\t8\t8\t8\nGid:\t1\t2\t2\t2\n";
	assert_int_equal(
	    procfs_parse_status_ids(tricky, sizeof(tricky) - 1, &uid, &euid, &gid, &egid), 0);
	assert_int_equal(uid, 7);
	assert_int_equal(euid, 8);

	static const char no_gid[] = "Uid:\t1\t1\t1\t1\n";
	static const char bad[] = "Uid:\t1\nGid:\t1\t1\n";
	static const char big[] = "Uid:\t4294967296\t1\nGid:\t1\t1\n";
	assert_int_equal(
	    procfs_parse_status_ids(no_gid, sizeof(no_gid) - 1, &uid, &euid, &gid, &egid), -EINVAL);
	assert_int_equal(procfs_parse_status_ids(bad, sizeof(bad) - 1, &uid, &euid, &gid, &egid),
			 -EINVAL);
	assert_int_equal(procfs_parse_status_ids(big, sizeof(big) - 1, &uid, &euid, &gid, &egid),
			 -EINVAL);
	assert_int_equal(procfs_parse_status_ids("", 0, &uid, &euid, &gid, &egid), -EINVAL);
}

static void test_loginuid(void **state)
{
	assert_int_equal(procfs_parse_loginuid("1000", 4), 1000);
	assert_int_equal(procfs_parse_loginuid("0", 1), 0);
	assert_int_equal(procfs_parse_loginuid("4294967295", 10), -1);
	assert_int_equal(procfs_parse_loginuid("", 0), -1);
	assert_int_equal(procfs_parse_loginuid("x", 1), -1);
	assert_int_equal(procfs_parse_loginuid("99999999999999999999999", 23), -1);
}

static void test_tty(void **state)
{
	char name[32];

	assert_int_equal(procfs_tty_name(0, name, sizeof(name)), -ENOENT);
	assert_int_equal(procfs_tty_name((136u << 8) | 0, name, sizeof(name)), 0);
	assert_string_equal(name, "pts/0");
	assert_int_equal(procfs_tty_name(34816 + 5, name, sizeof(name)), 0);
	assert_string_equal(name, "pts/5");
	/* pts/300: minor 44 on major 137 */
	assert_int_equal(procfs_tty_name((137u << 8) | 44, name, sizeof(name)), 0);
	assert_string_equal(name, "pts/300");
	/* minors past 255 go in the high bits */
	assert_int_equal(procfs_tty_name((136u << 8) | 0x10 | (0x1u << 20), name, sizeof(name)), 0);
	assert_string_equal(name, "pts/272");
	assert_int_equal(procfs_tty_name((4u << 8) | 1, name, sizeof(name)), 0);
	assert_string_equal(name, "tty1");
	assert_int_equal(procfs_tty_name((4u << 8) | 64, name, sizeof(name)), 0);
	assert_string_equal(name, "ttyS0");
	assert_int_equal(procfs_tty_name((5u << 8) | 1, name, sizeof(name)), 0);
	assert_string_equal(name, "console");
	assert_int_equal(procfs_tty_name((188u << 8) | 2, name, sizeof(name)), 0);
	assert_string_equal(name, "ttyUSB2");
	assert_int_equal(procfs_tty_name((250u << 8) | 3, name, sizeof(name)), 0);
	assert_string_equal(name, "250:3");
	assert_int_equal(procfs_tty_name(0xffffffffu, name, sizeof(name)), 0);
	assert_int_equal(procfs_tty_name((136u << 8) | 7, name, 4), -ENAMETOOLONG);
}

static void test_cgroup(void **state)
{
	static const char v2[] = "0::/user.slice/user-1000.slice/session-2.scope\n";
	static const char hybrid[] = "12:pids:/docker/" ID_A "\n"
				     "1:name=systemd:/system.slice/docker-" ID_A ".scope\n"
				     "0::/\n";
	static const char v1[] = "3:cpu,cpuacct:/\n1:name=systemd:/init.scope\n";
	static const char none[] = "garbage\n:\n";
	const char *path;
	size_t len;
	char id[CONTAINER_ID_LEN + 1];

	assert_true(procfs_cgroup_path(v2, sizeof(v2) - 1, &path, &len));
	assert_int_equal(len, strlen("/user.slice/user-1000.slice/session-2.scope"));
	assert_memory_equal(path, "/user.slice/user-1000.slice/session-2.scope", len);
	assert_false(procfs_cgroup_container_id(v2, sizeof(v2) - 1, id));

	/* hybrid: the v2 line wins for the path, the v1 lines hold the container */
	assert_true(procfs_cgroup_path(hybrid, sizeof(hybrid) - 1, &path, &len));
	assert_int_equal(len, 1);
	assert_true(procfs_cgroup_container_id(hybrid, sizeof(hybrid) - 1, id));
	assert_string_equal(id, ID_A);

	assert_true(procfs_cgroup_path(v1, sizeof(v1) - 1, &path, &len));
	assert_int_equal(len, strlen("/init.scope"));
	assert_memory_equal(path, "/init.scope", len);

	assert_false(procfs_cgroup_path(none, sizeof(none) - 1, &path, &len));
	assert_false(procfs_cgroup_path("", 0, &path, &len));
	/* no trailing newline */
	assert_true(procfs_cgroup_path("0::/x", 5, &path, &len));
	assert_int_equal(len, 2);
	/* "10::" is not the unified line */
	assert_false(procfs_cgroup_path("10::/x\n", 7, &path, &len));
}

static void test_join_cmdline(void **state)
{
	char a[] = "python3\0-c\0print(1)\0";
	char b[] = "sshd: user [priv]    "; /* rewritten by setproctitle: no NULs */
	char c[] = "\0\0";
	char d[] = "a\0\0b\0";

	assert_int_equal(procfs_join_cmdline(a, sizeof(a) - 1), strlen("python3 -c print(1)"));
	assert_memory_equal(a, "python3 -c print(1)", strlen("python3 -c print(1)"));
	assert_int_equal(procfs_join_cmdline(b, sizeof(b) - 1), sizeof(b) - 1);
	assert_int_equal(procfs_join_cmdline(c, 2), 0);
	assert_int_equal(procfs_join_cmdline(d, 5), 4);
	assert_memory_equal(d, "a  b", 4);
	assert_int_equal(procfs_join_cmdline(NULL, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stat),	   cmocka_unit_test(test_stat_hostile_comm),
	    cmocka_unit_test(test_stat_malformed), cmocka_unit_test(test_status),
	    cmocka_unit_test(test_loginuid),	   cmocka_unit_test(test_tty),
	    cmocka_unit_test(test_cgroup),	   cmocka_unit_test(test_join_cmdline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
