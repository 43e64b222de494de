/*
 * Ring-buffer records of the BPF programs to events, with every kernel-supplied length
 * checked against the record before it is used.
 */
#include "bpf_decode.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define IPPROTO_TCP_NUM 6

/* Each action's name in metric lines, and its event.action as fields.def spells it. */
/* clang-format off */
static const struct {
	const char *metric;
	const char *value;
} actions[VG_A_COUNT] = {
	[VG_A_EXEC] = {"exec", "exec"},
	[VG_A_FORK] = {"fork", "fork"},
	[VG_A_EXIT] = {"exit", "exit"},
	[VG_A_CREATE] = {"create", "create"},
	[VG_A_WRITE] = {"write", "write"},
	[VG_A_RENAME] = {"rename", "rename"},
	[VG_A_DELETE] = {"delete", "delete"},
	[VG_A_CHMOD] = {"chmod", "chmod"},
	[VG_A_CONNECT] = {"connect", "connect"},
	[VG_A_ACCEPT] = {"accept", "accept"},
	[VG_A_BIND] = {"bind", "bind"},
	[VG_A_SETUID] = {"setuid", "setuid"},
	[VG_A_SETGID] = {"setgid", "setgid"},
	[VG_A_MODULE_LOAD] = {"module_load", "module-load"},
	[VG_A_PTRACE] = {"ptrace", "ptrace"},
	[VG_A_MEMFD_CREATE] = {"memfd_create", "memfd-create"},
};
/* clang-format on */

/* Fixed part of each record type, and the actions a record of that type may carry. */
static const struct {
	size_t fixed;
	unsigned actions; /* bit per enum vg_action */
} type_info[VG_T_COUNT] = {
    [VG_T_EXEC] = {sizeof(struct vg_exec), 1u << VG_A_EXEC},
    [VG_T_FORK] = {sizeof(struct vg_fork), 1u << VG_A_FORK},
    [VG_T_EXIT] = {sizeof(struct vg_exit), 1u << VG_A_EXIT},
    [VG_T_FILE] = {sizeof(struct vg_file), (1u << VG_A_CREATE) | (1u << VG_A_WRITE) |
					       (1u << VG_A_RENAME) | (1u << VG_A_DELETE) |
					       (1u << VG_A_CHMOD)},
    [VG_T_NET] = {sizeof(struct vg_net),
		  (1u << VG_A_CONNECT) | (1u << VG_A_ACCEPT) | (1u << VG_A_BIND)},
    [VG_T_CRED] = {sizeof(struct vg_cred), (1u << VG_A_SETUID) | (1u << VG_A_SETGID)},
    [VG_T_MODULE] = {sizeof(struct vg_module), 1u << VG_A_MODULE_LOAD},
    [VG_T_PTRACE] = {sizeof(struct vg_ptrace), 1u << VG_A_PTRACE},
    [VG_T_MEMFD] = {sizeof(struct vg_memfd), 1u << VG_A_MEMFD_CREATE},
};

const char *bpf_action_name(unsigned action)
{
	return action < VG_A_COUNT ? actions[action].metric : "other";
}

void bpf_decoder_init(struct bpf_decoder *d, long ticks_per_second)
{
	memset(d, 0, sizeof(*d));
	if (ticks_per_second <= 0 || ticks_per_second > 1000000000L)
		ticks_per_second = 100;
	d->ns_per_tick = 1000000000ull / (uint64_t)ticks_per_second;
}

/* A record being decoded: its bytes and the size of its fixed part. */
struct rec {
	const unsigned char *p;
	size_t size;
	size_t fixed;
};

/*
 * Locates the bytes of string @s of @r: NULL with *@len 0 when it is empty; -EINVAL through
 * @err when it does not lie inside the record's variable part or passes @cap.
 */
static const char *rec_bytes(const struct rec *r, struct vg_str s, size_t cap, size_t *len,
			     int *err)
{
	*len = 0;
	if (s.len == 0)
		return NULL;
	if (s.off < r->fixed || s.len > cap || (size_t)s.off + s.len > r->size) {
		*err = -EINVAL;
		return NULL;
	}
	*len = s.len;
	return (const char *)r->p + s.off;
}

/* rec_bytes() for a string that ends at its first NUL, if it has one. */
static const char *rec_str(const struct rec *r, struct vg_str s, size_t cap, size_t *len, int *err)
{
	const char *p = rec_bytes(r, s, cap, len, err);

	if (p)
		*len = strnlen(p, *len);
	return *len ? p : NULL;
}

/* Copies @len bytes at @p into @out (@cap bytes) as a C string; cut to fit. */
static char *copy_cstr(char *out, size_t cap, const char *p, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(out, p, len);
	out[len] = '\0';
	return out;
}

static int set_id(struct event *ev, enum field_id id, uint32_t value)
{
	return event_set_decimal(ev, id, value);
}

static int set_common(struct event *ev, const struct vg_hdr *h, const char *category)
{
	int err = 0;

	err |= event_set_cstr(ev, F_EVENT_KIND, "event");
	err |= event_set_cstr(ev, F_EVENT_CATEGORY, category);
	err |= event_set_cstr(ev, F_EVENT_ACTION, actions[h->action].value);
	err |= event_set_int(ev, F_PROCESS_PID, h->pid);
	return err ? -ENOMEM : 0;
}

/* Sets file.path, file.name and file.directory from absolute path @p (@len bytes). */
static int set_file_path(struct bpf_decoder *d, struct event *ev, const char *p, size_t len,
			 bool cut)
{
	int n = bpf_normalize_path(p, len, d->path, sizeof(d->path));
	const char *slash;
	int err = 0;

	if (n < 0)
		return -EINVAL; /* larger than two kernel paths: the kernel never sends that */
	err |= event_set_str(ev, F_FILE_PATH, d->path, (size_t)n);
	slash = strrchr(d->path, '/');
	if (slash && slash[1])
		err |= event_set_cstr(ev, F_FILE_NAME, slash + 1);
	if (slash)
		err |= event_set_str(ev, F_FILE_DIRECTORY, d->path,
				     slash == d->path ? 1 : (size_t)(slash - d->path));
	/* a cut path loses leading components: the last one, file.name, stays whole */
	if (cut) {
		event_mark_truncated(ev, F_FILE_PATH);
		event_mark_truncated(ev, F_FILE_DIRECTORY);
	}
	return err ? -ENOMEM : 0;
}

int bpf_normalize_path(const char *in, size_t len, char *out, size_t cap)
{
	size_t o = 0, i = 0;

	if (cap < 2)
		return -ENAMETOOLONG;
	while (i < len) {
		size_t start, n;

		while (i < len && in[i] == '/')
			i++;
		start = i;
		while (i < len && in[i] != '/')
			i++;
		n = i - start;
		if (n == 0 || (n == 1 && in[start] == '.'))
			continue;
		if (n == 2 && in[start] == '.' && in[start + 1] == '.') {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* the '/' before the removed component */
			continue;
		}
		if (o + 1 + n + 1 > cap) {
			out[o] = '\0';
			return -ENAMETOOLONG;
		}
		out[o++] = '/';
		memcpy(out + o, in + start, n);
		o += n;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	return (int)o;
}

/* "pts3" as the kernel names a pseudo terminal is "pts/3" everywhere else. */
static const char *tty_name(struct bpf_decoder *d, const char *p, size_t len)
{
	bool pts = len > 3 && memcmp(p, "pts", 3) == 0;

	for (size_t i = 3; pts && i < len; i++)
		pts = p[i] >= '0' && p[i] <= '9';
	if (!pts)
		return copy_cstr(d->tty, sizeof(d->tty), p, len);
	snprintf(d->tty, sizeof(d->tty), "pts/%.*s", (int)(len - 3), p + 3);
	return d->tty;
}

static int decode_exec(struct bpf_decoder *d, const struct rec *r, struct event *ev,
		       struct bpf_decoded *out)
{
	const struct vg_exec *e = (const void *)r->p;
	uint32_t flags = e->hdr.flags;
	struct proc_info *pi = &out->proc;
	const char *exe, *args, *cwd, *tty, *cgroup, *cgroup_v1;
	size_t exe_len, args_len, cwd_len, tty_len, cgroup_len, cgroup_v1_len, n;
	int err = 0;

	exe = rec_str(r, e->executable, VG_PATH_MAX, &exe_len, &err);
	args = rec_bytes(r, e->args, VG_ARGV_MAX, &args_len, &err);
	cwd = rec_str(r, e->cwd, VG_PATH_MAX, &cwd_len, &err);
	tty = rec_str(r, e->tty, VG_TTY_MAX, &tty_len, &err);
	cgroup = rec_str(r, e->cgroup, VG_PATH_MAX, &cgroup_len, &err);
	cgroup_v1 = rec_str(r, e->cgroup_v1, VG_PATH_MAX, &cgroup_v1_len, &err);
	if (err)
		return err;

	out->ppid = e->ppid;
	out->start_ticks = e->start_ns / d->ns_per_tick;
	memset(pi, 0, sizeof(*pi));
	pi->pid = e->hdr.pid;
	pi->ppid = e->ppid;
	pi->start_ticks = out->start_ticks;
	pi->uid = e->uid;
	pi->euid = e->euid;
	pi->gid = e->gid;
	pi->egid = e->egid;
	pi->loginuid = e->loginuid == UINT32_MAX ? -1 : (int64_t)e->loginuid;

	err |= set_common(ev, &e->hdr, "process");
	err |= event_set_int(ev, F_PROCESS_PARENT_PID, e->ppid);
	if (exe) {
		const char *slash;

		pi->executable = copy_cstr(d->executable, sizeof(d->executable), exe, exe_len);
		err |= event_set_cstr(ev, F_PROCESS_EXECUTABLE, pi->executable);
		slash = strrchr(pi->executable, '/');
		err |= event_set_cstr(ev, F_PROCESS_NAME, slash ? slash + 1 : pi->executable);
		/* a cut path loses leading components: process.name stays whole */
		if (flags & VG_F_EXE_TRUNC)
			event_mark_truncated(ev, F_PROCESS_EXECUTABLE);
	}
	if (args) {
		/* each argument is NUL-terminated, the last one too unless argv was cut */
		err |= event_set_list_nulsep(ev, F_PROCESS_ARGS, args, args_len);
		/* the command line is argv joined by spaces: the NULs between become spaces */
		if (args[args_len - 1] == '\0')
			args_len--;
		n = args_len < sizeof(d->command_line) - 1 ? args_len : sizeof(d->command_line) - 1;
		for (size_t i = 0; i < n; i++)
			d->command_line[i] = args[i] ? args[i] : ' ';
		d->command_line[n] = '\0';
		pi->command_line = d->command_line;
		err |= event_set_cstr(ev, F_PROCESS_COMMAND_LINE, d->command_line);
	} else {
		/* an empty argv is still what the process was given */
		err |= event_set_list_nulsep(ev, F_PROCESS_ARGS, "", 0);
	}
	if (flags & (VG_F_ARGS_TRUNC | VG_F_ARGS_UNREADABLE)) {
		event_mark_truncated(ev, F_PROCESS_ARGS);
		event_mark_truncated(ev, F_PROCESS_COMMAND_LINE);
		pi->command_line_truncated = true;
	}
	if (e->argc >= 0)
		err |= event_set_int(ev, F_PROCESS_ARGS_COUNT, e->argc);
	if (cwd) {
		pi->working_directory =
		    copy_cstr(d->working_directory, sizeof(d->working_directory), cwd, cwd_len);
		err |= event_set_cstr(ev, F_PROCESS_WORKING_DIRECTORY, pi->working_directory);
		if (flags & VG_F_CWD_TRUNC)
			event_mark_truncated(ev, F_PROCESS_WORKING_DIRECTORY);
	}
	if (tty) {
		pi->tty = (char *)tty_name(d, tty, tty_len);
		err |= event_set_cstr(ev, F_PROCESS_TTY_NAME, pi->tty);
	}
	if (cgroup) {
		pi->cgroup = copy_cstr(d->cgroup, sizeof(d->cgroup), cgroup, cgroup_len);
		err |= event_set_cstr(ev, F_PROCESS_CGROUP, pi->cgroup);
		if (flags & VG_F_CGROUP_TRUNC)
			event_mark_truncated(ev, F_PROCESS_CGROUP);
	}
	/* hybrid hosts keep containers in the v1 hierarchies: look there when v2 has nothing */
	if ((cgroup && container_id_from_cgroup(cgroup, cgroup_len, d->container_id)) ||
	    (cgroup_v1 && container_id_from_cgroup(cgroup_v1, cgroup_v1_len, d->container_id))) {
		pi->container_id = d->container_id;
		err |= event_set_cstr(ev, F_CONTAINER_ID, d->container_id);
	}
	err |= set_id(ev, F_USER_ID, e->uid);
	err |= set_id(ev, F_USER_EFFECTIVE_ID, e->euid);
	err |= set_id(ev, F_GROUP_ID, e->gid);
	err |= set_id(ev, F_GROUP_EFFECTIVE_ID, e->egid);
	if (pi->loginuid >= 0)
		err |= set_id(ev, F_USER_AUDIT_ID, e->loginuid);
	return err ? -ENOMEM : 0;
}

static int decode_fork(struct bpf_decoder *d, const struct rec *r, struct event *ev,
		       struct bpf_decoded *out)
{
	const struct vg_fork *f = (const void *)r->p;
	int err = 0;

	out->ppid = f->ppid;
	out->start_ticks = f->start_ns / d->ns_per_tick;
	err |= set_common(ev, &f->hdr, "process");
	err |= event_set_int(ev, F_PROCESS_PARENT_PID, f->ppid);
	return err ? -ENOMEM : 0;
}

static int decode_exit(struct bpf_decoder *d, const struct rec *r, struct event *ev,
		       struct bpf_decoded *out)
{
	const struct vg_exit *x = (const void *)r->p;
	uint32_t status = (uint32_t)x->exit_code;
	int64_t code;
	int err = 0;

	out->start_ticks = x->start_ns / d->ns_per_tick;
	/* the kernel's wait status: a signal in the low 7 bits, else the exit status above */
	if (status & 0x7f)
		code = 128 + (status & 0x7f);
	else
		code = (status >> 8) & 0xff;
	err |= set_common(ev, &x->hdr, "process");
	err |= event_set_int(ev, F_PROCESS_EXIT_CODE, code);
	return err ? -ENOMEM : 0;
}

static int decode_file(struct bpf_decoder *d, const struct rec *r, struct event *ev)
{
	const struct vg_file *f = (const void *)r->p;
	const char *path, *target;
	size_t path_len, target_len;
	char mode[8];
	int err = 0, n;

	path = rec_str(r, f->path, 2 * VG_PATH_MAX + 1, &path_len, &err);
	target = rec_str(r, f->target, 2 * VG_PATH_MAX + 1, &target_len, &err);
	if (err)
		return err;
	if (!path || path[0] != '/')
		return -EINVAL; /* the kernel resolves every path it sends */
	err = set_common(ev, &f->hdr, "file");
	if (err)
		return err;
	err = set_file_path(d, ev, path, path_len, f->hdr.flags & VG_F_PATH_TRUNC);
	if (err)
		return err;
	if (target) {
		if (target[0] != '/')
			return -EINVAL;
		n = bpf_normalize_path(target, target_len, d->path, sizeof(d->path));
		if (n < 0)
			return -EINVAL;
		if (event_set_str(ev, F_FILE_TARGET_PATH, d->path, (size_t)n))
			return -ENOMEM;
		if (f->hdr.flags & VG_F_TARGET_TRUNC)
			event_mark_truncated(ev, F_FILE_TARGET_PATH);
	}
	if (f->mode != VG_MODE_UNKNOWN) {
		snprintf(mode, sizeof(mode), "%04o", f->mode & 07777u);
		if (event_set_cstr(ev, F_FILE_MODE, mode))
			return -ENOMEM;
	}
	return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/*
 * One end of a connection as an address family and bytes: IPv4-mapped IPv6 addresses
 * (::ffff:a.b.c.d) become the IPv4 address they stand for. Returns AF_INET, AF_INET6, or
 * 0 when the address is unspecified (0.0.0.0, ::).
 */
static int net_addr(unsigned family, const uint8_t *addr, const uint8_t **bytes)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (family == AF_INET) {
		*bytes = addr;
		return all_zero(addr, 4) ? 0 : AF_INET;
	}
	if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
		*bytes = addr + 12;
		return all_zero(addr + 12, 4) ? 0 : AF_INET;
	}
	*bytes = addr;
	return all_zero(addr, 16) ? 0 : AF_INET6;
}

static int decode_net(const struct rec *r, struct event *ev)
{
	const struct vg_net *nt = (const void *)r->p;
	const uint8_t *local, *remote;
	int local_family, remote_family, type_family;
	bool ingress = nt->hdr.action != VG_A_CONNECT;
	int err = 0;

	if (nt->family != AF_INET && nt->family != AF_INET6)
		return -EINVAL;
	local_family = net_addr(nt->family, nt->saddr, &local);
	remote_family = net_addr(nt->family, nt->daddr, &remote);
	/* the address family the connection runs over: the peer's, else the local end's */
	type_family = nt->hdr.action == VG_A_BIND ? local_family : remote_family;
	if (!type_family)
		type_family = local_family ? local_family : (int)nt->family;
	/* an IPv6 socket bound to :: and talking to a mapped address is IPv4 */
	if (nt->family == AF_INET6 && remote_family == AF_INET && nt->hdr.action != VG_A_BIND)
		type_family = AF_INET;

	err |= set_common(ev, &nt->hdr, "network");
	err |= event_set_cstr(ev, F_NETWORK_TRANSPORT,
			      nt->protocol == IPPROTO_TCP_NUM ? "tcp" : "udp");
	err |= event_set_cstr(ev, F_NETWORK_DIRECTION, ingress ? "ingress" : "egress");
	err |= event_set_cstr(ev, F_NETWORK_TYPE, type_family == AF_INET ? "ipv4" : "ipv6");
	switch (nt->hdr.action) {
	case VG_A_CONNECT:
		if (local_family)
			err |= event_set_ip(ev, F_SOURCE_IP, local_family, local);
		if (nt->sport)
			err |= event_set_int(ev, F_SOURCE_PORT, nt->sport);
		if (remote_family)
			err |= event_set_ip(ev, F_DESTINATION_IP, remote_family, remote);
		err |= event_set_int(ev, F_DESTINATION_PORT, nt->dport);
		break;
	case VG_A_ACCEPT:
		if (remote_family)
			err |= event_set_ip(ev, F_SOURCE_IP, remote_family, remote);
		err |= event_set_int(ev, F_SOURCE_PORT, nt->dport);
		if (local_family)
			err |= event_set_ip(ev, F_DESTINATION_IP, local_family, local);
		err |= event_set_int(ev, F_DESTINATION_PORT, nt->sport);
		break;
	default: /* bind: where others will come in */
		if (local_family)
			err |= event_set_ip(ev, F_DESTINATION_IP, local_family, local);
		err |= event_set_int(ev, F_DESTINATION_PORT, nt->sport);
		break;
	}
	return err ? -ENOMEM : 0;
}

/* The id a setuid-family call asked for: the effective one when it names one. */
static bool requested_id(const struct vg_cred *c, uint32_t *id)
{
	switch (c->syscall) {
	case VG_SC_SETREUID:
	case VG_SC_SETREGID:
	case VG_SC_SETRESUID:
	case VG_SC_SETRESGID:
		if (c->requested[1] != VG_ID_UNCHANGED)
			*id = c->requested[1];
		else if (c->requested[0] != VG_ID_UNCHANGED)
			*id = c->requested[0];
		else if (c->requested[2] != VG_ID_UNCHANGED)
			*id = c->requested[2];
		else
			return false;
		return true;
	default:
		*id = c->requested[0];
		return *id != VG_ID_UNCHANGED;
	}
}

static int decode_cred(const struct rec *r, struct event *ev, struct bpf_decoded *out)
{
	const struct vg_cred *c = (const void *)r->p;
	bool uid = c->hdr.action == VG_A_SETUID;
	uint32_t id;
	int err = 0;

	if (c->syscall < VG_SC_SETUID || c->syscall > VG_SC_SETFSGID)
		return -EINVAL;
	if (!requested_id(c, &id))
		return 1;
	out->uid = c->uid;
	out->euid = c->euid;
	out->gid = c->gid;
	out->egid = c->egid;
	err |= set_common(ev, &c->hdr, "host");
	err |= set_id(ev, uid ? F_USER_CHANGES_ID : F_GROUP_CHANGES_ID, id);
	return err ? -ENOMEM : 0;
}

/* Module name from the file finit_module was given: "/x/nf-nat.ko.zst" is nf_nat. */
static const char *module_name_of_path(struct bpf_decoder *d, const char *path, size_t len)
{
	static const char *const suffixes[] = {".ko.zst", ".ko.xz", ".ko.gz", ".ko"};
	const char *base = path;
	size_t n;

	for (size_t i = 0; i < len; i++)
		if (path[i] == '/')
			base = path + i + 1;
	n = len - (size_t)(base - path);
	for (size_t k = 0; k < sizeof(suffixes) / sizeof(suffixes[0]); k++) {
		size_t sl = strlen(suffixes[k]);
		if (n > sl && memcmp(base + n - sl, suffixes[k], sl) == 0) {
			n -= sl;
			break;
		}
	}
	if (n == 0)
		return NULL;
	copy_cstr(d->module, sizeof(d->module), base, n);
	for (char *p = d->module; *p; p++)
		if (*p == '-')
			*p = '_';
	return d->module;
}

static int decode_module(struct bpf_decoder *d, const struct rec *r, struct event *ev)
{
	const struct vg_module *m = (const void *)r->p;
	const char *name, *path;
	size_t name_len, path_len;
	int err = 0;

	name = rec_str(r, m->name, VG_MODULE_NAME_MAX, &name_len, &err);
	path = rec_str(r, m->path, VG_PATH_MAX, &path_len, &err);
	if (err)
		return err;
	err |= set_common(ev, &m->hdr, "driver");
	if (name) {
		err |= event_set_str(ev, F_KERNEL_MODULE_NAME, name, name_len);
	} else if (path) {
		const char *derived = module_name_of_path(d, path, path_len);
		if (derived)
			err |= event_set_cstr(ev, F_KERNEL_MODULE_NAME, derived);
	}
	if (path) {
		err |= event_set_str(ev, F_FILE_PATH, path, path_len);
		if (m->hdr.flags & VG_F_PATH_TRUNC)
			event_mark_truncated(ev, F_FILE_PATH);
	}
	return err ? -ENOMEM : 0;
}

static int decode_ptrace(const struct rec *r, struct event *ev, struct bpf_decoded *out)
{
	const struct vg_ptrace *p = (const void *)r->p;
	int err = 0;

	out->target_pid = p->target_pid;
	err |= set_common(ev, &p->hdr, "process");
	err |= event_set_int(ev, F_PROCESS_TARGET_PID, p->target_pid);
	return err ? -ENOMEM : 0;
}

static int decode_memfd(const struct rec *r, struct event *ev)
{
	const struct vg_memfd *m = (const void *)r->p;
	const char *name;
	size_t name_len;
	int err = 0;

	name = rec_str(r, m->name, VG_MEMFD_NAME_MAX, &name_len, &err);
	if (err)
		return err;
	err |= set_common(ev, &m->hdr, "file");
	/* an empty name is a name too: memfd_create("") is allowed */
	err |= event_set_str(ev, F_FILE_NAME, name ? name : "", name_len);
	if (m->hdr.flags & VG_F_NAME_TRUNC)
		event_mark_truncated(ev, F_FILE_NAME);
	return err ? -ENOMEM : 0;
}

int bpf_decode_record(struct bpf_decoder *d, const void *data, size_t size, struct event *ev,
		      struct bpf_decoded *out)
{
	struct vg_hdr h;
	struct rec r = {data, size, 0};

	event_reset(ev);
	memset(out, 0, sizeof(*out));
	if (size < sizeof(h) || size > VG_RECORD_MAX)
		return -EINVAL;
	memcpy(&h, data, sizeof(h));
	if (h.size != size || h.type == 0 || h.type >= VG_T_COUNT || h.action >= VG_A_COUNT ||
	    !(type_info[h.type].actions & (1u << h.action)) || size < type_info[h.type].fixed)
		return -EINVAL;
	r.fixed = type_info[h.type].fixed;
	out->type = (enum vg_type)h.type;
	out->action = (enum vg_action)h.action;
	out->ts_ns = h.ts_ns;
	out->pid = h.pid;
	if (h.pid == 0)
		return -EINVAL;

	switch (h.type) {
	case VG_T_EXEC:
		return decode_exec(d, &r, ev, out);
	case VG_T_FORK:
		return decode_fork(d, &r, ev, out);
	case VG_T_EXIT:
		return decode_exit(d, &r, ev, out);
	case VG_T_FILE:
		return decode_file(d, &r, ev);
	case VG_T_NET:
		return decode_net(&r, ev);
	case VG_T_CRED:
		return decode_cred(&r, ev, out);
	case VG_T_MODULE:
		return decode_module(d, &r, ev);
	case VG_T_PTRACE:
		return decode_ptrace(&r, ev, out);
	case VG_T_MEMFD:
		return decode_memfd(&r, ev);
	}
	return -EINVAL;
}
