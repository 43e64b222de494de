/*
 * The HTTP side of vigil-server: libmicrohttpd with a thread pool, the route table, capped
 * request bodies (413 past the cap, decided before the bytes are kept), authentication
 * before a body is accepted, JSON replies, and the audit record of every admin action.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/bundle.h"
#include "lib/event_json.h"
#include "proto.h"
#include "server.h"

enum auth_kind { AUTH_NONE, AUTH_AGENT, AUTH_ADMIN };
enum body_kind { BODY_NONE, BODY_SMALL, BODY_UPLOAD, BODY_RELEASE };
enum arg_kind { ARG_NAME, ARG_HASH, ARG_NUMBER };

struct route {
	const char *method;
	const char *pattern; /* '*' segments are parameters */
	enum auth_kind auth;
	enum store_role role;
	enum body_kind body;
	enum arg_kind arg_kind[2];
	route_fn fn;
};

/* Path segments after /api/v1/. One route a line: a table reads best as one. */
/* clang-format off */
static const struct route routes[] = {
    {"POST", "enroll", AUTH_NONE, 0, BODY_SMALL, {0}, api_enroll},
    {"POST", "agents/*/heartbeat", AUTH_AGENT, 0, BODY_SMALL, {ARG_NAME}, api_heartbeat},
    {"POST", "agents/*/alerts", AUTH_AGENT, 0, BODY_UPLOAD, {ARG_NAME}, api_alerts},
    {"POST", "agents/*/events", AUTH_AGENT, 0, BODY_UPLOAD, {ARG_NAME}, api_events},
    {"GET", "bundles/*", AUTH_NONE, 0, BODY_NONE, {ARG_HASH}, api_bundle},
    {"HEAD", "bundles/*", AUTH_NONE, 0, BODY_NONE, {ARG_HASH}, api_bundle},
    {"GET", "health", AUTH_NONE, 0, BODY_NONE, {0}, api_health},

    {"GET", "admin/agents", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_agents},
    {"GET", "admin/agents/*", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {ARG_NAME}, admin_agent_show},
    {"PUT", "admin/agents/*", AUTH_ADMIN, ROLE_OPERATOR, BODY_SMALL, {ARG_NAME}, admin_agent_update},
    {"GET", "admin/groups", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_groups},
    {"GET", "admin/groups/*", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {ARG_NAME}, admin_group_show},
    {"PUT", "admin/groups/*", AUTH_ADMIN, ROLE_OPERATOR, BODY_SMALL, {ARG_NAME}, admin_group_put},
    {"GET", "admin/releases", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_releases},
    {"GET", "admin/releases/*", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {ARG_HASH}, admin_release_show},
    {"POST", "admin/releases", AUTH_ADMIN, ROLE_OPERATOR, BODY_RELEASE, {0}, admin_release_create},
    {"GET", "admin/rollouts", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_rollouts},
    {"GET", "admin/rollouts/*", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {ARG_NUMBER}, admin_rollout_show},
    {"POST", "admin/rollouts", AUTH_ADMIN, ROLE_OPERATOR, BODY_SMALL, {0}, admin_rollout_start},
    {"POST", "admin/rollouts/*/*", AUTH_ADMIN, ROLE_OPERATOR, BODY_SMALL, {ARG_NUMBER, ARG_NAME}, admin_rollout_action},
    {"POST", "admin/emergency-stop", AUTH_ADMIN, ROLE_OPERATOR, BODY_SMALL, {0}, admin_emergency_stop},
    {"GET", "admin/alerts", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_alerts},
    {"GET", "admin/events", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_events},
    {"GET", "admin/decisions", AUTH_ADMIN, ROLE_VIEWER, BODY_NONE, {0}, admin_decisions},
    {"GET", "admin/audit", AUTH_ADMIN, ROLE_ADMIN, BODY_NONE, {0}, admin_audit},
    {"GET", "admin/tokens", AUTH_ADMIN, ROLE_ADMIN, BODY_NONE, {0}, admin_tokens},
    {"POST", "admin/tokens", AUTH_ADMIN, ROLE_ADMIN, BODY_SMALL, {0}, admin_token_create},
    {"DELETE", "admin/tokens/*", AUTH_ADMIN, ROLE_ADMIN, BODY_NONE, {ARG_NAME}, admin_token_revoke},
    {"POST", "admin/enrollment-tokens", AUTH_ADMIN, ROLE_ADMIN, BODY_SMALL, {0}, admin_enroll_token_create},
};
/* clang-format on */

/* The console's two files, outside the API. */
static const struct route console_routes[] = {
    {"GET", "/console", AUTH_NONE, 0, BODY_NONE, {0}, console_page},
    {"GET", "/console/", AUTH_NONE, 0, BODY_NONE, {0}, console_page},
    {"GET", "/console/app.js", AUTH_NONE, 0, BODY_NONE, {0}, console_script},
};

#define API_PREFIX "/api/v1/"
/* Bytes of an oversized body without a length read and dropped before the connection is
 * closed instead of answered. */
#define HTTP_MAX_DISCARD (64u * 1024u * 1024u)

int json_str(struct buf *b, const char *s)
{
	return json_append_string(b, s, strlen(s));
}

int reply_error(struct reply *rp, unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	rp->status = status;
	buf_reset(&rp->body);
	if (buf_append_str(&rp->body, "{\"error\":") || json_str(&rp->body, msg) ||
	    buf_append_str(&rp->body, "}\n"))
		buf_reset(&rp->body);
	snprintf(rp->audit, sizeof(rp->audit), "%s", msg);
	return 0;
}

void reply_json(struct reply *rp, unsigned status)
{
	rp->status = status;
	buf_reset(&rp->body);
}

int reply_store_error(struct reply *rp, int err, const char *what)
{
	if (err == -ENOENT)
		return reply_error(rp, 404, "no such %s", what);
	if (err == -EEXIST)
		return reply_error(rp, 409, "%s already exists", what);
	if (err == -E2BIG)
		return reply_error(rp, 500, "the reply on %s is too large: ask for fewer (limit)",
				   what);
	return reply_error(rp, 500, "store failure on %s", what);
}

const char *request_query(struct request *rq, const char *key)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *request_header(struct request *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

static bool arg_ok(enum arg_kind k, const char *s, size_t n)
{
	switch (k) {
	case ARG_HASH:
		return proto_hash_ok(s, n);
	case ARG_NUMBER:
		if (n == 0 || n > 18)
			return false;
		for (size_t i = 0; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
		return true;
	default:
		return proto_name_ok(s, n);
	}
}

/*
 * Matches @path (after the prefix) against @r, copying parameters into @rq->arg. Returns 1
 * on a match, 0 on none, -1 when the shape matches but a parameter is malformed.
 */
static int route_match(const struct route *r, const char *path, struct request *rq)
{
	const char *p = r->pattern, *s = path;
	int nargs = 0;

	while (*p) {
		const char *pe = strchr(p, '/'), *se = strchr(s, '/');
		size_t plen = pe ? (size_t)(pe - p) : strlen(p);
		size_t slen = se ? (size_t)(se - s) : strlen(s);

		if (plen == 1 && p[0] == '*') {
			if (slen == 0 || nargs >= 2)
				return 0;
			if (slen >= sizeof(rq->arg[0]) || !arg_ok(r->arg_kind[nargs], s, slen))
				return -1;
			memcpy(rq->arg[nargs], s, slen);
			rq->arg[nargs][slen] = '\0';
			nargs++;
		} else if (plen != slen || memcmp(p, s, plen) != 0) {
			return 0;
		}
		if (!pe != !se)
			return 0;
		if (!pe)
			return 1;
		p = pe + 1;
		s = se + 1;
	}
	return 0;
}

static size_t body_cap(const struct server *srv, enum body_kind k)
{
	switch (k) {
	case BODY_SMALL:
		return srv->cfg.max_body;
	case BODY_UPLOAD:
		return srv->cfg.max_upload;
	case BODY_RELEASE:
		return BUNDLE_MAX_BYTES;
	default:
		return 0;
	}
}

static enum MHD_Result send_reply(struct request *rq, struct reply *rp)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (rp->fd >= 0) {
		resp = MHD_create_response_from_fd64(rp->fd_size, rp->fd);
		if (!resp) {
			close(rp->fd);
			rp->fd = -1;
			return MHD_NO;
		}
		rp->fd = -1; /* the response owns it now */
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
					"application/octet-stream");
	} else {
		resp = MHD_create_response_from_buffer(
		    rp->body.len, rp->body.data ? rp->body.data : "", MHD_RESPMEM_MUST_COPY);
		if (!resp)
			return MHD_NO;
		if (rp->body.len)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
						rp->content_type ? rp->content_type
								 : "application/json");
	}
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	if (rp->csp) {
		MHD_add_response_header(
		    resp, "Content-Security-Policy",
		    "default-src 'none'; script-src 'self'; connect-src 'self'; "
		    "style-src 'unsafe-inline'; frame-ancestors 'none'; "
		    "base-uri 'none'; form-action 'none'");
		MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	}
	if (rp->etag[0])
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, rp->etag);
	if (rp->immutable)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL,
					"public, max-age=31536000, immutable");
	else
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(rq->conn, rp->status, resp);
	MHD_destroy_response(resp);
	rq->answered = true;
	return ret;
}

static void reply_init(struct reply *rp)
{
	memset(rp, 0, sizeof(*rp));
	rp->fd = -1;
	rp->status = 500;
	buf_init(&rp->body, SERVER_MAX_REPLY);
}

static void reply_release(struct reply *rp)
{
	buf_release(&rp->body);
	if (rp->fd >= 0)
		close(rp->fd);
}

static int64_t now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* Audits admin actions (everything but reads) and every refusal of the admin API. */
static void audit_if_needed(struct request *rq, const struct reply *rp)
{
	char target[STORE_TOKEN_BYTES * 2 + 2], action[512];

	if (!rq->route || rq->route->auth != AUTH_ADMIN)
		return;
	if (strcmp(rq->method, "GET") == 0 && rp->status != 401 && rp->status != 403)
		return;
	snprintf(target, sizeof(target), "%s%s%s", rq->arg[0], rq->arg[1][0] ? "/" : "",
		 rq->arg[1]);
	snprintf(action, sizeof(action), "%s %s", rq->method, rq->url);
	audit_record(rq->srv, &rq->who, action, target, rp->status, rp->audit, rq->now);
}

/* Answers now with @rp (used before the body is read: 401, 403, 404, 413). */
static enum MHD_Result answer_early(struct request *rq, struct reply *rp)
{
	enum MHD_Result ret;

	audit_if_needed(rq, rp);
	ret = send_reply(rq, rp);
	reply_release(rp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct server *srv = cls;
	struct request *rq = *con_cls;
	struct reply rp;
	enum MHD_Result ret;

	if (!rq) {
		/* headers only: route, authenticate, check the announced size */
		const char *cl;
		bool method_seen = false, bad_arg = false;

		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		rq->srv = srv;
		rq->conn = conn;
		rq->method = method;
		rq->url = url;
		rq->now = now_seconds();
		buf_init(&rq->body, 0);
		reply_init(&rp);
		for (size_t i = 0; i < sizeof(console_routes) / sizeof(console_routes[0]); i++) {
			if (strcmp(url, console_routes[i].pattern) != 0)
				continue;
			if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
				rq->route = &console_routes[i];
			else
				method_seen = true;
		}
		if (!rq->route && strncmp(url, API_PREFIX, strlen(API_PREFIX)) == 0) {
			for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
				memset(rq->arg, 0, sizeof(rq->arg));
				int m = route_match(&routes[i], url + strlen(API_PREFIX), rq);
				if (m <= 0) {
					bad_arg |= m < 0;
					continue;
				}
				if (strcmp(routes[i].method, method) != 0) {
					method_seen = true;
					continue;
				}
				rq->route = &routes[i];
				break;
			}
		}
		if (!rq->route) {
			if (bad_arg)
				reply_error(&rp, 400, "malformed path parameter in %s", url);
			else if (method_seen)
				reply_error(&rp, 405, "method %s not allowed on %s", method, url);
			else
				reply_error(&rp, 404, "no such endpoint: %s", url);
			return answer_early(rq, &rp);
		}
		if (rq->route->auth == AUTH_ADMIN && auth_admin(rq, rq->route->role, &rp) != 0)
			return answer_early(rq, &rp);
		if (rq->route->auth == AUTH_AGENT && auth_agent(rq, &rp) != 0)
			return answer_early(rq, &rp);
		rq->body.max = body_cap(srv, rq->route->body);
		cl = request_header(rq, MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			char *end;
			unsigned long long n;
			errno = 0;
			n = strtoull(cl, &end, 10);
			if (errno || *end || end == cl || n > rq->body.max) {
				reply_error(&rp, 413, "request body larger than %zu bytes",
					    rq->body.max);
				return answer_early(rq, &rp);
			}
		}
		reply_release(&rp);
		return MHD_YES;
	}
	if (rq->answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->too_big && buf_append(&rq->body, upload, *upload_size) != 0) {
			rq->too_big = true;
			buf_release(&rq->body);
		}
		if (rq->too_big) {
			/* a body without a length that outgrew the cap is read to its end and
			 * dropped, then refused; one that goes on and on loses its connection */
			rq->discarded += *upload_size;
			if (rq->discarded > HTTP_MAX_DISCARD)
				return MHD_NO;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	reply_init(&rp);
	if (rq->too_big) {
		reply_error(&rp, 413, "request body larger than %zu bytes", rq->body.max);
		return answer_early(rq, &rp);
	}
	rq->route->fn(rq, &rp);
	audit_if_needed(rq, &rp);
	ret = send_reply(rq, &rp);
	reply_release(&rp);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;

	if (!rq)
		return;
	buf_release(&rq->body);
	free(rq);
	*con_cls = NULL;
}

/* Parses "ADDR:PORT" or "[ADDR6]:PORT" into @ss. Returns 0 or -EINVAL. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *hs = s;
	size_t hl;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port > 65535)
		return -EINVAL;
	if (hl == 0 || strcmp(host, "*") == 0)
		memcpy(host, "0.0.0.0", 8);
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

static void log_mhd(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
	const struct server *srv = cls;
	if (srv->cfg.quiet)
		return;
	fprintf(stderr, "vigil-server: http: ");
	vfprintf(stderr, fmt, ap);
}

int http_start(struct server *srv, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	const union MHD_DaemonInfo *info;

	if (parse_listen(srv->cfg.listen, &ss, &sslen)) {
		snprintf(err, errlen, "--listen %s: want ADDR:PORT or [ADDR]:PORT",
			 srv->cfg.listen);
		return -EINVAL;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES)
		flags |= MHD_USE_EPOLL;
	if (srv->tls_cert.len) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			snprintf(err, errlen, "this libmicrohttpd has no TLS");
			return -ENOTSUP;
		}
		flags |= MHD_USE_TLS;
	}
	/* the PEM options only with TLS: libmicrohttpd complains of them otherwise */
	struct MHD_OptionItem tls[] = {
	    {MHD_OPTION_HTTPS_MEM_CERT, 0, srv->tls_cert.data},
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, srv->tls_key.data},
	    {MHD_OPTION_END, 0, NULL},
	};
	if (!srv->tls_cert.len)
		tls[0].option = MHD_OPTION_END;
	srv->mhd = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, log_mhd, srv,
	    MHD_OPTION_ARRAY, tls, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)srv->cfg.threads, MHD_OPTION_NOTIFY_COMPLETED,
	    on_completed, srv, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000, MHD_OPTION_LISTEN_BACKLOG_SIZE,
	    (unsigned)4096, MHD_OPTION_END);
	if (!srv->mhd) {
		snprintf(err, errlen, "cannot listen on %s%s", srv->cfg.listen,
			 srv->tls_cert.len ? " (or the TLS certificate and key do not load)" : "");
		return -EADDRINUSE;
	}
	info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
	srv->port = info ? info->port : 0;
	return 0;
}

void http_stop(struct server *srv)
{
	if (srv->mhd) {
		MHD_stop_daemon(srv->mhd);
		srv->mhd = NULL;
	}
}
