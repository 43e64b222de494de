/*
 * eBPF source: loads the programs of src/bpf/vigil.bpf.c, attaches them to raw tracepoints,
 * and turns ring-buffer records into events. Reports what it could not attach and every
 * record lost, in the kernel or here. Loading runs in a short-lived child process, which
 * hands the agent the descriptors of the maps, programs and links: the kernel's type
 * information that loading parses (over 10 MB) then never enters the agent's memory.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "bpf_decode.h"
#include "source.h"
#include "vigil.skel.h"

/*
 * Ring buffer between the programs and this source. The kernel maps its pages twice into the
 * agent, so it counts double in the agent's memory; 2 MiB holds some 6,000 exec records or
 * 13,000 file records, several times what the storms of bench/run.sh leave between polls.
 */
#define BPF_RINGBUF_BYTES (2u << 20)
/* Pending bytes that wake the agent at once; fewer wait for its next timed poll. */
#define BPF_WAKEUP_BYTES (BPF_RINGBUF_BYTES / 16)
/* Longest a record waits in the ring buffer when it woke nobody. */
#define BPF_POLL_MAX_MS 20

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(SYS_fchmodat2)
#define SYS_fchmodat2 452
#endif

/* Which categories each syscall class serves. */
enum {
	CAT_PROCESS = SOURCE_CAT_PROCESS,
	CAT_FILE = SOURCE_CAT_FILE,
	CAT_NETWORK = SOURCE_CAT_NETWORK,
	CAT_HOST = SOURCE_CAT_HOST,
	CAT_DRIVER = SOURCE_CAT_DRIVER,
};

/* This architecture's syscall numbers for the classes the programs handle. */
static const struct {
	long nr;
	uint8_t sc;
	unsigned category;
} syscall_classes[] = {
#ifdef SYS_open
    {SYS_open, VG_SC_OPEN, CAT_FILE},
#endif
#ifdef SYS_creat
    {SYS_creat, VG_SC_CREAT, CAT_FILE},
#endif
    {SYS_openat, VG_SC_OPENAT, CAT_FILE},
#ifdef SYS_openat2
    {SYS_openat2, VG_SC_OPENAT2, CAT_FILE},
#endif
#ifdef SYS_rename
    {SYS_rename, VG_SC_RENAME, CAT_FILE},
#endif
#ifdef SYS_renameat
    {SYS_renameat, VG_SC_RENAMEAT, CAT_FILE},
#endif
    {SYS_renameat2, VG_SC_RENAMEAT2, CAT_FILE},
#ifdef SYS_unlink
    {SYS_unlink, VG_SC_UNLINK, CAT_FILE},
#endif
    {SYS_unlinkat, VG_SC_UNLINKAT, CAT_FILE},
#ifdef SYS_rmdir
    {SYS_rmdir, VG_SC_RMDIR, CAT_FILE},
#endif
#ifdef SYS_chmod
    {SYS_chmod, VG_SC_CHMOD, CAT_FILE},
#endif
    {SYS_fchmod, VG_SC_FCHMOD, CAT_FILE},
    {SYS_fchmodat, VG_SC_FCHMODAT, CAT_FILE},
#ifdef SYS_fchmodat2
    {SYS_fchmodat2, VG_SC_FCHMODAT2, CAT_FILE},
#endif
    {SYS_memfd_create, VG_SC_MEMFD_CREATE, CAT_FILE},
    {SYS_connect, VG_SC_CONNECT, CAT_NETWORK},
    {SYS_accept, VG_SC_ACCEPT, CAT_NETWORK},
    {SYS_accept4, VG_SC_ACCEPT4, CAT_NETWORK},
    {SYS_bind, VG_SC_BIND, CAT_NETWORK},
    {SYS_sendto, VG_SC_SENDTO, CAT_NETWORK},
    {SYS_sendmsg, VG_SC_SENDMSG, CAT_NETWORK},
    {SYS_sendmmsg, VG_SC_SENDMMSG, CAT_NETWORK},
    {SYS_setuid, VG_SC_SETUID, CAT_HOST},
    {SYS_setreuid, VG_SC_SETREUID, CAT_HOST},
    {SYS_setresuid, VG_SC_SETRESUID, CAT_HOST},
    {SYS_setfsuid, VG_SC_SETFSUID, CAT_HOST},
    {SYS_setgid, VG_SC_SETGID, CAT_HOST},
    {SYS_setregid, VG_SC_SETREGID, CAT_HOST},
    {SYS_setresgid, VG_SC_SETRESGID, CAT_HOST},
    {SYS_setfsgid, VG_SC_SETFSGID, CAT_HOST},
    {SYS_ptrace, VG_SC_PTRACE, CAT_PROCESS},
    /* only used when the module_load tracepoint is missing */
    {SYS_init_module, VG_SC_INIT_MODULE, CAT_DRIVER},
    {SYS_finit_module, VG_SC_FINIT_MODULE, CAT_DRIVER},
};

enum prog_id {
	PROG_EXEC,
	PROG_FORK,
	PROG_EXIT,
	PROG_SYS_ENTER,
	PROG_SYS_EXIT,
	PROG_MODULE_LOAD,
	PROG_COUNT,
};

/* The tracepoint each program attaches to; without the essential ones the source fails. */
/* clang-format off */
static const struct {
	const char *tracepoint;
	bool essential;
} prog_info[PROG_COUNT] = {
	[PROG_EXEC] = {"sched_process_exec", true},
	[PROG_FORK] = {"sched_process_fork", true},
	[PROG_EXIT] = {"sched_process_exit", true},
	[PROG_SYS_ENTER] = {"sys_enter", false},
	[PROG_SYS_EXIT] = {"sys_exit", false},
	[PROG_MODULE_LOAD] = {"module_load", false},
};
/* clang-format on */

/* Descriptors the loader hands over, in this order; -1 for a program not attached. */
enum loaded_fd {
	FD_EVENTS,
	FD_DROPS,
	FD_PROG,			/* PROG_COUNT program descriptors from here */
	FD_LINK = FD_PROG + PROG_COUNT, /* and PROG_COUNT link descriptors from here */
	FD_COUNT = FD_LINK + PROG_COUNT,
};

/* The loader's answer, sent with the descriptors it holds. */
struct load_reply {
	int ret; /* 0, or -errno with err set */
	char err[256];
	bool attached[PROG_COUNT];
	bool typed_reads;	/* the programs read kernel structures by plain loads */
	bool present[FD_COUNT]; /* which descriptors follow, in enum loaded_fd order */
};

struct source {
	struct agent *agent;
	int fds[FD_COUNT];
	struct ring_buffer *rb;
	struct event *ev;
	struct bpf_decoder *dec;
	int ncpus;
	unsigned categories;
	bool wanted[PROG_COUNT];
	bool attached[PROG_COUNT];
	bool typed_reads; /* the syscall exit program reads kernel structures by plain loads */
	int handled;	  /* records handled in the current poll */
	/* user-space losses and oddities */
	uint64_t records;
	uint64_t malformed; /* records that failed the decoder's checks */
	uint64_t no_memory; /* records whose event could not be built */
	uint64_t emit_failed;
	uint64_t cache_failed;
};

/* Program @id; for the syscall exit, its typed-read form when @typed. */
static struct bpf_program *prog_of(struct vigil_bpf *skel, enum prog_id id, bool typed)
{
	switch (id) {
	case PROG_EXEC:
		return skel->progs.vg_exec;
	case PROG_FORK:
		return skel->progs.vg_fork;
	case PROG_EXIT:
		return skel->progs.vg_exit;
	case PROG_SYS_ENTER:
		return skel->progs.vg_sys_enter;
	case PROG_SYS_EXIT:
		return typed ? skel->progs.vg_sys_exit_typed : skel->progs.vg_sys_exit;
	case PROG_MODULE_LOAD:
		return skel->progs.vg_module_load;
	case PROG_COUNT:
		break;
	}
	return NULL;
}

static struct bpf_link **link_of(struct vigil_bpf *skel, enum prog_id id, bool typed)
{
	switch (id) {
	case PROG_EXEC:
		return &skel->links.vg_exec;
	case PROG_FORK:
		return &skel->links.vg_fork;
	case PROG_EXIT:
		return &skel->links.vg_exit;
	case PROG_SYS_ENTER:
		return &skel->links.vg_sys_enter;
	case PROG_SYS_EXIT:
		return typed ? &skel->links.vg_sys_exit_typed : &skel->links.vg_sys_exit;
	case PROG_MODULE_LOAD:
		return &skel->links.vg_module_load;
	case PROG_COUNT:
		break;
	}
	return NULL;
}

/* libbpf's own warnings go to stderr with the agent's prefix; its chatter does not. */
static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level != LIBBPF_WARN)
		return 0;
	fputs("vigil-agent: ", stderr);
	return vfprintf(stderr, fmt, args);
}

/* The process cache learns the new credentials of a process that changed them. */
static void cache_update_creds(struct source *src, const struct bpf_decoded *d)
{
	struct proc_cache *cache = src->agent->cache;
	const struct proc_info *cur = cache ? proc_cache_get(cache, d->pid) : NULL;
	struct proc_info info;

	if (!cur)
		return;
	info = *cur; /* proc_cache_put copies the strings before it drops the old ones */
	info.uid = d->uid;
	info.euid = d->euid;
	info.gid = d->gid;
	info.egid = d->egid;
	if (proc_cache_put(cache, &info) < 0)
		src->cache_failed++;
}

/* ring_buffer callback: one record. Never fails, so one bad record stops nothing. */
static int handle_record(void *ctx, void *data, size_t size)
{
	struct source *src = ctx;
	struct agent *agent = src->agent;
	struct proc_cache *cache = agent->cache;
	struct event *ev = src->ev;
	struct bpf_decoded d;
	char ts[40];
	int ret;

	src->records++;
	src->handled++;
	ret = bpf_decode_record(src->dec, data, size, ev, &d);
	if (ret == 1)
		return 0;
	if (ret < 0) {
		if (ret == -ENOMEM)
			src->no_memory++;
		else
			src->malformed++;
		return 0;
	}
	format_timestamp(agent_boot_to_epoch(agent, d.ts_ns), ts);
	if (event_set_cstr(ev, F_TIMESTAMP, ts) < 0) {
		src->no_memory++;
		return 0;
	}

	switch (d.type) {
	case VG_T_EXEC:
		/* the cache learns the new image first, so the event's own entry is current */
		if (cache && proc_cache_put(cache, &d.proc) < 0)
			src->cache_failed++;
		break;
	case VG_T_FORK:
		if (cache && proc_cache_fork(cache, d.ppid, d.pid, d.start_ticks) < 0)
			src->cache_failed++;
		break;
	case VG_T_PTRACE:
		if (cache) {
			const struct proc_info *t = proc_cache_get(cache, d.target_pid);
			if (t && t->executable)
				event_set_cstr(ev, F_PROCESS_TARGET_EXECUTABLE, t->executable);
		}
		break;
	default:
		break;
	}

	if (agent_emit(agent, ev) < 0)
		src->emit_failed++;

	if (!cache)
		return 0;
	if (d.type == VG_T_EXIT)
		proc_cache_exit(cache, d.pid);
	else if (d.type == VG_T_CRED)
		cache_update_creds(src, &d);
	return 0;
}

/* Whether the running kernel has tracepoint @name, from its BTF (NULL BTF: assume so). */
static bool kernel_has_tracepoint(const struct btf *vmlinux, const char *name)
{
	char type_name[96];

	if (!vmlinux)
		return true;
	if (snprintf(type_name, sizeof(type_name), "btf_trace_%s", name) >= (int)sizeof(type_name))
		return false;
	return btf__find_by_name_kind(vmlinux, type_name, BTF_KIND_TYPEDEF) >= 0;
}

/*
 * Whether the programs may read kernel structures through typed pointers: the kernel has
 * bpf_rdonly_cast (Linux 6.2). Without its BTF, assume not; the helper reads work anywhere.
 */
static bool kernel_has_rdonly_cast(const struct btf *vmlinux)
{
#ifdef VIGIL_TEST_HOOKS
	/* lets the system tests run the helper-read path on a kernel that has the cast */
	const char *force = getenv("VIGIL_TEST_BPF_HELPER_READS");

	if (force && strcmp(force, "1") == 0)
		return false;
#endif
	return vmlinux && btf__find_by_name_kind(vmlinux, "bpf_rdonly_cast", BTF_KIND_FUNC) >= 0;
}

/*
 * Whether this process may load tracing programs: CAP_SYS_ADMIN, or CAP_BPF with
 * CAP_PERFMON, in its effective set (read from /proc/self/status; assumed when unreadable).
 */
static bool has_bpf_caps(void)
{
	const uint64_t sys_admin = 1ull << 21, perfmon = 1ull << 38, bpf = 1ull << 39;
	unsigned long long eff = 0;
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return true;
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "CapEff: %llx", &eff) == 1;
	fclose(f);
	if (!found)
		return true;
	return (eff & sys_admin) || ((eff & bpf) && (eff & perfmon));
}

/*
 * Checks what the programs need before loading them, so a kernel without it gets a reason
 * rather than a verifier log. Returns 0 or -errno with @err set.
 */
static int probe_kernel(char *err, size_t errlen)
{
	int ret;

	if (access("/sys/kernel/btf/vmlinux", R_OK) != 0) {
		snprintf(err, errlen,
			 "kernel BTF (/sys/kernel/btf/vmlinux) is missing: "
			 "needs CONFIG_DEBUG_INFO_BTF");
		return -ENOTSUP;
	}
	ret = libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_RAW_TRACEPOINT, NULL);
	if (ret == -EPERM || ret == -EACCES || (ret == 0 && !has_bpf_caps())) {
		snprintf(err, errlen,
			 "not permitted to load BPF programs: needs root, or "
			 "CAP_BPF and CAP_PERFMON");
		return -EPERM;
	}
	if (ret <= 0) {
		snprintf(err, errlen, "raw tracepoint BPF programs are not supported: %s",
			 ret < 0 ? strerror(-ret) : "the kernel refused a minimal one");
		return ret < 0 ? ret : -ENOTSUP;
	}
	ret = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL);
	if (ret <= 0) {
		snprintf(err, errlen,
			 "BPF ring buffer maps are not supported (Linux 5.8 or later)");
		return ret < 0 ? ret : -ENOTSUP;
	}
	return 0;
}

/*
 * Decides which programs to load and fills the syscall table for @src->categories; the
 * typed-read form of the syscall exit program when @allow_typed and the kernel has the cast.
 */
static void configure(struct source *src, struct vigil_bpf *skel, bool allow_typed)
{
	/* without the kernel's BTF every tracepoint is tried, and attaching tells */
	struct btf *vmlinux = btf__load_vmlinux_btf();
	bool module_tp, any_syscall = false;

	for (int i = 0; i < PROG_COUNT; i++)
		src->wanted[i] = kernel_has_tracepoint(vmlinux, prog_info[i].tracepoint);
	module_tp = src->wanted[PROG_MODULE_LOAD];
	if (!(src->categories & CAT_DRIVER))
		src->wanted[PROG_MODULE_LOAD] = false;

	skel->rodata->vg_self_tgid = (uint32_t)src->agent->self_pid;
	skel->rodata->vg_wakeup_bytes = BPF_WAKEUP_BYTES;
	src->typed_reads = allow_typed && kernel_has_rdonly_cast(vmlinux);
	memset((void *)skel->rodata->vg_nr_class, 0, sizeof(skel->rodata->vg_nr_class));
	for (size_t i = 0; i < sizeof(syscall_classes) / sizeof(syscall_classes[0]); i++) {
		long nr = syscall_classes[i].nr;
		uint8_t sc = syscall_classes[i].sc;

		if (!(src->categories & syscall_classes[i].category))
			continue;
		if ((sc == VG_SC_INIT_MODULE || sc == VG_SC_FINIT_MODULE) && module_tp)
			continue;
		if (nr < 0 || nr >= (long)VG_NR_SLOTS)
			continue;
		skel->rodata->vg_nr_class[nr] = sc;
		any_syscall = true;
	}
	/* nothing asked of the syscall programs: leave them out, so syscalls cost nothing */
	if (!any_syscall) {
		src->wanted[PROG_SYS_ENTER] = false;
		src->wanted[PROG_SYS_EXIT] = false;
	}
	for (int i = 0; i < PROG_COUNT; i++)
		bpf_program__set_autoload(prog_of(skel, (enum prog_id)i, src->typed_reads),
					  src->wanted[i]);
	/* the form of the syscall exit program not chosen is never loaded */
	bpf_program__set_autoload(prog_of(skel, PROG_SYS_EXIT, !src->typed_reads), false);
	btf__free(vmlinux);
}

/*
 * Opens, configures (see configure()) and loads the programs into *@out. Returns 0, or
 * -errno with @reply->err set and nothing left loaded.
 */
static int open_and_load(struct source *src, bool allow_typed, struct load_reply *reply,
			 struct vigil_bpf **out)
{
	struct vigil_bpf *skel = vigil_bpf__open();
	int ret;

	if (!skel) {
		ret = -errno;
		snprintf(reply->err, sizeof(reply->err), "cannot open the BPF object: %s",
			 strerror(errno));
		return ret;
	}
	configure(src, skel, allow_typed);
	ret = bpf_map__set_max_entries(skel->maps.vg_scratch_map, (uint32_t)src->ncpus);
	if (!ret)
		ret = bpf_map__set_max_entries(skel->maps.vg_events, BPF_RINGBUF_BYTES);
	if (ret < 0) {
		snprintf(reply->err, sizeof(reply->err), "cannot size the BPF maps: %s",
			 strerror(-ret));
		goto out_destroy;
	}
	ret = vigil_bpf__load(skel);
	if (ret < 0) {
		snprintf(reply->err, sizeof(reply->err), "the kernel rejected the BPF programs: %s",
			 strerror(-ret));
		goto out_destroy;
	}
	*out = skel;
	return 0;

out_destroy:
	vigil_bpf__destroy(skel);
	return ret;
}

/*
 * Loads and attaches the programs for @src into the kernel, in the loader child. Fills
 * @reply (attached programs, error) and @fds (enum loaded_fd, -1 where there is none).
 * When the kernel refuses the typed-read form, the helper-read one is loaded instead.
 * The skeleton is left for the child's exit to release: the descriptors sent keep every
 * object alive.
 */
static void load_programs(struct source *src, struct load_reply *reply, int fds[FD_COUNT])
{
	struct vigil_bpf *skel = NULL;
	int ret;

	libbpf_set_print(libbpf_log);
	ret = probe_kernel(reply->err, sizeof(reply->err));
	if (ret < 0)
		goto out;
	ret = open_and_load(src, true, reply, &skel);
	if (ret < 0 && src->typed_reads) {
		/* a verifier that refuses the typed reads still takes the helper reads */
		fprintf(
		    stderr,
		    "vigil-agent: bpf: typed reads refused (%s); loading the helper-read form\n",
		    strerror(-ret));
		ret = open_and_load(src, false, reply, &skel);
	}
	if (ret < 0)
		goto out;
	reply->typed_reads = src->typed_reads;

	for (int i = 0; i < PROG_COUNT; i++) {
		struct bpf_program *prog = prog_of(skel, (enum prog_id)i, src->typed_reads);
		struct bpf_link *link;

		if (!src->wanted[i]) {
			if (prog_info[i].essential) {
				ret = -ENOENT;
				snprintf(reply->err, sizeof(reply->err),
					 "the kernel has no %s tracepoint",
					 prog_info[i].tracepoint);
				goto out;
			}
			continue;
		}
		link = bpf_program__attach(prog);
		if (!link) {
			ret = -errno;
			if (prog_info[i].essential) {
				snprintf(reply->err, sizeof(reply->err),
					 "cannot attach to raw tracepoint %s: %s",
					 prog_info[i].tracepoint, strerror(errno));
				goto out;
			}
			fprintf(stderr, "vigil-agent: bpf: raw tracepoint %s unavailable: %s\n",
				prog_info[i].tracepoint, strerror(errno));
			continue;
		}
		*link_of(skel, (enum prog_id)i, src->typed_reads) = link;
		reply->attached[i] = true;
		fds[FD_PROG + i] = bpf_program__fd(prog);
		fds[FD_LINK + i] = bpf_link__fd(link);
	}
	fds[FD_EVENTS] = bpf_map__fd(skel->maps.vg_events);
	fds[FD_DROPS] = bpf_map__fd(skel->maps.vg_drops);
	ret = 0;
out:
	reply->ret = ret < 0 ? ret : (ret > 0 ? -EINVAL : 0);
}

/* Sends @reply and the descriptors it marks present over @sock. Returns 0 or -errno. */
static int send_reply(int sock, struct load_reply *reply, const int fds[FD_COUNT])
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * FD_COUNT)];
		struct cmsghdr align;
	} control;
	struct iovec iov = {reply, sizeof(*reply)};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
	int sent[FD_COUNT], n = 0;

	for (int i = 0; i < FD_COUNT; i++) {
		reply->present[i] = reply->ret == 0 && fds[i] >= 0;
		if (reply->present[i])
			sent[n++] = fds[i];
	}
	if (n > 0) {
		struct cmsghdr *c;

		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
		memcpy(CMSG_DATA(c), sent, sizeof(int) * (size_t)n);
	}
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(*reply) ? 0 : -errno;
}

/*
 * Receives the loader's reply on @sock into @reply and its descriptors into @src->fds.
 * Returns 0 or -errno (descriptors received are then closed by bpf_close).
 */
static int receive_reply(struct source *src, int sock, struct load_reply *reply)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * FD_COUNT)];
		struct cmsghdr align;
	} control;
	struct iovec iov = {reply, sizeof(*reply)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	struct cmsghdr *c;
	int got[FD_COUNT], n = 0, want = 0;
	ssize_t len;

	do
		len = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (len < 0 && errno == EINTR);
	if (len < 0)
		return -errno;
	for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		size_t bytes;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		bytes = c->cmsg_len - CMSG_LEN(0);
		if (bytes % sizeof(int) || n + bytes / sizeof(int) > FD_COUNT)
			return -EPROTO;
		memcpy(got + n, CMSG_DATA(c), bytes);
		n += (int)(bytes / sizeof(int));
	}
	for (int i = 0; i < FD_COUNT; i++)
		want += reply->present[i];
	if (len != (ssize_t)sizeof(*reply) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    n != want) {
		for (int i = 0; i < n; i++)
			close(got[i]);
		return -EPROTO;
	}
	for (int i = 0, k = 0; i < FD_COUNT; i++)
		if (reply->present[i])
			src->fds[i] = got[k++];
	reply->err[sizeof(reply->err) - 1] = '\0';
	return 0;
}

/*
 * Runs load_programs() in a child process and takes over what it loaded. Returns 0, or
 * -errno with @err set.
 */
static int load_in_child(struct source *src, char *err, size_t errlen)
{
	struct load_reply reply;
	int sv[2], status, ret;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot start the BPF loader: %s", strerror(errno));
		return ret;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot start the BPF loader: %s", strerror(errno));
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
	if (pid == 0) {
		int fds[FD_COUNT];

		close(sv[0]);
		memset(&reply, 0, sizeof(reply));
		for (int i = 0; i < FD_COUNT; i++)
			fds[i] = -1;
		load_programs(src, &reply, fds);
		_exit(send_reply(sv[1], &reply, fds) == 0 ? 0 : 1);
	}
	close(sv[1]);
	memset(&reply, 0, sizeof(reply));
	ret = receive_reply(src, sv[0], &reply);
	close(sv[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (ret < 0) {
		snprintf(err, errlen, "the BPF loader failed: %s", strerror(-ret));
		return ret;
	}
	if (reply.ret < 0) {
		snprintf(err, errlen, "%s", reply.err);
		return reply.ret;
	}
	memcpy(src->attached, reply.attached, sizeof(src->attached));
	src->typed_reads = reply.typed_reads;
	if (src->fds[FD_EVENTS] < 0 || src->fds[FD_DROPS] < 0) {
		snprintf(err, errlen, "the BPF loader handed over no maps");
		return -EPROTO;
	}
	return 0;
}

static void bpf_close(struct source *src);

static int bpf_open(struct agent *agent, const char *arg, struct source **out, char *err,
		    size_t errlen)
{
	struct source *src;
	int ret;

	(void)arg;
	src = calloc(1, sizeof(*src));
	if (!src) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (int i = 0; i < FD_COUNT; i++)
		src->fds[i] = -1;
	src->agent = agent;
	src->categories = agent->opt.categories ? agent->opt.categories : SOURCE_CAT_ALL;
	src->ncpus = libbpf_num_possible_cpus();
	src->ev = event_new();
	src->dec = malloc(sizeof(*src->dec));
	if (!src->ev || !src->dec || src->ncpus <= 0) {
		ret = src->ncpus <= 0 ? src->ncpus : -ENOMEM;
		snprintf(err, errlen, "%s",
			 src->ncpus <= 0 ? "cannot count the possible CPUs" : "out of memory");
		goto out_close;
	}
	bpf_decoder_init(src->dec, sysconf(_SC_CLK_TCK));

	ret = load_in_child(src, err, errlen);
	if (ret < 0)
		goto out_close;
	src->rb = ring_buffer__new(src->fds[FD_EVENTS], handle_record, src, NULL);
	if (!src->rb) {
		ret = -errno;
		snprintf(err, errlen, "cannot map the BPF ring buffer: %s", strerror(errno));
		goto out_close;
	}
	*out = src;
	return 0;

out_close:
	bpf_close(src);
	return ret < 0 ? ret : -EINVAL;
}

static int bpf_poll(struct source *src, int timeout_ms)
{
	int ret;

	src->handled = 0;
	ret =
	    ring_buffer__poll(src->rb, timeout_ms < BPF_POLL_MAX_MS ? timeout_ms : BPF_POLL_MAX_MS);
	/* records below the wake-up mark signal nobody: collect them on every pass */
	if (ret >= 0 || ret == -EINTR)
		ret = ring_buffer__consume(src->rb);
	if (ret == -EINTR)
		return src->handled;
	return ret < 0 ? ret : src->handled;
}

/* Sums per-CPU counter @key of the drops map; 0 when it cannot be read. */
static uint64_t drop_count(struct source *src, uint32_t key, uint64_t *values)
{
	uint64_t sum = 0;

	if (bpf_map_lookup_elem(src->fds[FD_DROPS], &key, values) < 0)
		return 0;
	for (int c = 0; c < src->ncpus; c++)
		sum += values[c];
	return sum;
}

/* Runs of a program the kernel skipped because it was already running on that CPU. */
static uint64_t recursion_misses(struct source *src)
{
	uint64_t sum = 0;

	for (int i = 0; i < PROG_COUNT; i++) {
		struct bpf_prog_info info;
		uint32_t len = sizeof(info);

		if (!src->attached[i])
			continue;
		memset(&info, 0, sizeof(info));
		if (bpf_obj_get_info_by_fd(src->fds[FD_PROG + i], &info, &len) == 0)
			sum += info.recursion_misses;
	}
	return sum;
}

static int bpf_metrics(struct source *src, struct buf *out)
{
	static const char *const causes[VG_DROP_COUNT] = {
	    [VG_DROP_RINGBUF_FULL] = "ringbuf_full",
	    [VG_DROP_STASH_FULL] = "stash_full",
	};
	uint64_t *values;
	bool first = true;
	int err = 0;

	values = calloc((size_t)src->ncpus, sizeof(*values));
	if (!values)
		return -ENOMEM;
	err |= buf_append_str(out, ",\"drops\":{\"kernel\":{");
	for (uint32_t cause = 0; cause < VG_DROP_COUNT; cause++) {
		err |= buf_printf(out, "\"%s\":{", causes[cause]);
		for (uint32_t a = 0; a < VG_A_COUNT; a++)
			err |= buf_printf(
			    out, "%s\"%s\":%llu", a ? "," : "", bpf_action_name(a),
			    (unsigned long long)drop_count(src, cause * VG_A_COUNT + a, values));
		err |= buf_append_str(out, "},");
	}
	err |= buf_printf(out, "\"recursion_misses\":%llu},",
			  (unsigned long long)recursion_misses(src));
	err |=
	    buf_printf(out,
		       "\"user\":{\"malformed\":%llu,\"no_memory\":%llu,\"emit_failed\":%llu,"
		       "\"cache_failed\":%llu}}",
		       (unsigned long long)src->malformed, (unsigned long long)src->no_memory,
		       (unsigned long long)src->emit_failed, (unsigned long long)src->cache_failed);
	err |=
	    buf_printf(out, ",\"bpf\":{\"records\":%llu,\"ringbuf_bytes\":%u,\"typed_reads\":%s}",
		       (unsigned long long)src->records, BPF_RINGBUF_BYTES,
		       src->typed_reads ? "true" : "false");
	err |= buf_append_str(out, ",\"missing\":[");
	for (int i = 0; i < PROG_COUNT; i++) {
		if (src->attached[i])
			continue;
		/* left out on purpose (its category is off) is not missing */
		if (i == PROG_MODULE_LOAD && !(src->categories & CAT_DRIVER))
			continue;
		if ((i == PROG_SYS_ENTER || i == PROG_SYS_EXIT) &&
		    !(src->categories & (CAT_FILE | CAT_NETWORK | CAT_HOST | CAT_PROCESS)))
			continue;
		err |= buf_printf(out, "%s\"%s\"", first ? "" : ",", prog_info[i].tracepoint);
		first = false;
	}
	err |= buf_append_char(out, ']');
	free(values);
	return err ? -E2BIG : 0;
}

static void bpf_close(struct source *src)
{
	if (!src)
		return;
	ring_buffer__free(src->rb);
	for (int i = 0; i < FD_COUNT; i++)
		if (src->fds[i] >= 0)
			close(src->fds[i]);
	event_free(src->ev);
	free(src->dec);
	free(src);
}

const struct source_ops source_bpf_ops = {
    .name = "bpf",
    .open = bpf_open,
    .poll = bpf_poll,
    .metrics = bpf_metrics,
    .close = bpf_close,
};
