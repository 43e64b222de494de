/*
 * Decoding of the BPF programs' ring-buffer records (bpf/vigil_event.h) into events.
 * Records are untrusted input: every size, offset and length is checked before use, and a
 * malformed record is rejected whole. Pure: no I/O, no process cache.
 */
#ifndef VIGIL_BPF_DECODE_H
#define VIGIL_BPF_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "bpf/vigil_event.h"
#include "lib/container.h"
#include "lib/event.h"
#include "lib/proc_cache.h"

/* Working storage of the decoder: NUL-terminated copies of what goes into proc_info. */
struct bpf_decoder {
	uint64_t ns_per_tick; /* nanoseconds per clock tick (USER_HZ) */
	char executable[VG_PATH_MAX + 1];
	char working_directory[VG_PATH_MAX + 1];
	char command_line[VG_ARGV_MAX + 1];
	char tty[VG_TTY_MAX + 2];
	char cgroup[VG_PATH_MAX + 1];
	char container_id[CONTAINER_ID_LEN + 1];
	/* a path being normalised: a directory, a separator and a user path */
	char path[2 * VG_PATH_MAX + 2];
	char module[VG_PATH_MAX + 1];
};

/* What the caller needs beyond the event to keep the process cache current. */
struct bpf_decoded {
	enum vg_type type;
	enum vg_action action;
	uint64_t ts_ns; /* CLOCK_BOOTTIME */
	uint32_t pid;
	uint32_t ppid;		       /* exec, fork */
	uint64_t start_ticks;	       /* exec, fork, exit */
	uint32_t target_pid;	       /* ptrace */
	uint32_t uid, euid, gid, egid; /* cred: credentials after the call */
	/* exec: the process as the cache should know it; strings point into the decoder */
	struct proc_info proc;
};

/* Sets up @d for a system with @ticks_per_second clock ticks (sysconf(_SC_CLK_TCK)). */
void bpf_decoder_init(struct bpf_decoder *d, long ticks_per_second);

/*
 * Checks record @data of @size bytes and turns it into @ev (reset first) and @out.
 * Returns 0; 1 when the record is valid but carries nothing to report (a no-op setuid);
 * or -EINVAL when it is malformed, -ENOMEM when the event could not hold it. On error @ev
 * and @out hold partial data and must not be emitted. @timestamp is left to the caller.
 */
int bpf_decode_record(struct bpf_decoder *d, const void *data, size_t size, struct event *ev,
		      struct bpf_decoded *out);

/* The name used for @action in metric lines ("exec", "module_load"), or "other". */
const char *bpf_action_name(unsigned action);

/*
 * Normalises absolute path @in (@len bytes) lexically into @out (@cap bytes, NUL-terminated):
 * empty and "." components dropped, ".." removes the one before it. Returns the length, or
 * -ENAMETOOLONG when @out is too small (it then holds a prefix).
 */
int bpf_normalize_path(const char *in, size_t len, char *out, size_t cap);

#endif
