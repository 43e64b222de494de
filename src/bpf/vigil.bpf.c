/*
 * vigil's kernel side: raw tracepoints on process lifecycle and on a filtered set of
 * syscalls, writing the records of vigil_event.h to one ring buffer. Nothing here
 * interprets content; it observes, filters the obvious noise and counts what it loses.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "vigil_event.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define VG_AF_INET	 2
#define VG_AF_INET6	 10
#define VG_IPPROTO_TCP	 6
#define VG_IPPROTO_UDP	 17
#define VG_EINPROGRESS	 115
#define VG_FMODE_WRITE	 0x2u
#define VG_FMODE_CREATED 0x100000u
#define VG_S_IFMT	 0170000u
#define VG_S_IFREG	 0100000u
#define VG_S_IFSOCK	 0140000u
#define VG_PTRACE_ATTACH 16
#define VG_PTRACE_SEIZE	 0x4206

/* Bytes of a scratch record buffer: a record at its cap plus the largest single append. */
#define VG_SCRATCH_REC (VG_RECORD_MAX + VG_ARGV_MAX)
/* Records a CPU sends between two looks at how much data waits in the ring buffer. */
#define VG_WAKEUP_CHECK_EVERY 8u
/* Ring buffer size unless user space sets another before loading. */
#define VG_RINGBUF_DEFAULT (16u << 20)
/* Threads that may sit between sys_enter and sys_exit of a stashed syscall at once. */
#define VG_STASH_MAX 16384
/* Loss counters: one per cause and action. */
#define VG_DROP_SLOTS (VG_DROP_COUNT * VG_A_COUNT)
/* (socket, destination) pairs remembered for UDP send de-duplication. */
#define VG_UDP_SEEN_MAX 16384

/* Set by user space before loading. */
const volatile __u32 vg_self_tgid = 0;
/* Bytes waiting in the ring buffer before a record wakes the agent; below it the agent finds
 * the records on its next timed poll. One wake-up per record costs more than the record. */
const volatile __u64 vg_wakeup_bytes = 0;
/* syscall number -> enum vg_syscall; 0 for every syscall nobody asked for */
const volatile __u8 vg_nr_class[VG_NR_SLOTS] = {};
/*
 * Typed reads (Linux 6.2): kernel structures whose address came from a read helper are read
 * through a pointer cast to their type, by plain loads, instead of one helper call per
 * field. Only the programs and functions named *_typed call the cast; user space loads them
 * where the kernel has it and their helper-read twins elsewhere, so an older kernel never
 * sees the call (libbpf leaves the weak symbol unresolved).
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* @p as a read-only pointer to kernel type @type; only in the *_typed code */
#define VG_CAST(type, p) ((type *)bpf_rdonly_cast((const void *)(p), bpf_core_type_id_kernel(type)))
/*
 * Reads back a kernel address kept in a scratch map field: the verifier then sees a plain
 * number, which global functions accept as an argument and which stays the same kind of
 * value from one loop turn to the next.
 */
#define VG_NUMBER(field) (*(volatile __u64 *)&(field))

struct vg_scratch {
	__u32 cur; /* bytes of rec in use */
	__u32 pos; /* start of the path being built in path[] */
	/* the directory part ("/dir/") of the last path resolved into this record, when
	 * dir_len is not 0: dir_len bytes at dir_off of rec, for directory fd dir_fd; dir_cut
	 * when the walk cut it */
	__u32 dir_off;
	__u32 dir_len;
	__s64 dir_fd;
	__u32 dir_cut;
	/* records this CPU sent, and whether the ring held vg_wakeup_bytes at the last look */
	__u32 submitted;
	__u32 above_mark;
	__u32 reserved;
	/* where the typed-pointer path walk stands, and the task's root it stops at */
	__u64 at_dentry;
	__u64 at_mnt;
	__u64 root_dentry;
	__u64 root_mnt;
	/* a (dentry, mount) pair read by plain loads, handed over as numbers */
	__u64 arg_dentry;
	__u64 arg_mnt;
	__u8 rec[VG_SCRATCH_REC];
	/* paths are built backwards, ending at VG_PATH_MAX (VG_CGROUP_MAX for cgroups) */
	char path[VG_PATH_MAX + VG_NAME_MAX + 1];
	char name[VG_NAME_MAX + 1];
};

/* Syscall arguments kept from sys_enter to sys_exit, per thread. */
struct vg_stash {
	__u32 sc;
	__u32 reserved;
	__u64 args[6];
	__u8 addr[32]; /* sockaddr copied at entry: VG_SOCKADDR_MAX used */
	__u32 ids[4];  /* setuid family: real, effective, saved and fs id before the call */
};

struct vg_udp_key {
	__u64 sk;
	__u64 ino;
	__u8 daddr[16];
	__u16 dport;
	__u16 family;
	__u32 reserved;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VG_RINGBUF_DEFAULT);
} vg_events SEC(".maps");

/* one slot per possible CPU; user space sets max_entries before loading */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct vg_scratch);
} vg_scratch_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VG_STASH_MAX);
	__type(key, __u64);
	__type(value, struct vg_stash);
} vg_stash_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VG_UDP_SEEN_MAX);
	__type(key, struct vg_udp_key);
	__type(value, __u64);
} vg_udp_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VG_DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} vg_drops SEC(".maps");

/* Layouts of older and newer kernels, matched by CO-RE whichever this one has. */
struct kernfs_node___new {
	struct kernfs_node *__parent;
} __attribute__((preserve_access_index));

struct kernfs_node___old {
	struct kernfs_node *parent;
} __attribute__((preserve_access_index));

/* where a dentry keeps a short name inline: d_shortname since Linux 6.14, d_iname before */
struct dentry___new {
	union shortname_store d_shortname;
} __attribute__((preserve_access_index));

struct dentry___old {
	unsigned char d_iname[40];
} __attribute__((preserve_access_index));

struct task_struct___old {
	__u64 real_start_time;
} __attribute__((preserve_access_index));

struct module___vg {
	char name[56];
} __attribute__((preserve_access_index));

#if defined(__TARGET_ARCH_x86)
/* from a BTF-typed pointer, by a direct load */
#define VG_SYSCALL_NR(r) ((r)->orig_ax)
#define VG_ARG0(r)	 BPF_CORE_READ((r), di)
#define VG_ARG1(r)	 BPF_CORE_READ((r), si)
#define VG_ARG2(r)	 BPF_CORE_READ((r), dx)
#define VG_ARG3(r)	 BPF_CORE_READ((r), r10)
#define VG_ARG4(r)	 BPF_CORE_READ((r), r8)
#define VG_ARG5(r)	 BPF_CORE_READ((r), r9)
/* the first arguments from a BTF-typed pointer, by direct loads */
#define VG_ARG0_BTF(r) ((r)->di)
#define VG_ARG1_BTF(r) ((r)->si)
#define VG_ARG2_BTF(r) ((r)->dx)
#define VG_ARG3_BTF(r) ((r)->r10)
#elif defined(__TARGET_ARCH_arm64)
#define VG_SYSCALL_NR(r) ((r)->syscallno)
#define VG_ARG0(r)	 BPF_CORE_READ((r), orig_x0)
#define VG_ARG1(r)	 BPF_CORE_READ((r), regs[1])
#define VG_ARG2(r)	 BPF_CORE_READ((r), regs[2])
#define VG_ARG3(r)	 BPF_CORE_READ((r), regs[3])
#define VG_ARG4(r)	 BPF_CORE_READ((r), regs[4])
#define VG_ARG5(r)	 BPF_CORE_READ((r), regs[5])
#define VG_ARG0_BTF(r)	 ((r)->orig_x0)
#define VG_ARG1_BTF(r)	 ((r)->regs[1])
#define VG_ARG2_BTF(r)	 ((r)->regs[2])
#define VG_ARG3_BTF(r)	 ((r)->regs[3])
#else
#error "vigil's BPF side supports x86-64 and arm64"
#endif

/*
 * Whether the current syscall is a 32-bit one (an ia32 or AArch32 process, or int 0x80):
 * its number then comes from another table, and vg_nr_class does not describe it.
 */
static __always_inline bool compat_syscall(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

#if defined(__TARGET_ARCH_x86)
	return task->thread_info.status & 0x0002; /* TS_COMPAT */
#else
	return task->thread_info.flags & (1ul << 22); /* TIF_32BIT */
#endif
}

static __always_inline struct vg_scratch *scratch(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&vg_scratch_map, &cpu);
}

static __always_inline void count_drop(__u32 cause, __u32 action)
{
	__u32 key = cause * VG_A_COUNT + action;
	__u64 *n;

	if (key >= VG_DROP_SLOTS)
		return;
	n = bpf_map_lookup_elem(&vg_drops, &key);
	if (n)
		*n += 1;
}

static __always_inline struct task_struct *current_task(void)
{
	return (struct task_struct *)bpf_get_current_task();
}

/* Starts a record of @fixed bytes in the scratch buffer, stamped with now and the caller. */
static __always_inline void *record_begin(struct vg_scratch *s, __u32 fixed, __u16 type,
					  __u16 action, __u32 pid, __u32 tid)
{
	struct vg_hdr *h = (struct vg_hdr *)s->rec;

	__builtin_memset(s->rec, 0, sizeof(struct vg_exec));
	h->type = type;
	h->action = action;
	h->ts_ns = bpf_ktime_get_boot_ns();
	h->pid = pid;
	h->tid = tid;
	s->cur = fixed;
	s->dir_len = 0;
	return s->rec;
}

static __always_inline void *record_begin_current(struct vg_scratch *s, __u32 fixed, __u16 type,
						  __u16 action)
{
	__u64 id = bpf_get_current_pid_tgid();

	return record_begin(s, fixed, type, action, (__u32)(id >> 32), (__u32)id);
}

static __always_inline void mark_truncated(struct vg_scratch *s, __u32 flag)
{
	((struct vg_hdr *)s->rec)->flags |= flag;
}

static __always_inline __u64 task_start_ns(struct task_struct *task)
{
	if (bpf_core_field_exists(task->start_boottime))
		return BPF_CORE_READ(task, start_boottime);
	return BPF_CORE_READ((struct task_struct___old *)task, real_start_time);
}

static __always_inline struct kernfs_node *kernfs_parent(struct kernfs_node *kn)
{
	struct kernfs_node___new *kn_new = (void *)kn;
	struct kernfs_node___old *kn_old = (void *)kn;

	if (bpf_core_field_exists(kn_new->__parent))
		return BPF_CORE_READ(kn_new, __parent);
	return BPF_CORE_READ(kn_old, parent);
}

/*
 * The struct file behind descriptor @fd of the current task, or NULL. The task's own
 * structures are reached by plain loads through its typed pointer; only the slot of the
 * descriptor table, at a variable index, needs a read helper.
 */
static __always_inline struct file *fd_file(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *file = NULL;

	if (!fdt || fd < 0 || (__u64)fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]))
		return NULL;
	return file;
}

/*
 * Kernel interfaces that look like files but are not where files live: their writes,
 * renames and deletions are state changes of the kernel or of a runtime (cgroups being
 * created and removed, /proc/self writes, ptys) and would drown real file activity.
 * binfmt_misc, efivarfs, selinuxfs, configfs and tmpfs stay visible on purpose: writes
 * there are rare and are how persistence and tampering look.
 */
static __always_inline bool pseudo_fs_magic(__u64 magic)
{
	switch (magic) {
	case 0x9fa0:	 /* proc */
	case 0x62656572: /* sysfs */
	case 0x27e0eb:	 /* cgroup */
	case 0x63677270: /* cgroup2 */
	case 0x1cd1:	 /* devpts */
	case 0x64626720: /* debugfs */
	case 0x74726163: /* tracefs */
	case 0x73636673: /* securityfs */
	case 0xcafe4a11: /* bpf */
	case 0x50495045: /* pipefs */
	case 0x534f434b: /* sockfs */
	case 0x09041934: /* anon inodes */
	case 0x6e736673: /* nsfs */
	case 0x50494446: /* pidfs */
	case 0x65735543: /* fusectl */
		return true;
	}
	return false;
}

static __always_inline bool dentry_on_pseudo_fs(struct dentry *dentry)
{
	return pseudo_fs_magic(BPF_CORE_READ(dentry, d_sb, s_magic));
}

/*
 * The helpers below are global functions: the verifier checks each once, on its own, so the
 * bounded loops in them do not multiply with the code of their callers. They take kernel
 * pointers as plain integers (read through probe helpers, or, in the *_typed ones, through
 * a typed cast) and work on the scratch record of this CPU, whose write offset lives in the
 * scratch map itself.
 */

/* Appends the path at s->path[start..end) to the record; returns its length. */
static __always_inline int put_built_path(struct vg_scratch *s, __u32 start, __u32 end)
{
	__u32 cur = s->cur;
	__u64 len;

	if (end > VG_PATH_MAX || start >= end || cur > VG_RECORD_MAX - VG_PATH_MAX)
		return -1;
	len = (__u64)end - start;
	barrier_var(len);
	if (len == 0 || len > VG_PATH_MAX)
		return -1;
	if (bpf_probe_read_kernel(&s->rec[cur & (VG_RECORD_MAX - 1)], len,
				  &s->path[start & (VG_PATH_MAX - 1)]))
		return -1;
	s->cur = cur + len;
	return len;
}

/*
 * Prepends "/" and the @len bytes at @name to the path being built backwards in s->path.
 * The write position lives in the scratch map, not in a register: the verifier then sees
 * an unknown value at every loop turn and the states of the turns converge. Returns false
 * when the component does not fit.
 */
static __always_inline bool prepend_component(struct vg_scratch *s, const void *name, __u32 len)
{
	__u32 pos = s->pos;

	if (len > VG_NAME_MAX)
		len = VG_NAME_MAX;
	if (pos > VG_PATH_MAX || len + 1 > pos)
		return false;
	pos -= len + 1;
	/* the compiler folds the mask below into the clamp above; keep it on this register */
	barrier_var(len);
	bpf_probe_read_kernel(&s->path[(pos + 1) & (VG_PATH_MAX - 1)], len & VG_NAME_MAX, name);
	s->path[pos & (VG_PATH_MAX - 1)] = '/';
	s->pos = pos;
	return true;
}

/*
 * Ends a path built backwards to end at @end: "/" when it is empty; then appends it to the
 * record.
 */
static __always_inline int finish_built_path(struct vg_scratch *s, bool complete, __u32 trunc_flag,
					     __u32 end)
{
	__u32 pos = s->pos;

	if (!complete)
		mark_truncated(s, trunc_flag);
	if (pos >= end) {
		pos = end - 1;
		s->path[pos & (VG_PATH_MAX - 1)] = '/';
	}
	return put_built_path(s, pos, end);
}

/* A dentry's d_parent and d_name, which sit next to each other in struct dentry. */
struct vg_dentry_link {
	struct dentry *parent;
	struct qstr name;
};

/* Longest name copied from a dentry's inline storage by plain loads (four words). */
#define VG_INLINE_NAME_COPY 32u

/*
 * prepend_component for the name of dentry @d (at address @addr, read through a typed
 * pointer): a short name kept inside the dentry is copied by plain loads and stores, a
 * word at a time, instead of by a helper. The last word may run past the name into the
 * part of the path already built; the bytes it covers are saved first and put back.
 */
static __always_inline bool prepend_dentry_name(struct vg_scratch *s, struct dentry *d, __u64 addr)
{
	const unsigned char *name = d->d_name.name;
	__u32 len = d->d_name.len, pos = s->pos, start;
	const __u64 *w;
	__u64 inline_off, tail;

	if (bpf_core_field_exists(struct dentry___new, d_shortname))
		inline_off = bpf_core_field_offset(struct dentry___new, d_shortname);
	else
		inline_off = bpf_core_field_offset(struct dentry___old, d_iname);
	if ((__u64)name != addr + inline_off || len == 0 || len > VG_INLINE_NAME_COPY)
		return prepend_component(s, name, len);
	if (pos > VG_PATH_MAX || len + 1 > pos)
		return false;
	start = pos - len;
	w = (const __u64 *)((const char *)d + inline_off);
	tail = *(__u64 *)&s->path[pos];
	/* start + 8k < pos <= VG_PATH_MAX for every word stored: the masks change nothing */
	*(__u64 *)&s->path[start & (VG_PATH_MAX - 1)] = w[0];
	if (len > 8)
		*(__u64 *)&s->path[(start + 8) & (VG_PATH_MAX - 1)] = w[1];
	if (len > 16)
		*(__u64 *)&s->path[(start + 16) & (VG_PATH_MAX - 1)] = w[2];
	if (len > 24)
		*(__u64 *)&s->path[(start + 24) & (VG_PATH_MAX - 1)] = w[3];
	*(__u64 *)&s->path[pos] = tail;
	s->path[(start - 1) & (VG_PATH_MAX - 1)] = '/';
	s->pos = start - 1;
	return true;
}

/*
 * Appends the absolute path of (@dentry_p, @vfsmnt_p) as the current task sees it (up to
 * its root, crossing mounts). Sets @trunc_flag in the record when the path passes
 * VG_PATH_MAX or VG_PATH_DEPTH components. Returns the bytes appended or -1.
 */
__noinline int vg_append_path(__u64 dentry_p, __u64 vfsmnt_p, __u32 trunc_flag)
{
	struct vg_scratch *s = scratch();
	struct dentry *dentry = (struct dentry *)dentry_p;
	struct vfsmount *vfsmnt = (struct vfsmount *)vfsmnt_p;
	struct task_struct *task = bpf_get_current_task_btf();
	struct dentry *mnt_root, *up;
	struct path root;
	struct mount *mnt, *parent;
	struct vg_dentry_link link;
	/* one read per component for both fields where the layout allows it */
	__u32 link_off = bpf_core_field_offset(struct dentry, d_parent);
	bool adjacent = bpf_core_field_offset(struct dentry, d_name) == link_off + sizeof(void *);
	bool done = false;

	if (!s || !dentry || !vfsmnt)
		return -1;
	root = task->fs->root;
	mnt = container_of(vfsmnt, struct mount, mnt);
	mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	s->pos = VG_PATH_MAX;
	for (int i = 0; i < VG_PATH_DEPTH; i++) {
		if (dentry == root.dentry && vfsmnt == root.mnt) {
			done = true;
			break;
		}
		if (dentry == mnt_root) {
			parent = BPF_CORE_READ(mnt, mnt_parent);
			if (!parent || parent == mnt) {
				done = true;
				break;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = parent;
			vfsmnt = __builtin_preserve_access_index(&parent->mnt);
			mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
			continue;
		}
		if (adjacent) {
			if (bpf_probe_read_kernel(&link, sizeof(link), (void *)dentry + link_off))
				break;
		} else {
			link.parent = BPF_CORE_READ(dentry, d_parent);
			link.name = BPF_CORE_READ(dentry, d_name);
		}
		up = link.parent;
		if (!prepend_component(s, link.name.name, link.name.len))
			break;
		if (!up || up == dentry) {
			/* an unlinked or pseudo file (memfd, anonymous): its own name is all */
			done = true;
			break;
		}
		dentry = up;
	}
	return finish_built_path(s, done, trunc_flag, VG_PATH_MAX);
}

/*
 * vg_append_path by typed reads: the same walk, with the dentries and mounts read by plain
 * loads, and short names copied by them too (prepend_dentry_name). The position
 * (dentry, mount) is kept in the scratch map between turns, as plain numbers: a typed
 * pointer carried in a register from one turn to the next makes the verifier's states of
 * the turns differ, and it would walk all VG_PATH_DEPTH of them on every path.
 */
__noinline int vg_append_path_typed(__u64 dentry_p, __u64 vfsmnt_p, __u32 trunc_flag)
{
	struct vg_scratch *s = scratch();
	struct task_struct *task = bpf_get_current_task_btf();
	struct dentry *dentry, *up;
	struct vfsmount *vfsmnt;
	struct mount *mnt, *parent;
	bool done = false;

	if (!s || !dentry_p || !vfsmnt_p)
		return -1;
	s->root_dentry = (__u64)task->fs->root.dentry;
	s->root_mnt = (__u64)task->fs->root.mnt;
	s->at_dentry = dentry_p;
	s->at_mnt = vfsmnt_p;
	s->pos = VG_PATH_MAX;
	for (int i = 0; i < VG_PATH_DEPTH; i++) {
		__u64 at_dentry = VG_NUMBER(s->at_dentry), at_mnt = VG_NUMBER(s->at_mnt);

		if (at_dentry == s->root_dentry && at_mnt == s->root_mnt) {
			done = true;
			break;
		}
		dentry = VG_CAST(struct dentry, at_dentry);
		vfsmnt = VG_CAST(struct vfsmount, at_mnt);
		if (dentry == vfsmnt->mnt_root) {
			mnt = VG_CAST(struct mount,
				      container_of((struct vfsmount *)at_mnt, struct mount, mnt));
			parent = mnt->mnt_parent;
			/* a typed load that faults reads 0: leave the path marked as cut */
			if (!parent)
				break;
			if (parent == mnt) {
				done = true;
				break;
			}
			s->at_dentry = (__u64)mnt->mnt_mountpoint;
			s->at_mnt = (__u64)&parent->mnt;
			continue;
		}
		up = dentry->d_parent;
		if (!up || !prepend_dentry_name(s, dentry, at_dentry))
			break;
		if (up == dentry) {
			/* an unlinked or pseudo file (memfd, anonymous): its own name is all */
			done = true;
			break;
		}
		s->at_dentry = (__u64)up;
	}
	return finish_built_path(s, done, trunc_flag, VG_PATH_MAX);
}

/* Appends the path of cgroup directory @kn_p ("/system.slice/x.service"); returns its length. */
__noinline int vg_append_cgroup(__u64 kn_p, __u32 trunc_flag)
{
	struct vg_scratch *s = scratch();
	struct kernfs_node *kn = (struct kernfs_node *)kn_p, *up;
	bool done = false;
	long n;

	if (!s)
		return -1;
	s->pos = VG_CGROUP_MAX;
	for (int i = 0; i < VG_CGROUP_DEPTH; i++) {
		if (!kn) {
			done = true;
			break;
		}
		up = kernfs_parent(kn);
		if (!up) {
			done = true; /* the root's own name is not part of the path */
			break;
		}
		n = bpf_probe_read_kernel_str(s->name, sizeof(s->name), BPF_CORE_READ(kn, name));
		if (n < 1 || !prepend_component(s, s->name, (__u32)n - 1))
			break;
		kn = up;
	}
	return finish_built_path(s, done, trunc_flag, VG_CGROUP_MAX);
}

/*
 * The cgroup directory of @task in a v1 hierarchy, for hosts that still run containers
 * there (hybrid layout: the v2 hierarchy then holds everything at its root). NULL when the
 * kernel has neither the memory nor the pids controller.
 */
static __always_inline struct kernfs_node *cgroup_v1_kn(struct task_struct *task)
{
	struct css_set *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state *css = NULL;
	int id = -1;

	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
	else if (bpf_core_enum_value_exists(enum cgroup_subsys_id, pids_cgrp_id))
		id = bpf_core_enum_value(enum cgroup_subsys_id, pids_cgrp_id);
	if (id < 0 || id >= 64)
		return NULL;
	bpf_probe_read_kernel(&css, sizeof(css), &cset->subsys[id]);
	if (!css)
		return NULL;
	return BPF_CORE_READ(css, cgroup, kn);
}

/* Appends @len bytes of user memory at @uptr (cut at VG_ARGV_MAX). Returns bytes appended. */
__noinline int vg_append_user(__u64 uptr, __u32 len, __u32 trunc_flag)
{
	struct vg_scratch *s = scratch();
	__u64 n;
	__u32 cur;

	if (!s)
		return -1;
	cur = s->cur;
	if (cur > VG_RECORD_MAX)
		return -1;
	if (len > VG_RECORD_MAX - cur) {
		len = VG_RECORD_MAX - cur;
		mark_truncated(s, trunc_flag);
	}
	/* last, so that the verifier sees this bound on every path */
	if (len > VG_ARGV_MAX) {
		len = VG_ARGV_MAX;
		mark_truncated(s, trunc_flag);
	}
	if (len == 0)
		return 0;
	n = len;
	/* the compiler merges the clamps above; repeat the bound on the register in use */
	barrier_var(n);
	if (n > VG_ARGV_MAX)
		return -1;
	if (bpf_probe_read_user(&s->rec[cur & (VG_RECORD_MAX - 1)], n, (const void *)uptr))
		return -1;
	s->cur = cur + len;
	return len;
}

/*
 * Appends the NUL-terminated string at @ptr (user memory when @user, kernel memory
 * otherwise), at most @cap - 1 bytes of it. Returns its length (without the NUL) or -1.
 */
__noinline int vg_append_str(__u64 ptr, __u32 cap, __u32 user, __u32 trunc_flag)
{
	struct vg_scratch *s = scratch();
	__u64 size;
	__u32 cur;
	long n;

	if (!s)
		return -1;
	cur = s->cur;
	if (cap > VG_PATH_MAX)
		cap = VG_PATH_MAX;
	size = cap;
	barrier_var(size);
	if (size < 2 || size > VG_PATH_MAX || cur > VG_RECORD_MAX - VG_PATH_MAX)
		return -1;
	if (user)
		n = bpf_probe_read_user_str(&s->rec[cur & (VG_RECORD_MAX - 1)], size,
					    (const void *)ptr);
	else
		n = bpf_probe_read_kernel_str(&s->rec[cur & (VG_RECORD_MAX - 1)], size,
					      (const void *)ptr);
	if (n < 1)
		return -1;
	if ((__u64)n == size)
		mark_truncated(s, trunc_flag);
	s->cur = cur + (__u32)n - 1;
	return (int)n - 1;
}

static __always_inline int append_byte(struct vg_scratch *s, char c)
{
	__u32 cur = s->cur;

	if (cur >= VG_RECORD_MAX)
		return -1;
	s->rec[cur & (VG_RECORD_MAX - 1)] = c;
	s->cur = cur + 1;
	return 1;
}

/*
 * Appends again the directory part of the path resolved last into this record (see
 * vg_append_resolved), marking the record with @trunc_flag when that part was cut.
 * Returns the bytes appended or -1.
 */
static __always_inline int append_dir_again(struct vg_scratch *s, __u32 trunc_flag)
{
	__u32 cur = s->cur, from = s->dir_off;
	__u64 len = s->dir_len;

	barrier_var(len);
	if (len == 0 || len > VG_PATH_MAX + 1 || cur > VG_RECORD_MAX - VG_PATH_MAX - 1 ||
	    from >= VG_RECORD_MAX)
		return -1;
	if (bpf_probe_read_kernel(&s->rec[cur & (VG_RECORD_MAX - 1)], len,
				  &s->rec[from & (VG_RECORD_MAX - 1)]))
		return -1;
	if (s->dir_cut)
		mark_truncated(s, trunc_flag);
	s->cur = cur + (__u32)len;
	return (int)len;
}

/*
 * Appends the absolute form of user path @upath given relative to directory fd @dfd
 * (VG_AT_FDCWD for the working directory); an empty @upath names @dfd itself. A second
 * path relative to the same directory (the two sides of a rename) reuses the first one's
 * directory instead of walking it again. Returns the bytes appended, -2 when the directory
 * is on a pseudo filesystem, or -1. @typed: by typed reads (a constant in each copy).
 */
static __always_inline int append_resolved(__s64 dfd, __u64 upath, __u32 trunc_flag, bool typed)
{
	struct vg_scratch *s = scratch();
	struct task_struct *typed_task;
	struct file *file;
	__u64 dentry, magic;
	__u32 start, cut_before;
	char c = 0;
	int n;

	if (!s || bpf_probe_read_user(&c, 1, (const void *)upath))
		return -1;
	start = s->cur;
	if (c && c != '/' && s->dir_len && s->dir_fd == dfd) {
		if (append_dir_again(s, trunc_flag) < 0)
			return -1;
	} else if (c != '/') {
		if (dfd == VG_AT_FDCWD) {
			typed_task = bpf_get_current_task_btf();
			s->arg_dentry = (__u64)typed_task->fs->pwd.dentry;
			s->arg_mnt = (__u64)typed_task->fs->pwd.mnt;
		} else {
			file = fd_file(dfd);
			if (!file)
				return -1;
			if (typed) {
				s->arg_dentry = (__u64)VG_CAST(struct file, file)->f_path.dentry;
				s->arg_mnt = (__u64)VG_CAST(struct file, file)->f_path.mnt;
			} else {
				/* into the map: no stack slot shared with the typed loads */
				bpf_core_read(&s->arg_dentry, sizeof(s->arg_dentry),
					      &file->f_path.dentry);
				bpf_core_read(&s->arg_mnt, sizeof(s->arg_mnt), &file->f_path.mnt);
			}
		}
		dentry = VG_NUMBER(s->arg_dentry);
		if (!dentry)
			return -2;
		if (typed)
			magic = VG_CAST(struct dentry, dentry)->d_sb->s_magic;
		else
			magic = BPF_CORE_READ((struct dentry *)dentry, d_sb, s_magic);
		if (pseudo_fs_magic(magic))
			return -2;
		cut_before = ((struct vg_hdr *)s->rec)->flags & trunc_flag;
		if (typed)
			n = vg_append_path_typed(dentry, VG_NUMBER(s->arg_mnt), trunc_flag);
		else
			n = vg_append_path(dentry, VG_NUMBER(s->arg_mnt), trunc_flag);
		if (n < 0)
			return -1;
		/* "/" + "x" should not become "//x" */
		if (c && n != 1 && append_byte(s, '/') < 0)
			return -1;
		if (c) {
			s->dir_off = start;
			s->dir_len = s->cur - start;
			s->dir_fd = dfd;
			s->dir_cut = !cut_before && (((struct vg_hdr *)s->rec)->flags & trunc_flag);
		}
	}
	if (c && vg_append_str(upath, VG_PATH_MAX, 1, trunc_flag) < 0)
		return -1;
	return (int)(s->cur - start);
}

__noinline int vg_append_resolved(__s64 dfd, __u64 upath, __u32 trunc_flag)
{
	return append_resolved(dfd, upath, trunc_flag, false);
}

__noinline int vg_append_resolved_typed(__s64 dfd, __u64 upath, __u32 trunc_flag)
{
	return append_resolved(dfd, upath, trunc_flag, true);
}

/*
 * True when the @len bytes at @off of the record are a path under /proc, /sys or /dev/pts,
 * the usual mount points of the pseudo filesystems skipped by superblock elsewhere.
 */
__noinline int vg_pseudo_path(__u32 off, __u32 len)
{
	struct vg_scratch *s = scratch();
	const char *p;

	if (!s || off >= VG_RECORD_MAX)
		return 0;
	/* at most 9 bytes are read, and rec reaches well past VG_RECORD_MAX */
	barrier_var(off);
	p = (const char *)&s->rec[off & (VG_RECORD_MAX - 1)];
	if (len >= 5 && p[0] == '/' && p[1] == 'p' && p[2] == 'r' && p[3] == 'o' && p[4] == 'c')
		return len == 5 || p[5] == '/';
	if (len >= 4 && p[0] == '/' && p[1] == 's' && p[2] == 'y' && p[3] == 's')
		return len == 4 || p[4] == '/';
	if (len >= 8 && p[0] == '/' && p[1] == 'd' && p[2] == 'e' && p[3] == 'v' && p[4] == '/' &&
	    p[5] == 'p' && p[6] == 't' && p[7] == 's')
		return len == 8 || p[8] == '/';
	return 0;
}

/* Sends the record built in the scratch buffer; counts it as lost when there is no room. */
__noinline int vg_submit(__u32 action)
{
	struct vg_scratch *s = scratch();
	__u64 size, avail, flags;

	if (!s)
		return -1;
	size = s->cur;
	barrier_var(size);
	if (size < sizeof(struct vg_hdr) || size > VG_RECORD_MAX)
		return -1;
	((struct vg_hdr *)s->rec)->size = (__u32)size;
	/*
	 * Only a record that finds the waiting bytes past the mark when they were below it at
	 * the previous look wakes the agent: every wake-up is an interrupt, and the records
	 * after it would each send one more until the agent has caught up. Below the mark the
	 * agent's timed poll collects them. The look itself touches the consumer's cache line,
	 * so it is taken every few records only; the mark leaves room for that.
	 */
	flags = BPF_RB_NO_WAKEUP;
	if (++s->submitted % VG_WAKEUP_CHECK_EVERY == 0) {
		avail = bpf_ringbuf_query(&vg_events, BPF_RB_AVAIL_DATA);
		if (avail >= vg_wakeup_bytes && !s->above_mark)
			flags = BPF_RB_FORCE_WAKEUP;
		s->above_mark = avail >= vg_wakeup_bytes;
	}
	if (bpf_ringbuf_output(&vg_events, s->rec, size, flags)) {
		count_drop(VG_DROP_RINGBUF_FULL, action);
		return -1;
	}
	return 0;
}

/* Fills a vg_str from the offset before an append and the append's result. */
static __always_inline void set_str(struct vg_str *str, __u32 off, int n)
{
	if (n <= 0 || off >= VG_RECORD_MAX)
		return;
	str->off = (__u16)off;
	str->len = (__u16)n;
}

/* ---- process lifecycle ---- */

SEC("raw_tp/sched_process_exec")
int vg_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct vg_scratch *s = scratch();
	const struct cred *cred;
	struct vg_exec *e;
	struct file *exe;
	struct mm_struct *mm;
	struct tty_struct *tty;
	struct kernfs_node *kn;
	unsigned long arg_start, arg_end;
	__u32 off, len;
	int n;

	if (!s)
		return 0;
	e = record_begin(s, sizeof(*e), VG_T_EXEC, VG_A_EXEC, BPF_CORE_READ(task, tgid),
			 BPF_CORE_READ(task, pid));
	e->start_ns = task_start_ns(task);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	cred = BPF_CORE_READ(task, cred);
	e->uid = BPF_CORE_READ(cred, uid.val);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->gid = BPF_CORE_READ(cred, gid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->loginuid = (__u32)-1;
	if (bpf_core_field_exists(task->loginuid))
		e->loginuid = BPF_CORE_READ(task, loginuid.val);
	e->argc = BPF_CORE_READ(bprm, argc);

	/* argv first: the largest string, at a fixed offset */
	mm = BPF_CORE_READ(task, mm);
	arg_start = BPF_CORE_READ(mm, arg_start);
	arg_end = BPF_CORE_READ(mm, arg_end);
	len = 0;
	if (arg_end > arg_start)
		/* past the cap, vg_append_user cuts it and marks it */
		len = arg_end - arg_start > VG_ARGV_MAX ? VG_ARGV_MAX + 1
							: (__u32)(arg_end - arg_start);
	off = s->cur;
	n = vg_append_user(arg_start, len, VG_F_ARGS_TRUNC);
	if (n < 0 && len > 0) {
		/* a page of the arguments is not present: keep what the first page holds */
		__u32 first = 4096 - (arg_start & 4095);
		n = vg_append_user(arg_start, first < len ? first : len, VG_F_ARGS_TRUNC);
		if (n >= 0)
			mark_truncated(s, VG_F_ARGS_TRUNC);
		else
			mark_truncated(s, VG_F_ARGS_UNREADABLE);
	}
	set_str(&e->args, off, n);

	exe = BPF_CORE_READ(bprm, file);
	off = s->cur;
	n = vg_append_path((__u64)BPF_CORE_READ(exe, f_path.dentry),
			   (__u64)BPF_CORE_READ(exe, f_path.mnt), VG_F_EXE_TRUNC);
	set_str(&e->executable, off, n);

	off = s->cur;
	n = vg_append_path((__u64)BPF_CORE_READ(task, fs, pwd.dentry),
			   (__u64)BPF_CORE_READ(task, fs, pwd.mnt), VG_F_CWD_TRUNC);
	set_str(&e->cwd, off, n);

	tty = BPF_CORE_READ(task, signal, tty);
	if (tty) {
		off = s->cur;
		n = vg_append_str((__u64)__builtin_preserve_access_index(&tty->name[0]), VG_TTY_MAX,
				  0, 0);
		set_str(&e->tty, off, n);
	}

	kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	off = s->cur;
	n = vg_append_cgroup((__u64)kn, VG_F_CGROUP_TRUNC);
	set_str(&e->cgroup, off, n);
	if (n == 1 && (kn = cgroup_v1_kn(task)) && kernfs_parent(kn)) {
		off = s->cur;
		n = vg_append_cgroup((__u64)kn, VG_F_CGROUP_V1_TRUNC);
		set_str(&e->cgroup_v1, off, n);
	}

	vg_submit(VG_A_EXEC);
	return 0;
}

SEC("raw_tp/sched_process_fork")
int vg_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	struct vg_scratch *s;
	struct vg_fork *f;
	__u32 pid = BPF_CORE_READ(child, pid), tgid = BPF_CORE_READ(child, tgid);

	if (pid != tgid)
		return 0; /* a new thread, not a new process */
	s = scratch();
	if (!s)
		return 0;
	f = record_begin(s, sizeof(*f), VG_T_FORK, VG_A_FORK, tgid,
			 (__u32)bpf_get_current_pid_tgid());
	f->start_ns = task_start_ns(child);
	f->ppid = BPF_CORE_READ(child, real_parent, tgid);
	vg_submit(VG_A_FORK);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int vg_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	__u64 id = bpf_get_current_pid_tgid();
	struct vg_scratch *s;
	struct vg_exit *x;

	/* a thread killed inside a stashed syscall never reaches sys_exit */
	bpf_map_delete_elem(&vg_stash_map, &id);
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0; /* other threads of the process live on */
	s = scratch();
	if (!s)
		return 0;
	x = record_begin(s, sizeof(*x), VG_T_EXIT, VG_A_EXIT, BPF_CORE_READ(task, tgid),
			 BPF_CORE_READ(task, pid));
	/* the last thread out need not be the leader: the process started with the leader */
	x->start_ns = task_start_ns(BPF_CORE_READ(task, group_leader));
	x->exit_code = BPF_CORE_READ(task, exit_code);
	vg_submit(VG_A_EXIT);
	return 0;
}

SEC("raw_tp/module_load")
int vg_module_load(struct bpf_raw_tracepoint_args *ctx)
{
	struct module___vg *mod = (struct module___vg *)ctx->args[0];
	struct vg_scratch *s = scratch();
	struct vg_module *m;
	__u32 off;
	int n;

	if (!s)
		return 0;
	m = record_begin_current(s, sizeof(*m), VG_T_MODULE, VG_A_MODULE_LOAD);
	off = s->cur;
	n = vg_append_str((__u64)__builtin_preserve_access_index(&mod->name[0]), VG_MODULE_NAME_MAX,
			  0, VG_F_NAME_TRUNC);
	set_str(&m->name, off, n);
	vg_submit(VG_A_MODULE_LOAD);
	return 0;
}

/* ---- syscalls ---- */

static __always_inline __u32 action_of(__u32 sc)
{
	switch (sc) {
	case VG_SC_RENAME:
	case VG_SC_RENAMEAT:
	case VG_SC_RENAMEAT2:
		return VG_A_RENAME;
	case VG_SC_UNLINK:
	case VG_SC_UNLINKAT:
	case VG_SC_RMDIR:
		return VG_A_DELETE;
	case VG_SC_CHMOD:
	case VG_SC_FCHMOD:
	case VG_SC_FCHMODAT:
	case VG_SC_FCHMODAT2:
		return VG_A_CHMOD;
	case VG_SC_CONNECT:
	case VG_SC_SENDTO:
	case VG_SC_SENDMSG:
	case VG_SC_SENDMMSG:
		return VG_A_CONNECT;
	case VG_SC_BIND:
		return VG_A_BIND;
	case VG_SC_SETUID:
	case VG_SC_SETREUID:
	case VG_SC_SETRESUID:
	case VG_SC_SETFSUID:
		return VG_A_SETUID;
	case VG_SC_SETGID:
	case VG_SC_SETREGID:
	case VG_SC_SETRESGID:
	case VG_SC_SETFSGID:
		return VG_A_SETGID;
	case VG_SC_PTRACE:
		return VG_A_PTRACE;
	case VG_SC_MEMFD_CREATE:
		return VG_A_MEMFD_CREATE;
	case VG_SC_INIT_MODULE:
	case VG_SC_FINIT_MODULE:
		return VG_A_MODULE_LOAD;
	}
	return VG_A_EXEC;
}

/* Copies a user sockaddr for @st; false when it is not IPv4 or IPv6. */
static __always_inline bool stash_sockaddr(struct vg_stash *st, __u64 uaddr, __u64 ulen)
{
	__u32 len = ulen > VG_SOCKADDR_MAX ? VG_SOCKADDR_MAX : (__u32)ulen;
	__u16 family;

	if (!uaddr || len < 8)
		return false;
	if (bpf_probe_read_user(st->addr, len & 31, (const void *)uaddr))
		return false;
	family = *(__u16 *)st->addr;
	return (family == VG_AF_INET && len >= 8) || (family == VG_AF_INET6 && len >= 24);
}

/* The current task's user (@uid) or group ids: real, effective, saved, fs. */
static __always_inline void cred_ids(struct vg_stash *st, bool uid)
{
	const struct cred *cred = BPF_CORE_READ(current_task(), cred);

	if (uid) {
		st->ids[0] = BPF_CORE_READ(cred, uid.val);
		st->ids[1] = BPF_CORE_READ(cred, euid.val);
		st->ids[2] = BPF_CORE_READ(cred, suid.val);
		st->ids[3] = BPF_CORE_READ(cred, fsuid.val);
	} else {
		st->ids[0] = BPF_CORE_READ(cred, gid.val);
		st->ids[1] = BPF_CORE_READ(cred, egid.val);
		st->ids[2] = BPF_CORE_READ(cred, sgid.val);
		st->ids[3] = BPF_CORE_READ(cred, fsgid.val);
	}
}

/* Keeps what sys_exit of syscall class @sc will need; returns 0, or -1 when not wanted. */
__noinline int vg_stash_args(__u64 regs_p, __u32 sc)
{
	struct pt_regs *regs = (struct pt_regs *)regs_p;
	__u64 id = bpf_get_current_pid_tgid();
	struct vg_stash st = {};
	__u64 msg[2];

	st.sc = sc;
	st.args[0] = VG_ARG0(regs);
	st.args[1] = VG_ARG1(regs);
	st.args[2] = VG_ARG2(regs);
	st.args[3] = VG_ARG3(regs);
	st.args[4] = VG_ARG4(regs);
	st.args[5] = VG_ARG5(regs);

	switch (sc) {
	case VG_SC_CONNECT:
	case VG_SC_BIND:
		if (!stash_sockaddr(&st, st.args[1], (__u32)st.args[2]))
			return -1;
		break;
	case VG_SC_SENDTO:
		/* only sends that name their destination; connected sockets had a connect */
		if (!stash_sockaddr(&st, st.args[4], (__u32)st.args[5]))
			return -1;
		break;
	case VG_SC_SENDMSG:
	case VG_SC_SENDMMSG:
		/* msghdr (and mmsghdr, first message) start with msg_name, msg_namelen */
		if (!st.args[1] || bpf_probe_read_user(msg, sizeof(msg), (const void *)st.args[1]))
			return -1;
		if (!stash_sockaddr(&st, msg[0], (__u32)msg[1]))
			return -1;
		break;
	case VG_SC_PTRACE:
		if (st.args[0] != VG_PTRACE_ATTACH && st.args[0] != VG_PTRACE_SEIZE)
			return -1;
		break;
	case VG_SC_SETUID ... VG_SC_SETFSUID:
		cred_ids(&st, true);
		break;
	case VG_SC_SETGID ... VG_SC_SETFSGID:
		cred_ids(&st, false);
		break;
	}
	if (bpf_map_update_elem(&vg_stash_map, &id, &st, BPF_ANY)) {
		count_drop(VG_DROP_STASH_FULL, action_of(sc));
		return -1;
	}
	return 0;
}

SEC("raw_tp/sys_enter")
int vg_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 nr = ctx->args[1];
	__u32 sc;

	if (nr >= VG_NR_SLOTS)
		return 0;
	sc = vg_nr_class[nr];
	if (sc < VG_SC_FIRST_STASHED)
		return 0;
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) == vg_self_tgid || compat_syscall())
		return 0;
	vg_stash_args(ctx->args[0], sc);
	return 0;
}

/*
 * open, openat, openat2, creat returned @fd: report a created or writable regular file.
 * @typed: by typed reads (a constant in each copy).
 */
static __always_inline int on_open(__s64 fd, __u32 sc, bool typed)
{
	struct file *file = fd_file(fd);
	struct vg_scratch *s;
	struct vg_file *f;
	struct inode *inode;
	__u32 fmode, imode, off;
	__u64 magic;
	__u16 action;
	int n;

	if (!file)
		return 0;
	s = scratch();
	if (!s)
		return 0;
	if (typed) {
		struct file *tf = VG_CAST(struct file, file);

		fmode = tf->f_mode;
		if (!(fmode & (VG_FMODE_CREATED | VG_FMODE_WRITE)))
			return 0;
		imode = tf->f_inode->i_mode;
		magic = tf->f_inode->i_sb->s_magic;
		s->arg_dentry = (__u64)tf->f_path.dentry;
		s->arg_mnt = (__u64)tf->f_path.mnt;
	} else {
		fmode = BPF_CORE_READ(file, f_mode);
		if (!(fmode & (VG_FMODE_CREATED | VG_FMODE_WRITE)))
			return 0;
		inode = BPF_CORE_READ(file, f_inode);
		imode = BPF_CORE_READ(inode, i_mode);
		magic = BPF_CORE_READ(inode, i_sb, s_magic);
		bpf_core_read(&s->arg_dentry, sizeof(s->arg_dentry), &file->f_path.dentry);
		bpf_core_read(&s->arg_mnt, sizeof(s->arg_mnt), &file->f_path.mnt);
	}
	if ((imode & VG_S_IFMT) != VG_S_IFREG || pseudo_fs_magic(magic))
		return 0;
	action = fmode & VG_FMODE_CREATED ? VG_A_CREATE : VG_A_WRITE;
	f = record_begin_current(s, sizeof(*f), VG_T_FILE, action);
	f->mode = imode & 07777;
	f->syscall = sc;
	off = s->cur;
	if (typed)
		n = vg_append_path_typed(VG_NUMBER(s->arg_dentry), VG_NUMBER(s->arg_mnt),
					 VG_F_PATH_TRUNC);
	else
		n = vg_append_path(VG_NUMBER(s->arg_dentry), VG_NUMBER(s->arg_mnt),
				   VG_F_PATH_TRUNC);
	if (n <= 0)
		return 0;
	set_str(&f->path, off, n);
	vg_submit(action);
	return 0;
}

__noinline int vg_on_open(__s64 fd, __u32 sc)
{
	return on_open(fd, sc, false);
}

__noinline int vg_on_open_typed(__s64 fd, __u32 sc)
{
	return on_open(fd, sc, true);
}

/*
 * rename, unlink, chmod families returned 0: report them with resolved paths. @a0 to @a3
 * are the syscall's first arguments, still in its saved registers at sys_exit. @typed: by
 * typed reads (a constant in each copy).
 */
static __always_inline int on_file_op(__u32 sc, __u64 a0, __u64 a1, __u64 a2, __u64 a3, bool typed)
{
	struct vg_scratch *s = scratch();
	struct vg_file *f;
	struct file *file;
	struct dentry *dentry;
	__s64 dfd = VG_AT_FDCWD, dfd2 = VG_AT_FDCWD;
	__u64 upath = 0, upath2 = 0;
	__u32 action = action_of(sc), off;
	int n;

	if (!s)
		return 0;
	f = record_begin_current(s, sizeof(*f), VG_T_FILE, action);
	f->syscall = sc;
	f->mode = VG_MODE_UNKNOWN;
	switch (sc) {
	case VG_SC_RENAME:
		upath = a0;
		upath2 = a1;
		break;
	case VG_SC_RENAMEAT:
	case VG_SC_RENAMEAT2:
		dfd = (__s32)a0;
		upath = a1;
		dfd2 = (__s32)a2;
		upath2 = a3;
		break;
	case VG_SC_UNLINK:
	case VG_SC_RMDIR:
		upath = a0;
		break;
	case VG_SC_UNLINKAT:
		dfd = (__s32)a0;
		upath = a1;
		break;
	case VG_SC_CHMOD:
		upath = a0;
		f->mode = (__u32)a1 & 07777;
		break;
	case VG_SC_FCHMODAT:
	case VG_SC_FCHMODAT2:
		dfd = (__s32)a0;
		upath = a1;
		f->mode = (__u32)a2 & 07777;
		break;
	case VG_SC_FCHMOD:
		f->mode = (__u32)a1 & 07777;
		file = fd_file((__s32)a0);
		if (!file)
			return 0;
		dentry = BPF_CORE_READ(file, f_path.dentry);
		if (!dentry || dentry_on_pseudo_fs(dentry))
			return 0;
		off = s->cur;
		n = vg_append_path((__u64)dentry, (__u64)BPF_CORE_READ(file, f_path.mnt),
				   VG_F_PATH_TRUNC);
		if (n <= 0)
			return 0;
		set_str(&f->path, off, n);
		vg_submit(action);
		return 0;
	default:
		return 0;
	}
	if (!upath)
		return 0;
	off = s->cur;
	if (typed)
		n = vg_append_resolved_typed(dfd, upath, VG_F_PATH_TRUNC);
	else
		n = vg_append_resolved(dfd, upath, VG_F_PATH_TRUNC);
	if (n <= 0 || vg_pseudo_path(off, n))
		return 0;
	set_str(&f->path, off, n);
	if (upath2) {
		off = s->cur;
		if (typed)
			n = vg_append_resolved_typed(dfd2, upath2, VG_F_TARGET_TRUNC);
		else
			n = vg_append_resolved(dfd2, upath2, VG_F_TARGET_TRUNC);
		set_str(&f->target, off, n);
	}
	vg_submit(action);
	return 0;
}

__noinline int vg_on_file_op(__u32 sc, __u64 a0, __u64 a1, __u64 a2, __u64 a3)
{
	return on_file_op(sc, a0, a1, a2, a3, false);
}

__noinline int vg_on_file_op_typed(__u32 sc, __u64 a0, __u64 a1, __u64 a2, __u64 a3)
{
	return on_file_op(sc, a0, a1, a2, a3, true);
}

/* Local and remote address of socket @sk into @nt; false unless TCP or UDP over IP. */
static __always_inline bool sock_addrs(struct sock *sk, struct vg_net *nt)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	__u16 dport;

	if ((family != VG_AF_INET && family != VG_AF_INET6) ||
	    (proto != VG_IPPROTO_TCP && proto != VG_IPPROTO_UDP))
		return false;
	nt->family = family;
	nt->protocol = proto;
	nt->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	nt->dport = __builtin_bswap16(dport);
	if (family == VG_AF_INET) {
		bpf_core_read(nt->saddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(nt->daddr, 4, &sk->__sk_common.skc_daddr);
	} else {
		bpf_core_read(nt->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(nt->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	return true;
}

/* The socket behind descriptor @fd of the current task, or NULL. */
static __always_inline struct sock *fd_sock(long fd)
{
	struct file *file = fd_file(fd);
	struct socket *sock;

	if (!file)
		return NULL;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & VG_S_IFMT) != VG_S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

/* accept and accept4 returned @fd: the connection's two ends, as an ingress event. */
__noinline int vg_on_accept(__s64 fd, __u32 sc)
{
	struct vg_scratch *s = scratch();
	struct sock *sk = fd_sock(fd);
	struct vg_net *nt;

	if (!s || !sk)
		return 0;
	nt = record_begin_current(s, sizeof(*nt), VG_T_NET, VG_A_ACCEPT);
	nt->syscall = sc;
	if (!sock_addrs(sk, nt))
		return 0;
	vg_submit(VG_A_ACCEPT);
	return 0;
}

/* connect, bind and addressed UDP sends that succeeded. */
__noinline int vg_on_net(__s64 ret, __u32 sc)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct vg_stash *st = bpf_map_lookup_elem(&vg_stash_map, &id);
	struct vg_scratch *s = scratch();
	struct vg_udp_key key = {};
	struct vg_net *nt;
	struct sock *sk;
	__u32 action = action_of(sc);
	__u16 family;
	__u64 now;

	if (!st || st->sc != sc || !s)
		return 0;
	if (sc == VG_SC_CONNECT ? (ret != 0 && ret != -VG_EINPROGRESS) : ret < 0)
		return 0;
	sk = fd_sock((__s32)st->args[0]);
	if (!sk)
		return 0;
	nt = record_begin_current(s, sizeof(*nt), VG_T_NET, action);
	nt->syscall = sc;
	if (!sock_addrs(sk, nt))
		return 0;
	if (sc == VG_SC_BIND) {
		__builtin_memset(nt->daddr, 0, sizeof(nt->daddr));
		nt->dport = 0;
		vg_submit(action);
		return 0;
	}
	/* the destination as the caller asked for it */
	family = *(__u16 *)st->addr;
	nt->dport = __builtin_bswap16(*(__u16 *)&st->addr[2]);
	__builtin_memset(nt->daddr, 0, sizeof(nt->daddr));
	if (family == VG_AF_INET) {
		__builtin_memcpy(nt->daddr, &st->addr[4], 4);
		if (nt->family == VG_AF_INET6) {
			/* an IPv6 socket never reaches an AF_INET address; keep it as IPv4 */
			nt->family = VG_AF_INET;
			__builtin_memset(nt->saddr, 0, sizeof(nt->saddr));
		}
	} else {
		__builtin_memcpy(nt->daddr, &st->addr[8], 16);
	}
	if (sc != VG_SC_CONNECT) {
		if (nt->protocol != VG_IPPROTO_UDP)
			return 0;
		key.sk = (__u64)sk;
		key.ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
		__builtin_memcpy(key.daddr, nt->daddr, sizeof(key.daddr));
		key.dport = nt->dport;
		key.family = family;
		if (bpf_map_lookup_elem(&vg_udp_seen, &key))
			return 0;
		now = bpf_ktime_get_boot_ns();
		bpf_map_update_elem(&vg_udp_seen, &key, &now, BPF_ANY);
	}
	vg_submit(action);
	return 0;
}

/* setuid and setgid families: report the ids asked for once the call took effect. */
__noinline int vg_on_cred(__s64 ret, __u32 sc)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct vg_stash *st = bpf_map_lookup_elem(&vg_stash_map, &id);
	struct task_struct *task = current_task();
	const struct cred *cred = BPF_CORE_READ(task, cred);
	struct vg_scratch *s = scratch();
	__u32 action = action_of(sc);
	struct vg_stash after;
	struct vg_cred *c;
	__u32 fs;

	if (!st || st->sc != sc || !s)
		return 0;
	if (sc == VG_SC_SETFSUID || sc == VG_SC_SETFSGID) {
		/* these return the old id; success is the new one being in place */
		fs = sc == VG_SC_SETFSUID ? BPF_CORE_READ(cred, fsuid.val)
					  : BPF_CORE_READ(cred, fsgid.val);
		if (fs != (__u32)st->args[0])
			return 0;
	} else if (ret != 0) {
		return 0;
	}
	/* a call that changed nothing (root's setuid(0), make's setgid(getgid())) is no event */
	cred_ids(&after, sc <= VG_SC_SETFSUID);
	if (after.ids[0] == st->ids[0] && after.ids[1] == st->ids[1] &&
	    after.ids[2] == st->ids[2] && after.ids[3] == st->ids[3])
		return 0;
	c = record_begin_current(s, sizeof(*c), VG_T_CRED, action);
	c->syscall = sc;
	c->requested[0] = (__u32)st->args[0];
	c->requested[1] = VG_ID_UNCHANGED;
	c->requested[2] = VG_ID_UNCHANGED;
	if (sc == VG_SC_SETREUID || sc == VG_SC_SETREGID || sc == VG_SC_SETRESUID ||
	    sc == VG_SC_SETRESGID)
		c->requested[1] = (__u32)st->args[1];
	if (sc == VG_SC_SETRESUID || sc == VG_SC_SETRESGID)
		c->requested[2] = (__u32)st->args[2];
	c->uid = BPF_CORE_READ(cred, uid.val);
	c->euid = BPF_CORE_READ(cred, euid.val);
	c->gid = BPF_CORE_READ(cred, gid.val);
	c->egid = BPF_CORE_READ(cred, egid.val);
	vg_submit(action);
	return 0;
}

/* ptrace attach, memfd_create and module loading through syscalls. */
__noinline int vg_on_misc(__s64 ret, __u32 sc)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct vg_stash *st = bpf_map_lookup_elem(&vg_stash_map, &id);
	struct vg_scratch *s = scratch();
	struct vg_ptrace *p;
	struct vg_memfd *m;
	struct vg_module *mod;
	struct file *file;
	__u32 off;
	int n;

	if (!st || !s || ret < 0)
		return 0;
	switch (sc) {
	case VG_SC_PTRACE:
		if (ret != 0)
			return 0;
		p = record_begin_current(s, sizeof(*p), VG_T_PTRACE, VG_A_PTRACE);
		p->request = (__s64)st->args[0];
		p->target_pid = (__u32)st->args[1];
		vg_submit(VG_A_PTRACE);
		return 0;
	case VG_SC_MEMFD_CREATE:
		m = record_begin_current(s, sizeof(*m), VG_T_MEMFD, VG_A_MEMFD_CREATE);
		m->mfd_flags = (__u32)st->args[1];
		off = s->cur;
		n = vg_append_str(st->args[0], VG_MEMFD_NAME_MAX, 1, VG_F_NAME_TRUNC);
		set_str(&m->name, off, n);
		vg_submit(VG_A_MEMFD_CREATE);
		return 0;
	case VG_SC_INIT_MODULE:
	case VG_SC_FINIT_MODULE:
		if (ret != 0)
			return 0;
		mod = record_begin_current(s, sizeof(*mod), VG_T_MODULE, VG_A_MODULE_LOAD);
		mod->syscall = sc;
		if (sc == VG_SC_FINIT_MODULE) {
			file = fd_file((__s32)st->args[0]);
			if (file) {
				off = s->cur;
				n = vg_append_path((__u64)BPF_CORE_READ(file, f_path.dentry),
						   (__u64)BPF_CORE_READ(file, f_path.mnt),
						   VG_F_PATH_TRUNC);
				set_str(&mod->path, off, n);
			}
		}
		vg_submit(VG_A_MODULE_LOAD);
		return 0;
	}
	return 0;
}

/*
 * A BTF-typed raw tracepoint: the saved registers arrive as a typed pointer, so the syscall
 * number, which every syscall of the machine has read here, and the arguments are plain
 * loads rather than helper calls. @typed: the file syscalls by typed reads.
 */
static __always_inline int sys_exit(struct pt_regs *regs, long ret, bool typed)
{
	__u64 nr = VG_SYSCALL_NR(regs);
	__u64 id;
	__u32 sc;

	if (nr >= VG_NR_SLOTS)
		return 0;
	sc = vg_nr_class[nr];
	if (sc == VG_SC_NONE)
		return 0;
	id = bpf_get_current_pid_tgid();
	if ((__u32)(id >> 32) == vg_self_tgid)
		return 0;
	if (sc < VG_SC_FIRST_STASHED) {
		/* stashed classes need no such check: sys_enter kept nothing for compat calls */
		if (ret < 0 || (sc >= VG_SC_RENAME && ret != 0) || compat_syscall())
			return 0;
		if (sc == VG_SC_ACCEPT || sc == VG_SC_ACCEPT4)
			vg_on_accept(ret, sc);
		else if (sc >= VG_SC_RENAME && typed)
			vg_on_file_op_typed(sc, VG_ARG0_BTF(regs), VG_ARG1_BTF(regs),
					    VG_ARG2_BTF(regs), VG_ARG3_BTF(regs));
		else if (sc >= VG_SC_RENAME)
			vg_on_file_op(sc, VG_ARG0_BTF(regs), VG_ARG1_BTF(regs), VG_ARG2_BTF(regs),
				      VG_ARG3_BTF(regs));
		else if (typed)
			vg_on_open_typed(ret, sc);
		else
			vg_on_open(ret, sc);
		return 0;
	}
	switch (sc) {
	case VG_SC_CONNECT ... VG_SC_SENDMMSG:
		vg_on_net(ret, sc);
		break;
	case VG_SC_SETUID ... VG_SC_SETFSGID:
		vg_on_cred(ret, sc);
		break;
	default:
		vg_on_misc(ret, sc);
		break;
	}
	bpf_map_delete_elem(&vg_stash_map, &id);
	return 0;
}

/* The two forms of the program; user space loads one of them. */
SEC("tp_btf/sys_exit")
int BPF_PROG(vg_sys_exit, struct pt_regs *regs, long ret)
{
	return sys_exit(regs, ret, false);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(vg_sys_exit_typed, struct pt_regs *regs, long ret)
{
	return sys_exit(regs, ret, true);
}
