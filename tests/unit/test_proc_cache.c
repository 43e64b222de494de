/*
 * Unit tests of the process cache: entity ids, fork, enrichment, pid reuse, the caps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/event.h"
#include "lib/proc_cache.h"

#define BOOT_ID "72edc253-977e-4cb4-ada6-97cf9f240245"

static struct proc_info make_info(uint32_t pid, uint32_t ppid, uint64_t start, char *exe)
{
	struct proc_info info = {0};

	info.pid = pid;
	info.ppid = ppid;
	info.start_ticks = start;
	info.uid = 1000;
	info.euid = 0;
	info.gid = 100;
	info.egid = 101;
	info.loginuid = -1;
	info.executable = exe;
	return info;
}

static void put(struct proc_cache *cache, uint32_t pid, uint32_t ppid, uint64_t start, char *exe)
{
	struct proc_info info = make_info(pid, ppid, start, exe);
	assert_int_equal(proc_cache_put(cache, &info), 0);
}

static void assert_event_str(const struct event *ev, enum field_id id, const char *want)
{
	size_t len = 0;
	const char *s = event_str(ev, id, &len);

	assert_non_null(s);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(s, want, len);
}

static void assert_list_item(const struct event *ev, enum field_id id, uint32_t i, const char *want)
{
	size_t len = 0;
	const char *s = event_list_item(ev, id, i, &len);

	assert_non_null(s);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(s, want, len);
}

static void test_entity_id(void **state)
{
	char a[PROC_ENTITY_ID_LEN + 1], b[PROC_ENTITY_ID_LEN + 1];

	proc_entity_id(BOOT_ID, 42, 12345, a);
	assert_int_equal(strlen(a), PROC_ENTITY_ID_LEN);
	assert_int_equal(strspn(a, "0123456789abcdef"), PROC_ENTITY_ID_LEN);
	proc_entity_id(BOOT_ID, 42, 12345, b);
	assert_string_equal(a, b);
	proc_entity_id(BOOT_ID, 42, 12346, b);
	assert_string_not_equal(a, b);
	proc_entity_id(BOOT_ID, 43, 12345, b);
	assert_string_not_equal(a, b);
	proc_entity_id("another-boot", 42, 12345, b);
	assert_string_not_equal(a, b);
	proc_entity_id(NULL, 42, 12345, b);
	assert_int_equal(strlen(b), PROC_ENTITY_ID_LEN);
}

static void test_new_rejects_zero_cap(void **state)
{
	assert_null(proc_cache_new(0, BOOT_ID));
	proc_cache_free(NULL);
}

static void test_put_get(void **state)
{
	struct proc_cache *cache = proc_cache_new(16, BOOT_ID);
	char exe[] = "/usr/bin/bash";
	char cmd[] = "bash -l";
	char cwd[] = "/home/user";
	char tty[] = "pts/3";
	char cg[] = "/user.slice/user-1000.slice";
	char cid[64 + 1];
	struct proc_info info = make_info(100, 1, 5000, exe);
	const struct proc_info *got;
	char want_id[PROC_ENTITY_ID_LEN + 1];
	struct proc_cache_stats st;

	memset(cid, 'a', 64);
	cid[64] = '\0';
	info.command_line = cmd;
	info.working_directory = cwd;
	info.tty = tty;
	info.cgroup = cg;
	info.container_id = cid;
	info.loginuid = 1000;
	assert_non_null(cache);
	assert_int_equal(proc_cache_put(cache, &info), 0);
	/* the cache owns copies: the caller's buffers may change afterwards */
	exe[1] = 'X';

	got = proc_cache_get(cache, 100);
	assert_non_null(got);
	assert_int_equal(got->pid, 100);
	assert_int_equal(got->ppid, 1);
	assert_int_equal(got->start_ticks, 5000);
	assert_int_equal(got->uid, 1000);
	assert_int_equal(got->euid, 0);
	assert_int_equal(got->gid, 100);
	assert_int_equal(got->egid, 101);
	assert_int_equal(got->loginuid, 1000);
	assert_string_equal(got->executable, "/usr/bin/bash");
	assert_string_equal(got->command_line, "bash -l");
	assert_string_equal(got->working_directory, "/home/user");
	assert_string_equal(got->tty, "pts/3");
	assert_string_equal(got->cgroup, "/user.slice/user-1000.slice");
	assert_string_equal(got->container_id, cid);
	assert_false(got->exited);
	assert_false(got->command_line_truncated);
	proc_entity_id(BOOT_ID, 100, 5000, want_id);
	assert_string_equal(got->entity_id, want_id);

	assert_null(proc_cache_get(cache, 101));
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.max_entries, 16);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.pid_reuse, 0);

	/* a put with the same start time (an exec) replaces the image, keeps the id */
	info.executable = "/usr/bin/python3";
	info.command_line = NULL;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	got = proc_cache_get(cache, 100);
	assert_string_equal(got->executable, "/usr/bin/python3");
	assert_null(got->command_line);
	assert_string_equal(got->entity_id, want_id);
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.pid_reuse, 0);

	/* putting an entry handed out by the cache back in is safe */
	struct proc_info again = *got;
	again.uid = 7;
	assert_int_equal(proc_cache_put(cache, &again), 0);
	assert_int_equal(proc_cache_get(cache, 100)->uid, 7);
	assert_string_equal(proc_cache_get(cache, 100)->executable, "/usr/bin/python3");
	proc_cache_free(cache);
}

static void test_fork_inherits(void **state)
{
	struct proc_cache *cache = proc_cache_new(16, BOOT_ID);
	struct proc_info info = make_info(200, 1, 100, "/usr/sbin/sshd");
	const struct proc_info *child, *parent;
	char want_id[PROC_ENTITY_ID_LEN + 1];

	info.command_line = "sshd: user [priv]";
	info.cgroup = "/system.slice/ssh.service";
	info.loginuid = 1000;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	assert_int_equal(proc_cache_fork(cache, 200, 201, 150), 0);

	child = proc_cache_get(cache, 201);
	assert_non_null(child);
	assert_int_equal(child->pid, 201);
	assert_int_equal(child->ppid, 200);
	assert_int_equal(child->start_ticks, 150);
	assert_string_equal(child->executable, "/usr/sbin/sshd");
	assert_string_equal(child->command_line, "sshd: user [priv]");
	assert_string_equal(child->cgroup, "/system.slice/ssh.service");
	assert_int_equal(child->uid, 1000);
	assert_int_equal(child->loginuid, 1000);
	proc_entity_id(BOOT_ID, 201, 150, want_id);
	assert_string_equal(child->entity_id, want_id);
	parent = proc_cache_get(cache, 200);
	assert_string_not_equal(parent->entity_id, want_id);
	assert_ptr_not_equal(parent->executable, proc_cache_get(cache, 201)->executable);

	/* unknown parent: the child is recorded with what is known */
	assert_int_equal(proc_cache_fork(cache, 300, 301, 170), 0);
	child = proc_cache_get(cache, 301);
	assert_non_null(child);
	assert_int_equal(child->ppid, 300);
	assert_null(child->executable);
	assert_int_equal(child->loginuid, -1);

	/* a fork for a process the cache already knows better (seeded after exec) keeps it */
	put(cache, 202, 200, 160, "/usr/bin/bash");
	assert_int_equal(proc_cache_fork(cache, 200, 202, 160), 0);
	assert_string_equal(proc_cache_get(cache, 202)->executable, "/usr/bin/bash");
	proc_cache_free(cache);
}

/* 1 systemd <- 100 sshd <- 200 bash <- 300 python3 */
static struct proc_cache *chain_cache(void)
{
	struct proc_cache *cache = proc_cache_new(64, BOOT_ID);
	struct proc_info info;

	assert_non_null(cache);
	put(cache, 1, 0, 1, "/usr/lib/systemd/systemd");
	put(cache, 100, 1, 10, "/usr/sbin/sshd");
	info = make_info(200, 100, 20, "/usr/bin/bash");
	info.command_line = "-bash";
	assert_int_equal(proc_cache_put(cache, &info), 0);
	info = make_info(300, 200, 30, "/usr/bin/python3");
	info.command_line = "python3 -c print(1)";
	info.working_directory = "/tmp";
	info.tty = "pts/0";
	info.cgroup = "/system.slice/docker-abc.scope";
	info.container_id = "abc";
	info.loginuid = 1000;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	return cache;
}

static void test_enrich(void **state)
{
	struct proc_cache *cache = chain_cache();
	struct event *ev = event_new();
	char id[PROC_ENTITY_ID_LEN + 1];
	int64_t n;

	assert_true(proc_cache_enrich(cache, ev, 300));
	assert_true(event_int(ev, F_PROCESS_PID, &n));
	assert_int_equal(n, 300);
	proc_entity_id(BOOT_ID, 300, 30, id);
	assert_event_str(ev, F_PROCESS_ENTITY_ID, id);
	assert_event_str(ev, F_PROCESS_EXECUTABLE, "/usr/bin/python3");
	assert_event_str(ev, F_PROCESS_NAME, "python3");
	assert_event_str(ev, F_PROCESS_COMMAND_LINE, "python3 -c print(1)");
	assert_event_str(ev, F_PROCESS_WORKING_DIRECTORY, "/tmp");
	assert_event_str(ev, F_PROCESS_TTY_NAME, "pts/0");
	assert_event_str(ev, F_PROCESS_CGROUP, "/system.slice/docker-abc.scope");
	assert_event_str(ev, F_CONTAINER_ID, "abc");
	assert_event_str(ev, F_USER_ID, "1000");
	assert_event_str(ev, F_USER_EFFECTIVE_ID, "0");
	assert_event_str(ev, F_USER_AUDIT_ID, "1000");
	assert_event_str(ev, F_GROUP_ID, "100");
	assert_event_str(ev, F_GROUP_EFFECTIVE_ID, "101");
	assert_false(event_has(ev, F_USER_NAME));

	assert_true(event_int(ev, F_PROCESS_PARENT_PID, &n));
	assert_int_equal(n, 200);
	proc_entity_id(BOOT_ID, 200, 20, id);
	assert_event_str(ev, F_PROCESS_PARENT_ENTITY_ID, id);
	assert_event_str(ev, F_PROCESS_PARENT_EXECUTABLE, "/usr/bin/bash");
	assert_event_str(ev, F_PROCESS_PARENT_NAME, "bash");
	assert_event_str(ev, F_PROCESS_PARENT_COMMAND_LINE, "-bash");

	assert_int_equal(event_list_count(ev, F_PROCESS_ANCESTORS), 3);
	assert_list_item(ev, F_PROCESS_ANCESTORS, 0, "/usr/bin/bash");
	assert_list_item(ev, F_PROCESS_ANCESTORS, 1, "/usr/sbin/sshd");
	assert_list_item(ev, F_PROCESS_ANCESTORS, 2, "/usr/lib/systemd/systemd");
	assert_int_equal(event_list_count(ev, F_EVENT_TRUNCATED), 0);

	/* pid 1 has no parent and no ancestors; loginuid unset gives no user.audit.id */
	event_reset(ev);
	assert_true(proc_cache_enrich(cache, ev, 1));
	assert_false(event_has(ev, F_PROCESS_PARENT_PID));
	assert_false(event_has(ev, F_PROCESS_ANCESTORS));
	assert_false(event_has(ev, F_USER_AUDIT_ID));
	assert_false(event_has(ev, F_PROCESS_COMMAND_LINE));

	/* unknown pid: nothing set, a miss counted */
	struct proc_cache_stats st;
	event_reset(ev);
	assert_false(proc_cache_enrich(cache, ev, 999));
	assert_false(event_has(ev, F_PROCESS_PID));
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.misses, 1);

	event_free(ev);
	proc_cache_free(cache);
}

static void test_enrich_keeps_event_fields(void **state)
{
	struct proc_cache *cache = chain_cache();
	struct event *ev = event_new();
	int64_t n;

	/* what the event observed itself wins over the cache */
	event_set_cstr(ev, F_PROCESS_EXECUTABLE, "/tmp/evil");
	event_set_cstr(ev, F_USER_ID, "0");
	event_set_int(ev, F_PROCESS_PARENT_PID, 77);
	event_list_append(ev, F_PROCESS_ANCESTORS, "/seen", 5);
	assert_true(proc_cache_enrich(cache, ev, 300));
	assert_event_str(ev, F_PROCESS_EXECUTABLE, "/tmp/evil");
	assert_event_str(ev, F_PROCESS_NAME, "python3");
	assert_event_str(ev, F_USER_ID, "0");
	assert_true(event_int(ev, F_PROCESS_PARENT_PID, &n));
	assert_int_equal(n, 77);
	assert_int_equal(event_list_count(ev, F_PROCESS_ANCESTORS), 1);
	assert_list_item(ev, F_PROCESS_ANCESTORS, 0, "/seen");
	event_free(ev);
	proc_cache_free(cache);
}

static void test_exited_parent_still_enriches(void **state)
{
	struct proc_cache *cache = chain_cache();
	struct event *ev = event_new();

	proc_cache_exit(cache, 200);
	assert_true(proc_cache_get(cache, 200)->exited);
	assert_true(proc_cache_enrich(cache, ev, 300));
	assert_event_str(ev, F_PROCESS_PARENT_EXECUTABLE, "/usr/bin/bash");
	assert_int_equal(event_list_count(ev, F_PROCESS_ANCESTORS), 3);
	/* exiting twice or an unknown pid changes nothing */
	proc_cache_exit(cache, 200);
	proc_cache_exit(cache, 4242);
	event_free(ev);
	proc_cache_free(cache);
}

static void test_ancestors_capped(void **state)
{
	struct proc_cache *cache = proc_cache_new(256, BOOT_ID);
	struct event *ev = event_new();
	char exe[40][32];

	/* 1 <- 2 <- ... <- 40: deeper than PROC_ANCESTORS_MAX */
	for (uint32_t pid = 1; pid <= 40; pid++) {
		snprintf(exe[pid - 1], sizeof(exe[0]), "/bin/p%u", pid);
		put(cache, pid, pid - 1, pid, exe[pid - 1]);
	}
	assert_true(proc_cache_enrich(cache, ev, 40));
	assert_int_equal(event_list_count(ev, F_PROCESS_ANCESTORS), PROC_ANCESTORS_MAX);
	assert_list_item(ev, F_PROCESS_ANCESTORS, 0, "/bin/p39");
	assert_list_item(ev, F_PROCESS_ANCESTORS, PROC_ANCESTORS_MAX - 1, "/bin/p24");

	/* an ancestor with no known image is skipped, the walk continues above it */
	event_reset(ev);
	put(cache, 5, 4, 5, NULL);
	put(cache, 6, 5, 6, "/bin/p6");
	assert_true(proc_cache_enrich(cache, ev, 6));
	assert_int_equal(event_list_count(ev, F_PROCESS_ANCESTORS), 4);
	assert_list_item(ev, F_PROCESS_ANCESTORS, 0, "/bin/p4");
	assert_list_item(ev, F_PROCESS_ANCESTORS, 3, "/bin/p1");
	assert_false(event_has(ev, F_PROCESS_PARENT_EXECUTABLE));
	assert_false(event_has(ev, F_PROCESS_PARENT_NAME));
	event_free(ev);
	proc_cache_free(cache);
}

static void test_pid_reuse(void **state)
{
	struct proc_cache *cache = proc_cache_new(16, BOOT_ID);
	struct proc_cache_stats st;
	char first[PROC_ENTITY_ID_LEN + 1];
	const struct proc_info *got;

	put(cache, 500, 1, 10, "/usr/bin/old");
	memcpy(first, proc_cache_get(cache, 500)->entity_id, sizeof(first));
	proc_cache_exit(cache, 500);
	put(cache, 500, 1, 20, "/usr/bin/new");
	got = proc_cache_get(cache, 500);
	assert_string_equal(got->executable, "/usr/bin/new");
	assert_false(got->exited);
	assert_string_not_equal(got->entity_id, first);
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 1);
	assert_int_equal(st.pid_reuse, 1);

	/* a fork that reuses a pid replaces the stale entry too */
	put(cache, 600, 1, 30, "/usr/bin/parent");
	assert_int_equal(proc_cache_fork(cache, 600, 500, 40), 0);
	got = proc_cache_get(cache, 500);
	assert_string_equal(got->executable, "/usr/bin/parent");
	assert_int_equal(got->start_ticks, 40);
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.pid_reuse, 2);
	proc_cache_free(cache);
}

static void test_reused_parent_pid_is_not_the_parent(void **state)
{
	struct proc_cache *cache = proc_cache_new(16, BOOT_ID);
	struct event *ev = event_new();
	int64_t n;

	/* 700's parent 600 died and its pid went to a process started after 700 */
	put(cache, 700, 600, 50, "/usr/bin/orphan");
	put(cache, 600, 1, 90, "/usr/bin/newcomer");
	assert_true(proc_cache_enrich(cache, ev, 700));
	assert_true(event_int(ev, F_PROCESS_PARENT_PID, &n));
	assert_int_equal(n, 600);
	assert_false(event_has(ev, F_PROCESS_PARENT_EXECUTABLE));
	assert_false(event_has(ev, F_PROCESS_PARENT_ENTITY_ID));
	assert_false(event_has(ev, F_PROCESS_ANCESTORS));
	event_free(ev);
	proc_cache_free(cache);
}

static void test_eviction(void **state)
{
	struct proc_cache *cache = proc_cache_new(4, BOOT_ID);
	struct proc_cache_stats st;

	put(cache, 1, 0, 1, "/a");
	put(cache, 2, 1, 2, "/b");
	put(cache, 3, 1, 3, "/c");
	put(cache, 4, 1, 4, "/d");
	proc_cache_exit(cache, 2);
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 4);

	/* full: the exited entry goes first, even though 1 is older */
	put(cache, 5, 1, 5, "/e");
	assert_null(proc_cache_get(cache, 2));
	assert_non_null(proc_cache_get(cache, 1)); /* touches 1 */
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.reaped, 1);
	assert_int_equal(st.evictions, 0);

	/* no exited entry left: the least recently used live one (3) goes */
	put(cache, 6, 1, 6, "/f");
	assert_null(proc_cache_get(cache, 3));
	assert_non_null(proc_cache_get(cache, 1));
	assert_non_null(proc_cache_get(cache, 4));
	assert_non_null(proc_cache_get(cache, 5));
	assert_non_null(proc_cache_get(cache, 6));
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.reaped, 1);
	assert_int_equal(st.evictions, 1);

	/* enrich counts as use too: 1 was used last by get above, then 4, 5, 6 */
	struct event *ev = event_new();
	assert_true(proc_cache_enrich(cache, ev, 1));
	put(cache, 7, 1, 7, "/g");
	assert_null(proc_cache_get(cache, 4));
	assert_non_null(proc_cache_get(cache, 1));
	event_free(ev);

	/* replacing a known pid at the cap evicts nothing */
	put(cache, 7, 1, 7, "/g2");
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.evictions, 2);
	assert_int_equal(st.entries, 4);

	/* a cache of one still works */
	struct proc_cache *one = proc_cache_new(1, BOOT_ID);
	put(one, 10, 1, 1, "/x");
	put(one, 11, 1, 2, "/y");
	assert_null(proc_cache_get(one, 10));
	assert_string_equal(proc_cache_get(one, 11)->executable, "/y");
	proc_cache_free(one);
	proc_cache_free(cache);
}

static void test_many_entries(void **state)
{
	struct proc_cache *cache = proc_cache_new(1000, BOOT_ID);
	struct proc_cache_stats st;

	/* past the initial table size: the table grows and rehashes */
	for (uint32_t pid = 1; pid <= 5000; pid++)
		put(cache, pid * 7919u, 1, pid, "/bin/true");
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 1000);
	assert_int_equal(st.evictions, 4000);
	for (uint32_t pid = 4001; pid <= 5000; pid++) {
		const struct proc_info *got = proc_cache_get(cache, pid * 7919u);
		assert_non_null(got);
		assert_int_equal(got->start_ticks, pid);
	}
	assert_null(proc_cache_get(cache, 4000u * 7919u));
	proc_cache_free(cache);
}

static void test_cycle(void **state)
{
	struct proc_cache *cache = proc_cache_new(16, BOOT_ID);
	struct event *ev = event_new();

	/* stale data can close the ppid chain into a loop; equal start times defeat the
	 * start-time check, so the walk must notice the loop itself */
	put(cache, 10, 11, 5, "/bin/ten");
	put(cache, 11, 12, 5, "/bin/eleven");
	put(cache, 12, 10, 5, "/bin/twelve");
	assert_true(proc_cache_enrich(cache, ev, 10));
	assert_int_equal(event_list_count(ev, F_PROCESS_ANCESTORS), 2);
	assert_list_item(ev, F_PROCESS_ANCESTORS, 0, "/bin/eleven");
	assert_list_item(ev, F_PROCESS_ANCESTORS, 1, "/bin/twelve");

	/* its own parent */
	event_reset(ev);
	put(cache, 13, 13, 5, "/bin/self");
	assert_true(proc_cache_enrich(cache, ev, 13));
	assert_false(event_has(ev, F_PROCESS_ANCESTORS));
	assert_false(event_has(ev, F_PROCESS_PARENT_EXECUTABLE));
	event_free(ev);
	proc_cache_free(cache);
}

static void test_long_strings(void **state)
{
	struct proc_cache *cache = proc_cache_new(16, BOOT_ID);
	struct event *ev = event_new();
	size_t big = 4u * 1024 * 1024;
	char *s = malloc(big + 1);
	struct proc_info info;
	const struct proc_info *got;
	size_t len;

	assert_non_null(s);
	memset(s, 'x', big);
	s[0] = '/';
	s[big] = '\0';
	info = make_info(20, 1, 1, s);
	info.command_line = s;
	info.working_directory = s;
	info.tty = s;
	info.cgroup = s;
	info.container_id = s;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	got = proc_cache_get(cache, 20);
	assert_int_equal(strlen(got->executable), PROC_PATH_MAX);
	assert_int_equal(strlen(got->command_line), PROC_CMDLINE_MAX);
	assert_int_equal(strlen(got->working_directory), PROC_PATH_MAX);
	assert_int_equal(strlen(got->tty), PROC_SHORT_STR_MAX);
	assert_int_equal(strlen(got->container_id), PROC_SHORT_STR_MAX);

	assert_true(proc_cache_enrich(cache, ev, 20));
	assert_non_null(event_str(ev, F_PROCESS_COMMAND_LINE, &len));
	assert_int_equal(len, PROC_CMDLINE_MAX);
	assert_true(event_is_truncated(ev, F_PROCESS_COMMAND_LINE));
	assert_true(event_is_truncated(ev, F_PROCESS_EXECUTABLE));
	assert_true(event_is_truncated(ev, F_CONTAINER_ID));

	/* a fork inherits the marks along with the cut strings */
	assert_int_equal(proc_cache_fork(cache, 20, 21, 2), 0);
	event_reset(ev);
	assert_true(proc_cache_enrich(cache, ev, 21));
	assert_true(event_is_truncated(ev, F_PROCESS_COMMAND_LINE));
	assert_true(event_is_truncated(ev, F_PROCESS_PARENT_COMMAND_LINE));

	/* a cut never splits a UTF-8 sequence: 'é' is two bytes straddling the cap */
	memset(s, 'a', PROC_CMDLINE_MAX + 8);
	s[PROC_CMDLINE_MAX - 1] = (char)0xc3;
	s[PROC_CMDLINE_MAX] = (char)0xa9;
	s[PROC_CMDLINE_MAX + 8] = '\0';
	info = make_info(22, 1, 1, "/bin/x");
	info.command_line = s;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	assert_int_equal(strlen(proc_cache_get(cache, 22)->command_line), PROC_CMDLINE_MAX - 1);
	assert_true(proc_cache_get(cache, 22)->command_line_truncated);

	/* a command line the source already had to cut is marked, though short here */
	info = make_info(23, 1, 1, "/bin/y");
	info.command_line = "y --only-the-start";
	info.command_line_truncated = true;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	assert_true(proc_cache_get(cache, 23)->command_line_truncated);
	event_reset(ev);
	assert_true(proc_cache_enrich(cache, ev, 23));
	assert_true(event_is_truncated(ev, F_PROCESS_COMMAND_LINE));
	assert_false(event_is_truncated(ev, F_PROCESS_EXECUTABLE));

	free(s);
	event_free(ev);
	proc_cache_free(cache);
}

static void test_byte_budget(void **state)
{
	struct proc_cache *cache = proc_cache_new(1000, BOOT_ID);
	struct proc_cache_stats st;
	char cmd[10001];
	struct proc_info info;

	memset(cmd, 'c', sizeof(cmd) - 1);
	cmd[sizeof(cmd) - 1] = '\0';
	proc_cache_set_max_bytes(cache, 50000);
	for (uint32_t pid = 1; pid <= 20; pid++) {
		info = make_info(pid, 1, pid, "/bin/sh");
		info.command_line = cmd;
		assert_int_equal(proc_cache_put(cache, &info), 0);
		proc_cache_get_stats(cache, &st);
		assert_true(st.string_bytes <= 50000);
	}
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 4);
	assert_int_equal(st.evictions, 16);
	assert_int_equal(st.max_bytes, 50000);
	assert_non_null(proc_cache_get(cache, 20));
	assert_null(proc_cache_get(cache, 16));

	/* one entry larger than the whole budget is kept on its own */
	proc_cache_set_max_bytes(cache, 100);
	info = make_info(30, 1, 30, "/bin/sh");
	info.command_line = cmd;
	assert_int_equal(proc_cache_put(cache, &info), 0);
	proc_cache_get_stats(cache, &st);
	assert_int_equal(st.entries, 1);
	assert_non_null(proc_cache_get(cache, 30));
	proc_cache_free(cache);
}

/* Random operations on a small pid space checked against a plain array model. */
static void test_random_ops(void **state)
{
	enum { PIDS = 300, CAP = 64 };
	struct proc_cache *cache = proc_cache_new(CAP, BOOT_ID);
	struct event *ev = event_new();
	uint64_t model_start[PIDS] = {0};
	uint32_t seed = 12345;
	struct proc_cache_stats st;

	for (int round = 0; round < 200000; round++) {
		seed = seed * 1103515245u + 12345u;
		uint32_t pid = 1 + (seed >> 8) % (PIDS - 1);
		uint32_t op = (seed >> 24) % 5;
		uint64_t start = (uint64_t)round + 1;
		const struct proc_info *got;

		switch (op) {
		case 0:
			put(cache, pid, (pid * 31u) % PIDS, start, "/bin/x");
			model_start[pid] = start;
			break;
		case 1:
			if (proc_cache_fork(cache, (pid * 17u) % PIDS, pid, start) == 0)
				model_start[pid] = start;
			break;
		case 2:
			proc_cache_exit(cache, pid);
			break;
		case 3:
			got = proc_cache_get(cache, pid);
			/* the cache may have forgotten a pid, but never misremembers one */
			if (got) {
				assert_int_equal(got->pid, pid);
				assert_int_equal(got->start_ticks, model_start[pid]);
			}
			break;
		default:
			event_reset(ev);
			proc_cache_enrich(cache, ev, pid);
			assert_true(event_list_count(ev, F_PROCESS_ANCESTORS) <=
				    PROC_ANCESTORS_MAX);
			break;
		}
		proc_cache_get_stats(cache, &st);
		assert_true(st.entries <= CAP);
	}
	event_free(ev);
	proc_cache_free(cache);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_entity_id),
	    cmocka_unit_test(test_new_rejects_zero_cap),
	    cmocka_unit_test(test_put_get),
	    cmocka_unit_test(test_fork_inherits),
	    cmocka_unit_test(test_enrich),
	    cmocka_unit_test(test_enrich_keeps_event_fields),
	    cmocka_unit_test(test_exited_parent_still_enriches),
	    cmocka_unit_test(test_ancestors_capped),
	    cmocka_unit_test(test_pid_reuse),
	    cmocka_unit_test(test_reused_parent_pid_is_not_the_parent),
	    cmocka_unit_test(test_eviction),
	    cmocka_unit_test(test_many_entries),
	    cmocka_unit_test(test_cycle),
	    cmocka_unit_test(test_long_strings),
	    cmocka_unit_test(test_byte_budget),
	    cmocka_unit_test(test_random_ops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
