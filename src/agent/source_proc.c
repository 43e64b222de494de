/*
 * The fallback event source: the kernel's netlink proc connector (fork, exec, exit, uid and
 * gid changes, ptrace attach), with exec details read from /proc. It sees no file, network
 * or module events and says so in its metrics.
 */
#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "proc_scan.h"
#include "source.h"

/* Socket receive buffer asked for: bursts of forks must not overflow it. */
#define PROC_RCVBUF_BYTES (16 * 1024 * 1024)
/* Datagrams handled per poll call, so the agent's loop keeps its rhythm under load. */
#define PROC_POLL_BUDGET 4096
/* How long open waits for the kernel to confirm the subscription. */
#define PROC_ACK_TIMEOUT_MS 2000
#define PROC_RX_BYTES	    8192

/* What this source cannot see, for the metrics and whoever reads them. */
#define PROC_MISSING "[\"file\",\"network\",\"module-load\",\"memfd-create\"]"

struct proc_counters {
	uint64_t overruns;     /* receive buffer overflowed (ENOBUFS): events were lost */
	uint64_t lost_details; /* execs whose process was gone before /proc was read */
	uint64_t malformed;    /* datagrams too short or not from the proc connector */
	uint64_t foreign;      /* datagrams not sent by the kernel */
	uint64_t cache_failed; /* cache updates that failed for lack of memory */
	uint64_t emit_failed;  /* events the agent could not write */
};

struct source {
	struct agent *agent;
	int fd;
	bool listening;
	uint32_t nonce; /* sent as cn_msg.ack; the kernel answers with nonce + 1 */
	bool acked;
	int ack_err;
	struct event *ev;
	struct buf args;       /* raw arguments of the exec being handled */
	uint64_t tick_ns;      /* nanoseconds per clock tick of /proc/PID/stat */
	uint64_t mono_to_real; /* CLOCK_REALTIME - CLOCK_MONOTONIC, refreshed per poll */
	uint64_t mono_to_boot; /* CLOCK_BOOTTIME - CLOCK_MONOTONIC (time spent suspended) */
	struct proc_counters counters;
	union {
		struct nlmsghdr hdr;
		char bytes[PROC_RX_BYTES];
	} rx;
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void refresh_clocks(struct source *src)
{
	uint64_t mono = clock_ns(CLOCK_MONOTONIC);

	src->mono_to_real = clock_ns(CLOCK_REALTIME) - mono;
	src->mono_to_boot = clock_ns(CLOCK_BOOTTIME) - mono;
}

/* Sends a subscription request (@op: PROC_CN_MCAST_LISTEN or _IGNORE). Returns 0 or -errno. */
static int send_mcast_op(struct source *src, enum proc_cn_mcast_op op)
{
	union {
		struct nlmsghdr hdr;
		char bytes[NLMSG_SPACE(sizeof(struct cn_msg) + sizeof(uint32_t))];
	} msg;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	struct cn_msg *cn;
	uint32_t value = (uint32_t)op;

	memset(&msg, 0, sizeof(msg));
	msg.hdr.nlmsg_len = NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(value));
	msg.hdr.nlmsg_type = NLMSG_DONE;
	cn = NLMSG_DATA(&msg.hdr);
	cn->id.idx = CN_IDX_PROC;
	cn->id.val = CN_VAL_PROC;
	cn->seq = 0;
	cn->ack = ++src->nonce;
	cn->len = sizeof(value);
	memcpy(cn->data, &value, sizeof(value));
	if (sendto(src->fd, &msg, msg.hdr.nlmsg_len, 0, (struct sockaddr *)&kernel,
		   sizeof(kernel)) < 0)
		return -errno;
	return 0;
}

/* Starts an event of the proc source for process @pid at kernel time @mono_ns. */
static void begin_event(struct source *src, const char *category, const char *action, uint32_t pid,
			uint64_t mono_ns)
{
	struct event *ev = src->ev;
	char ts[40];

	event_reset(ev);
	event_set_cstr(ev, F_EVENT_KIND, "event");
	event_set_cstr(ev, F_EVENT_CATEGORY, category);
	event_set_cstr(ev, F_EVENT_ACTION, action);
	event_set_int(ev, F_PROCESS_PID, pid);
	/* the kernel stamps each event with CLOCK_MONOTONIC; a backlog keeps its real times */
	format_timestamp(mono_ns ? mono_ns + src->mono_to_real : clock_ns(CLOCK_REALTIME), ts);
	event_set_cstr(ev, F_TIMESTAMP, ts);
}

static int emit(struct source *src)
{
	if (agent_emit(src->agent, src->ev) < 0)
		src->counters.emit_failed++;
	return 1;
}

static void cache_result(struct source *src, int err)
{
	if (err)
		src->counters.cache_failed++;
}

static int on_proc_fork(struct source *src, const struct proc_event *pe)
{
	const struct fork_proc_event *f = &pe->event_data.fork;
	uint32_t child = (uint32_t)f->child_tgid, parent = (uint32_t)f->parent_tgid;
	uint32_t ppid;
	uint64_t start;

	if (f->child_pid != f->child_tgid || f->child_tgid <= 0)
		return 0; /* a new thread, not a new process */
	if (proc_read_start((int)child, &ppid, &start) < 0) {
		/* gone already: its start time is the fork's, in ticks after boot */
		start = (pe->timestamp_ns + src->mono_to_boot) / src->tick_ns;
	}
	if (src->agent->cache)
		cache_result(src, proc_cache_fork(src->agent->cache, parent, child, start));
	begin_event(src, "process", "fork", child, pe->timestamp_ns);
	event_set_int(src->ev, F_PROCESS_PARENT_PID, parent);
	return emit(src);
}

/*
 * The process exec'd but was gone before /proc could say into what: the image the cache
 * holds from before the exec is not this one, so forget it rather than report it.
 */
static void forget_image(struct source *src, uint32_t pid)
{
	struct proc_cache *cache = src->agent->cache;
	const struct proc_info *known = cache ? proc_cache_get(cache, pid) : NULL;
	struct proc_info info;

	if (!known)
		return;
	info = *known;
	info.executable = NULL;
	info.command_line = NULL;
	info.command_line_truncated = false;
	cache_result(src, proc_cache_put(cache, &info));
}

static int on_proc_exec(struct source *src, const struct proc_event *pe)
{
	uint32_t pid = (uint32_t)pe->event_data.exec.process_tgid;
	struct proc_info info;
	bool cut = false;
	int err;

	if (pe->event_data.exec.process_tgid <= 0)
		return 0;
	err = proc_read_info_args((int)pid, &info, &src->args, &cut);
	if (err || !info.executable) {
		/* gone, or a zombie already: what it ran is lost */
		src->counters.lost_details++;
		if (err)
			forget_image(src, pid);
	}
	if (!err && src->agent->cache)
		cache_result(src, proc_cache_put(src->agent->cache, &info));
	begin_event(src, "process", "exec", pid, pe->timestamp_ns);
	if (!err && src->args.len > 0) {
		event_set_list_nulsep(src->ev, F_PROCESS_ARGS, src->args.data, src->args.len);
		if (cut)
			event_mark_truncated(src->ev, F_PROCESS_ARGS);
		else
			event_set_int(src->ev, F_PROCESS_ARGS_COUNT,
				      event_list_count(src->ev, F_PROCESS_ARGS));
	}
	proc_info_clear(&info);
	return emit(src);
}

/* Exit status as a shell reports it: the code, or 128 + signal when killed by one. */
static int64_t decode_exit(uint32_t code)
{
	if ((code & 0x7f) == 0)
		return (code >> 8) & 0xff;
	return 128 + (code & 0x7f);
}

static int on_proc_exit(struct source *src, const struct proc_event *pe)
{
	const struct exit_proc_event *x = &pe->event_data.exit;
	uint32_t pid = (uint32_t)x->process_tgid;

	if (x->process_pid != x->process_tgid || x->process_tgid <= 0)
		return 0; /* a thread ends; the process lives on */
	begin_event(src, "process", "exit", pid, pe->timestamp_ns);
	event_set_int(src->ev, F_PROCESS_EXIT_CODE, decode_exit(x->exit_code));
	emit(src);
	if (src->agent->cache)
		proc_cache_exit(src->agent->cache, pid);
	return 1;
}

/* setuid and setgid families: report the new id, then remember it for later events. */
static int on_id_change(struct source *src, const struct proc_event *pe, bool uid)
{
	const struct id_proc_event *e = &pe->event_data.id;
	struct proc_cache *cache = src->agent->cache;
	const struct proc_info *known;
	uint32_t pid = (uint32_t)e->process_tgid;
	uint32_t real = uid ? e->r.ruid : e->r.rgid, eff = uid ? e->e.euid : e->e.egid;
	char text[16];
	int n;

	/* glibc changes every thread; the leader's event stands for the process */
	if (e->process_pid != e->process_tgid || e->process_tgid <= 0)
		return 0;
	begin_event(src, "host", uid ? "setuid" : "setgid", pid, pe->timestamp_ns);
	n = snprintf(text, sizeof(text), "%u", eff);
	if (n > 0 && (size_t)n < sizeof(text))
		event_set_cstr(src->ev, uid ? F_USER_CHANGES_ID : F_GROUP_CHANGES_ID, text);
	emit(src);

	known = cache ? proc_cache_get(cache, pid) : NULL;
	if (known) {
		struct proc_info info = *known;
		if (uid) {
			info.uid = real;
			info.euid = eff;
		} else {
			info.gid = real;
			info.egid = eff;
		}
		cache_result(src, proc_cache_put(cache, &info));
	}
	return 1;
}

static int on_ptrace(struct source *src, const struct proc_event *pe)
{
	const struct ptrace_proc_event *t = &pe->event_data.ptrace;
	struct proc_cache *cache = src->agent->cache;
	const struct proc_info *target;

	/* tracer 0 is a detach; only attaching is an act worth reporting */
	if (t->tracer_tgid <= 0 || t->process_tgid <= 0)
		return 0;
	begin_event(src, "process", "ptrace", (uint32_t)t->tracer_tgid, pe->timestamp_ns);
	event_set_int(src->ev, F_PROCESS_TARGET_PID, t->process_tgid);
	target = cache ? proc_cache_get(cache, (uint32_t)t->process_tgid) : NULL;
	if (target && target->executable)
		event_set_cstr(src->ev, F_PROCESS_TARGET_EXECUTABLE, target->executable);
	return emit(src);
}

/* Bytes of event_data that event type @what needs, or 0 for types this source ignores. */
static size_t event_data_need(uint32_t what)
{
	switch (what) {
	case PROC_EVENT_NONE:
		return sizeof(((struct proc_event *)0)->event_data.ack);
	case PROC_EVENT_FORK:
		return sizeof(struct fork_proc_event);
	case PROC_EVENT_EXEC:
		return sizeof(struct exec_proc_event);
	case PROC_EVENT_UID:
	case PROC_EVENT_GID:
		return sizeof(struct id_proc_event);
	case PROC_EVENT_PTRACE:
		return sizeof(struct ptrace_proc_event);
	case PROC_EVENT_EXIT:
		/* the parent fields came later; the ones used here were always there */
		return offsetof(struct exit_proc_event, parent_pid);
	default:
		return 0;
	}
}

/* Handles one connector message; returns the number of events emitted (0 or 1). */
static int handle_message(struct source *src, const struct cn_msg *cn_unaligned, size_t avail)
{
	struct cn_msg cn;
	struct proc_event pe;
	size_t head = offsetof(struct proc_event, event_data), need;

	if (avail < sizeof(cn)) {
		src->counters.malformed++;
		return 0;
	}
	memcpy(&cn, cn_unaligned, sizeof(cn));
	if (cn.id.idx != CN_IDX_PROC || cn.id.val != CN_VAL_PROC || cn.len > avail - sizeof(cn) ||
	    cn.len < head) {
		src->counters.malformed++;
		return 0;
	}
	memset(&pe, 0, sizeof(pe));
	memcpy(&pe, (const char *)cn_unaligned + sizeof(cn),
	       cn.len < sizeof(pe) ? cn.len : sizeof(pe));
	need = event_data_need(pe.what);
	if (need == 0)
		return 0; /* sid, comm, coredump: nothing this source reports */
	if (cn.len < head + need) {
		src->counters.malformed++;
		return 0;
	}

	switch (pe.what) {
	case PROC_EVENT_NONE:
		/*
		 * The answer to a subscription, multicast to every listener; the kernel rewrites
		 * seq but keeps ack + 1, which tells ours apart.
		 */
		if (cn.ack == src->nonce + 1) {
			src->acked = true;
			src->ack_err = (int)pe.event_data.ack.err;
		}
		return 0;
	case PROC_EVENT_FORK:
		return on_proc_fork(src, &pe);
	case PROC_EVENT_EXEC:
		return on_proc_exec(src, &pe);
	case PROC_EVENT_UID:
		return on_id_change(src, &pe, true);
	case PROC_EVENT_GID:
		return on_id_change(src, &pe, false);
	case PROC_EVENT_PTRACE:
		return on_ptrace(src, &pe);
	case PROC_EVENT_EXIT:
		return on_proc_exit(src, &pe);
	default:
		return 0;
	}
}

/* Handles one received datagram of @len bytes in src->rx. */
static int handle_datagram(struct source *src, size_t len)
{
	int handled = 0;
	size_t off = 0;

	while (off < len && len - off >= sizeof(struct nlmsghdr)) {
		struct nlmsghdr h;

		memcpy(&h, src->rx.bytes + off, sizeof(h));
		if (h.nlmsg_len < NLMSG_HDRLEN || h.nlmsg_len > len - off) {
			src->counters.malformed++;
			break;
		}
		if (h.nlmsg_type != NLMSG_ERROR && h.nlmsg_type != NLMSG_NOOP)
			handled += handle_message(
			    src, (const struct cn_msg *)(src->rx.bytes + off + NLMSG_HDRLEN),
			    h.nlmsg_len - NLMSG_HDRLEN);
		off += NLMSG_ALIGN(h.nlmsg_len);
	}
	return handled;
}

/*
 * Reads what is queued without blocking, at most @budget datagrams. Returns the number of
 * events emitted or -errno on a socket failure.
 */
static int drain(struct source *src, int budget)
{
	int handled = 0;

	refresh_clocks(src);
	while (budget-- > 0) {
		struct sockaddr_nl from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(src->fd, src->rx.bytes, sizeof(src->rx.bytes), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &fromlen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == ENOBUFS) {
				/* the kernel dropped events: count it, the stream goes on */
				src->counters.overruns++;
				continue;
			}
			return -errno;
		}
		if (fromlen < sizeof(from) || from.nl_pid != 0) {
			src->counters.foreign++;
			continue;
		}
		handled += handle_datagram(src, (size_t)n);
	}
	return handled;
}

static int proc_poll(struct source *src, int timeout_ms)
{
	struct pollfd pfd = {.fd = src->fd, .events = POLLIN};
	int ready = poll(&pfd, 1, timeout_ms);

	if (ready < 0)
		return -errno;
	if (ready == 0)
		return 0;
	return drain(src, PROC_POLL_BUDGET);
}

/* Waits for the kernel's answer to LISTEN; events that come first are handled as usual. */
static int wait_for_ack(struct source *src)
{
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + PROC_ACK_TIMEOUT_MS * 1000000ull;

	while (!src->acked) {
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		struct pollfd pfd = {.fd = src->fd, .events = POLLIN};
		int ready, err;

		if (now >= deadline)
			return -ETIMEDOUT;
		ready = poll(&pfd, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (ready < 0 && errno != EINTR)
			return -errno;
		if (ready > 0) {
			err = drain(src, PROC_POLL_BUDGET);
			if (err < 0)
				return err;
		}
	}
	return src->ack_err ? -src->ack_err : 0;
}

static void proc_close(struct source *src)
{
	if (!src)
		return;
	if (src->listening)
		send_mcast_op(src, PROC_CN_MCAST_IGNORE); /* balances the kernel's listener count */
	if (src->fd >= 0)
		close(src->fd);
	buf_release(&src->args);
	event_free(src->ev);
	free(src);
}

static int proc_open(struct agent *agent, const char *arg, struct source **out, char *err,
		     size_t errlen)
{
	struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC};
	int rcvbuf = PROC_RCVBUF_BYTES;
	struct source *src;
	long ticks;
	int ret;

	*out = NULL;
	src = calloc(1, sizeof(*src));
	if (!src) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	src->agent = agent;
	src->fd = -1;
	buf_init(&src->args, PROC_SCAN_CMDLINE_MAX);
	src->nonce = (uint32_t)getpid() << 12 ^ (uint32_t)clock_ns(CLOCK_MONOTONIC);
	ticks = sysconf(_SC_CLK_TCK);
	src->tick_ns =
	    ticks > 0 && ticks <= 1000000000L ? 1000000000ull / (uint64_t)ticks : 10000000ull;
	src->ev = event_new();
	if (!src->ev) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto out_close;
	}

	src->fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
	if (src->fd < 0) {
		ret = -errno;
		snprintf(err, errlen,
			 "netlink connector socket: %s (kernel without CONFIG_CONNECTOR?)",
			 strerror(errno));
		goto out_close;
	}
	/* a burst of forks must fit while the agent is busy; root may pass rmem_max */
	if (setsockopt(src->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
		setsockopt(src->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (bind(src->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		ret = -errno;
		snprintf(err, errlen, "joining the proc connector group: %s%s", strerror(errno),
			 errno == EPERM ? " (needs CAP_NET_ADMIN)" : "");
		goto out_close;
	}
	ret = send_mcast_op(src, PROC_CN_MCAST_LISTEN);
	if (ret < 0) {
		snprintf(err, errlen, "subscribing to process events: %s", strerror(-ret));
		goto out_close;
	}
	src->listening = true;
	ret = wait_for_ack(src);
	if (ret == -ETIMEDOUT) {
		snprintf(err, errlen,
			 "no answer from the proc connector (kernel without "
			 "CONFIG_PROC_EVENTS, or not in the initial user, pid and "
			 "network namespaces)");
		goto out_close;
	}
	if (ret < 0) {
		snprintf(err, errlen, "the proc connector refused the subscription: %s",
			 strerror(-ret));
		goto out_close;
	}
	*out = src;
	return 0;

out_close:
	proc_close(src);
	return ret;
}

static int proc_metrics(struct source *src, struct buf *out)
{
	const struct proc_counters *c = &src->counters;

	/*
	 * drops: events lost outright (the kernel's count of overflows is per episode, not per
	 * event). proc_connector: the rest, such as execs whose details were gone.
	 */
	return buf_printf(out,
			  ",\"drops\":{\"kernel\":{\"overruns\":%llu},"
			  "\"user\":{\"malformed\":%llu,\"emit_failed\":%llu}}"
			  ",\"proc_connector\":{\"overruns\":%llu,\"lost_details\":%llu,"
			  "\"foreign\":%llu,\"cache_failed\":%llu}"
			  ",\"missing\":" PROC_MISSING,
			  (unsigned long long)c->overruns, (unsigned long long)c->malformed,
			  (unsigned long long)c->emit_failed, (unsigned long long)c->overruns,
			  (unsigned long long)c->lost_details, (unsigned long long)c->foreign,
			  (unsigned long long)c->cache_failed);
}

const struct source_ops source_proc_ops = {
    .name = "proc",
    .open = proc_open,
    .poll = proc_poll,
    .metrics = proc_metrics,
    .close = proc_close,
};
