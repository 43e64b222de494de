/*
 * The records vigil's BPF programs write to the ring buffer, shared by the BPF side and
 * the user-space decoder. Plain fixed-width types only; every record starts with struct
 * vg_hdr (type, size) and carries its strings after the fixed part, located by vg_str.
 */
#ifndef VIGIL_BPF_EVENT_H
#define VIGIL_BPF_EVENT_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Largest record; every string offset and length fits in 16 bits. */
#define VG_RECORD_MAX 32768u
/* Longest path the kernel side builds, and longest path component it copies. */
#define VG_PATH_MAX 4096u
#define VG_NAME_MAX 255u
/* Path components (and mount crossings) walked before a path is marked truncated. */
#define VG_PATH_DEPTH 96u
/* Longest cgroup path, and components of it walked, before it is marked truncated. */
#define VG_CGROUP_MAX	2048u
#define VG_CGROUP_DEPTH 24u
/* Bytes of argv (NUL-separated, as the kernel keeps it) copied at exec. */
#define VG_ARGV_MAX	   16384u
#define VG_TTY_MAX	   64u
#define VG_MODULE_NAME_MAX 64u
/* memfd_create names are at most 249 bytes. */
#define VG_MEMFD_NAME_MAX 256u
/* Bytes of a user sockaddr kept: enough for sockaddr_in6. */
#define VG_SOCKADDR_MAX 28u
/* Slots of the syscall-number table: every x86-64 and arm64 number is below this. */
#define VG_NR_SLOTS 512u

#define VG_AT_FDCWD (-100)

/* Record types. */
enum vg_type {
	VG_T_EXEC = 1,
	VG_T_FORK,
	VG_T_EXIT,
	VG_T_FILE,
	VG_T_NET,
	VG_T_CRED,
	VG_T_MODULE,
	VG_T_PTRACE,
	VG_T_MEMFD,
	VG_T_COUNT,
};

/* What happened; also the index of the per-action drop counters. */
enum vg_action {
	VG_A_EXEC,
	VG_A_FORK,
	VG_A_EXIT,
	VG_A_CREATE,
	VG_A_WRITE,
	VG_A_RENAME,
	VG_A_DELETE,
	VG_A_CHMOD,
	VG_A_CONNECT,
	VG_A_ACCEPT,
	VG_A_BIND,
	VG_A_SETUID,
	VG_A_SETGID,
	VG_A_MODULE_LOAD,
	VG_A_PTRACE,
	VG_A_MEMFD_CREATE,
	VG_A_COUNT,
};

/* Why a record was lost in the kernel. Counter index: cause * VG_A_COUNT + action. */
enum vg_drop {
	VG_DROP_RINGBUF_FULL, /* no room in the ring buffer */
	VG_DROP_STASH_FULL,   /* syscall arguments could not be kept until the syscall returned */
	VG_DROP_COUNT,
};

/*
 * Syscalls the programs handle, independent of the architecture's numbering. User space
 * fills vg_nr_class[nr] with these before loading; 0 means "not interesting", which is all
 * sys_enter and sys_exit look at for every other syscall. Classes before
 * VG_SC_FIRST_STASHED need nothing from sys_enter: sys_exit reads their arguments from the
 * registers, which these syscalls leave as they were given.
 */
enum vg_syscall {
	VG_SC_NONE,
	VG_SC_OPEN,
	VG_SC_CREAT,
	VG_SC_OPENAT,
	VG_SC_OPENAT2,
	VG_SC_ACCEPT,
	VG_SC_ACCEPT4,
	VG_SC_RENAME,
	VG_SC_RENAMEAT,
	VG_SC_RENAMEAT2,
	VG_SC_UNLINK,
	VG_SC_UNLINKAT,
	VG_SC_RMDIR,
	VG_SC_CHMOD,
	VG_SC_FCHMOD,
	VG_SC_FCHMODAT,
	VG_SC_FCHMODAT2,
	VG_SC_FIRST_STASHED,
	VG_SC_CONNECT = VG_SC_FIRST_STASHED,
	VG_SC_BIND,
	VG_SC_SENDTO,
	VG_SC_SENDMSG,
	VG_SC_SENDMMSG,
	VG_SC_SETUID,
	VG_SC_SETREUID,
	VG_SC_SETRESUID,
	VG_SC_SETFSUID,
	VG_SC_SETGID,
	VG_SC_SETREGID,
	VG_SC_SETRESGID,
	VG_SC_SETFSGID,
	VG_SC_PTRACE,
	VG_SC_MEMFD_CREATE,
	VG_SC_INIT_MODULE,
	VG_SC_FINIT_MODULE,
	VG_SC_COUNT,
};

/* vg_hdr.flags: which strings were cut at their cap or depth limit. */
#define VG_F_EXE_TRUNC	  (1u << 0)
#define VG_F_ARGS_TRUNC	  (1u << 1)
#define VG_F_CWD_TRUNC	  (1u << 2)
#define VG_F_CGROUP_TRUNC (1u << 3)
#define VG_F_PATH_TRUNC	  (1u << 4)
#define VG_F_TARGET_TRUNC (1u << 5)
#define VG_F_NAME_TRUNC	  (1u << 6)
/* argv could not be read from the new process image */
#define VG_F_ARGS_UNREADABLE (1u << 7)
#define VG_F_CGROUP_V1_TRUNC (1u << 8)

/* A string inside the record: @off bytes from the record's start, @len bytes, no NUL. */
struct vg_str {
	__u16 off;
	__u16 len;
};

struct vg_hdr {
	__u16 type;   /* enum vg_type */
	__u16 action; /* enum vg_action */
	__u32 size;   /* bytes of the whole record, this header included */
	__u64 ts_ns;  /* CLOCK_BOOTTIME */
	__u32 pid;    /* thread group id of the process the event is about */
	__u32 tid;    /* thread that caused it */
	__u32 flags;  /* VG_F_* */
	__u32 reserved;
};

struct vg_exec {
	struct vg_hdr hdr;
	__u64 start_ns; /* task start, CLOCK_BOOTTIME */
	__u32 ppid;
	__u32 uid, euid, gid, egid;
	__u32 loginuid; /* (__u32)-1 when unset */
	__s32 argc;
	__u32 reserved;
	struct vg_str executable, args, cwd, tty, cgroup;
	/* a v1 cgroup path, sent only when the v2 one is the root (hybrid hosts) */
	struct vg_str cgroup_v1;
};

struct vg_fork {
	struct vg_hdr hdr; /* hdr.pid is the child */
	__u64 start_ns;	   /* the child's start */
	__u32 ppid;
	__u32 reserved;
};

struct vg_exit {
	struct vg_hdr hdr;
	__u64 start_ns;
	__s32 exit_code; /* the kernel's wait status: (status << 8) or the signal number */
	__u32 reserved;
};

#define VG_MODE_UNKNOWN 0xffffffffu

struct vg_file {
	struct vg_hdr hdr;
	__u32 mode;    /* permission bits (07777), or VG_MODE_UNKNOWN */
	__u32 syscall; /* enum vg_syscall */
	struct vg_str path;
	struct vg_str target; /* rename destination; len 0 otherwise */
};

struct vg_net {
	struct vg_hdr hdr;
	__u16 family;	/* AF_INET or AF_INET6 as the socket has it */
	__u16 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u16 sport;	/* host byte order; 0 when unknown */
	__u16 dport;
	__u8 saddr[16]; /* 4 bytes used for AF_INET; all zero when unknown */
	__u8 daddr[16];
	__u32 syscall; /* enum vg_syscall */
	__u32 reserved;
};

#define VG_ID_UNCHANGED 0xffffffffu

struct vg_cred {
	struct vg_hdr hdr;
	__u32 syscall;	    /* enum vg_syscall */
	__u32 requested[3]; /* real, effective, saved (or fs) id as passed; VG_ID_UNCHANGED = -1 */
	__u32 uid, euid, gid, egid; /* credentials after the call */
};

struct vg_module {
	struct vg_hdr hdr;
	__u32 syscall; /* enum vg_syscall, VG_SC_NONE from the module_load tracepoint */
	__u32 reserved;
	struct vg_str name;
	struct vg_str path; /* file given to finit_module, when known */
};

struct vg_ptrace {
	struct vg_hdr hdr;
	__s64 request;
	__u32 target_pid; /* as the caller named it (its pid namespace) */
	__u32 reserved;
};

struct vg_memfd {
	struct vg_hdr hdr;
	__u32 mfd_flags;
	__u32 reserved;
	struct vg_str name;
	__u32 reserved2;
};

_Static_assert(sizeof(struct vg_str) == 4, "vg_str layout");
_Static_assert(sizeof(struct vg_hdr) == 32, "vg_hdr layout");
_Static_assert(sizeof(struct vg_exec) == 96, "vg_exec layout");
_Static_assert(sizeof(struct vg_fork) == 48, "vg_fork layout");
_Static_assert(sizeof(struct vg_exit) == 48, "vg_exit layout");
_Static_assert(sizeof(struct vg_file) == 48, "vg_file layout");
_Static_assert(sizeof(struct vg_net) == 80, "vg_net layout");
_Static_assert(sizeof(struct vg_cred) == 64, "vg_cred layout");
_Static_assert(sizeof(struct vg_module) == 48, "vg_module layout");
_Static_assert(sizeof(struct vg_ptrace) == 48, "vg_ptrace layout");
_Static_assert(sizeof(struct vg_memfd) == 48, "vg_memfd layout");
/* the fixed part of an exec record plus all its strings at their caps fits one record */
_Static_assert(sizeof(struct vg_exec) + VG_ARGV_MAX + 2 * VG_PATH_MAX + 2 * VG_CGROUP_MAX +
		       VG_TTY_MAX <=
		   VG_RECORD_MAX,
	       "exec record cap");
_Static_assert(sizeof(struct vg_file) + 2 * (VG_PATH_MAX + 1 + VG_PATH_MAX) <= VG_RECORD_MAX,
	       "file record cap");
_Static_assert(VG_A_COUNT <= 16 && VG_SC_COUNT < 256, "counter and class ranges");

#endif
