/*
 * The embedded store: one SQLite database (DIR/vigil.db) in WAL mode, one connection whose
 * prepared statements are kept, serialised by a mutex; heartbeats share commits and a thread
 * keeps the log synced so checkpoints stay short. See store.h for the contract.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include "store.h"

#define DB_FILE		  "vigil.db"
#define DB_PATH_BYTES	  4096
#define SCHEMA_VERSION_DB "1"
/* Pages in the write-ahead log past which a commit copies them into the database. */
#define STORE_CHECKPOINT_PAGES 4000
/* Milliseconds between background syncs of the write-ahead log. */
#define STORE_WAL_SYNC_MS 10L
/* Milliseconds to wait for a lock held by another process. */
#define STORE_BUSY_MS 5000

/* A store made before sensor releases: the agents' sensor column is added (empty). */
static int add_sensor_column(sqlite3 *db, char **msg)
{
	sqlite3_stmt *q = NULL;
	int rc = sqlite3_prepare_v2(db, "SELECT sensor FROM agents LIMIT 0", -1, &q, NULL);

	sqlite3_finalize(q);
	if (rc == SQLITE_OK)
		return rc;
	return sqlite3_exec(db, "ALTER TABLE agents ADD COLUMN sensor TEXT NOT NULL DEFAULT ''",
			    NULL, NULL, msg);
}

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS tokens(id TEXT PRIMARY KEY, kind INTEGER NOT NULL,"
    " secret_hash BLOB NOT NULL, name TEXT NOT NULL, role INTEGER NOT NULL, grp TEXT NOT NULL,"
    " uses_left INTEGER NOT NULL, created INTEGER NOT NULL, expires INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS agents(id TEXT PRIMARY KEY, secret_hash BLOB NOT NULL,"
    " grp TEXT NOT NULL, enrolled_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,"
    " heartbeats INTEGER NOT NULL, has_content INTEGER NOT NULL, content_version INTEGER NOT NULL,"
    " sensor_version TEXT NOT NULL, uptime INTEGER NOT NULL, restarts INTEGER NOT NULL,"
    " crash_loop_reverts INTEGER NOT NULL, quarantined TEXT NOT NULL, liveness_ok INTEGER NOT NULL,"
    " liveness_failed INTEGER NOT NULL, liveness_last INTEGER NOT NULL, drops INTEGER NOT NULL,"
    " alerts INTEGER NOT NULL, cpu REAL NOT NULL, rss INTEGER NOT NULL, hostname TEXT NOT NULL,"
    " track BLOB NOT NULL, sensor TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS agents_grp ON agents(grp, id);"
    "CREATE TABLE IF NOT EXISTS groups(name TEXT PRIMARY KEY, policy TEXT NOT NULL,"
    " updated INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS releases(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " hash TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,"
    " size INTEGER NOT NULL, created INTEGER NOT NULL, created_by TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rollouts(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " release_hash TEXT NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL,"
    " updated INTEGER NOT NULL, meta TEXT NOT NULL, controller TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS decisions(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " rollout_id INTEGER NOT NULL, at INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS decisions_rollout ON decisions(rollout_id, id);"
    "CREATE TABLE IF NOT EXISTS alerts(agent_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " at INTEGER NOT NULL, received INTEGER NOT NULL, rule_id TEXT NOT NULL, body TEXT NOT NULL,"
    " UNIQUE(agent_id, seq));"
    "CREATE INDEX IF NOT EXISTS alerts_at ON alerts(at);"
    "CREATE INDEX IF NOT EXISTS alerts_rule ON alerts(rule_id, at);"
    "CREATE TABLE IF NOT EXISTS events(agent_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " at INTEGER NOT NULL, received INTEGER NOT NULL, rule_id TEXT NOT NULL, body TEXT NOT NULL,"
    " UNIQUE(agent_id, seq));"
    "CREATE INDEX IF NOT EXISTS events_at ON events(at);"
    "CREATE TABLE IF NOT EXISTS audit(id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,"
    " who TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, result TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '" SCHEMA_VERSION_DB "');";

#define AGENT_COLS                                                                                 \
	"id, secret_hash, grp, enrolled_at, last_seen, heartbeats, has_content, content_version,"  \
	" sensor_version, uptime, restarts, crash_loop_reverts, quarantined, liveness_ok,"         \
	" liveness_failed, liveness_last, drops, alerts, cpu, rss, hostname, track, sensor"

/* Statements prepared once and kept. */
enum stmt {
	S_META_GET,
	S_META_SET,
	S_TOKEN_ADD,
	S_TOKEN_GET,
	S_TOKEN_USE,
	S_TOKEN_LIST,
	S_TOKEN_REVOKE,
	S_AGENT_ADD,
	S_AGENT_GET,
	S_AGENT_HB,
	S_AGENT_GROUP,
	S_AGENT_LIST,
	S_AGENT_LIST_GROUP,
	S_AGENT_GROUPS,
	S_GROUP_PUT,
	S_GROUP_GET,
	S_GROUP_LIST,
	S_RELEASE_ADD,
	S_RELEASE_GET,
	S_RELEASE_LIST,
	S_ROLLOUT_ADD,
	S_ROLLOUT_UPDATE,
	S_ROLLOUT_GET,
	S_ROLLOUT_LIST,
	S_DECISION_ADD,
	S_DECISION_LIST,
	S_DECISION_LIST_ALL,
	S_ALERT_ADD,
	S_EVENT_ADD,
	S_AUDIT_ADD,
	S_AUDIT_LIST,
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [S_META_SET] = "INSERT INTO meta(key, value) VALUES(?1, ?2)"
		   " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    [S_TOKEN_ADD] = "INSERT INTO tokens(id, kind, secret_hash, name, role, grp, uses_left,"
		    " created, expires, revoked) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [S_TOKEN_GET] = "SELECT id, kind, secret_hash, name, role, grp, uses_left, created,"
		    " expires, revoked FROM tokens WHERE id = ?1",
    [S_TOKEN_USE] = "UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?1 AND kind = 1"
		    " AND uses_left > 0",
    [S_TOKEN_REVOKE] = "UPDATE tokens SET revoked = 1 WHERE id = ?1",
    [S_TOKEN_LIST] = "SELECT id, kind, secret_hash, name, role, grp, uses_left, created,"
		     " expires, revoked FROM tokens ORDER BY created, id",
    [S_AGENT_ADD] = "INSERT INTO agents(" AGENT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
		    " ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)",
    [S_AGENT_GET] = "SELECT " AGENT_COLS " FROM agents WHERE id = ?1",
    [S_AGENT_HB] =
	"UPDATE agents SET last_seen = ?2, heartbeats = heartbeats + 1,"
	" has_content = ?3, content_version = ?4,"
	" sensor_version = CASE WHEN ?5 = '' THEN sensor_version ELSE ?5 END, uptime = ?6,"
	" restarts = ?7, crash_loop_reverts = ?8, quarantined = ?9, liveness_ok = ?10,"
	" liveness_failed = ?11, liveness_last = ?12, drops = ?13, alerts = ?14,"
	" cpu = ?15, rss = ?16, hostname = CASE WHEN ?17 = '' THEN hostname ELSE ?17 END,"
	" track = ?18, sensor = ?19 WHERE id = ?1",
    [S_AGENT_GROUP] = "UPDATE agents SET grp = ?2 WHERE id = ?1",
    [S_AGENT_LIST] = "SELECT " AGENT_COLS " FROM agents WHERE id > ?1 ORDER BY id LIMIT ?2",
    [S_AGENT_LIST_GROUP] = "SELECT " AGENT_COLS " FROM agents WHERE grp = ?3 AND id > ?1"
			   " ORDER BY id LIMIT ?2",
    [S_AGENT_GROUPS] = "SELECT grp, count(*) FROM agents GROUP BY grp",
    [S_GROUP_PUT] = "INSERT INTO groups(name, policy, updated) VALUES(?1, ?2, ?3)"
		    " ON CONFLICT(name) DO UPDATE SET policy = excluded.policy,"
		    " updated = excluded.updated",
    [S_GROUP_GET] = "SELECT name, policy, updated FROM groups WHERE name = ?1",
    [S_GROUP_LIST] = "SELECT name, policy, updated FROM groups ORDER BY name",
    [S_RELEASE_ADD] = "INSERT INTO releases(hash, kind, name, version, size, created,"
		      " created_by) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_RELEASE_GET] = "SELECT id, hash, kind, name, version, size, created, created_by"
		      " FROM releases WHERE hash = ?1",
    [S_RELEASE_LIST] = "SELECT id, hash, kind, name, version, size, created, created_by"
		       " FROM releases ORDER BY id",
    [S_ROLLOUT_ADD] = "INSERT INTO rollouts(release_hash, state, created, updated, meta,"
		      " controller) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_ROLLOUT_UPDATE] = "UPDATE rollouts SET state = ?2, updated = ?3, meta = ?4,"
			 " controller = ?5 WHERE id = ?1",
    [S_ROLLOUT_GET] = "SELECT id, release_hash, state, created, updated, meta, controller"
		      " FROM rollouts WHERE id = ?1",
    [S_ROLLOUT_LIST] = "SELECT id, release_hash, state, created, updated, meta, controller"
		       " FROM rollouts ORDER BY id",
    [S_DECISION_ADD] = "INSERT INTO decisions(rollout_id, at, kind, detail)"
		       " VALUES(?1, ?2, ?3, ?4)",
    [S_DECISION_LIST] = "SELECT id, rollout_id, at, kind, detail FROM decisions"
			" WHERE rollout_id = ?1 ORDER BY id DESC LIMIT ?2",
    [S_DECISION_LIST_ALL] = "SELECT id, rollout_id, at, kind, detail FROM decisions"
			    " ORDER BY id DESC LIMIT ?2",
    [S_ALERT_ADD] = "INSERT OR IGNORE INTO alerts(agent_id, seq, at, received, rule_id, body)"
		    " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_EVENT_ADD] = "INSERT OR IGNORE INTO events(agent_id, seq, at, received, rule_id, body)"
		    " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [S_AUDIT_ADD] = "INSERT INTO audit(at, who, action, target, result)"
		    " VALUES(?1, ?2, ?3, ?4, ?5)",
    [S_AUDIT_LIST] = "SELECT id, at, who, action, target, result FROM audit"
		     " ORDER BY id DESC LIMIT ?1",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

/* A heartbeat waiting to be written: the writes of concurrent heartbeats share a commit. */
struct hb_job {
	const char *id;
	const struct store_health *h;
	const void *track;
	size_t track_len;
	int64_t now;
	int ret;
	bool done;	     /* written and committed (or failed): ret is set */
	bool lead;	     /* this job's thread writes the next batch */
	pthread_cond_t wake; /* signalled when done or lead is set */
	struct hb_job *next;
};

struct sq_store {
	struct store base;
	sqlite3 *db;
	pthread_mutex_t lock;
	sqlite3_stmt *stmts[S_COUNT];
	/* the log's background sync */
	int wal_fd;
	atomic_bool wal_dirty; /* committed since the last sync */
	pthread_t sync_thread;
	bool sync_started, sync_stop;
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_wake;
	/* group commit of heartbeats */
	pthread_mutex_t hb_lock;
	struct hb_job *hb_head, **hb_tail; /* waiting for the batch being written */
	bool hb_writing;
};

static struct sq_store *sq(struct store *st)
{
	return (struct sq_store *)st;
}

static int sq_err(struct sq_store *s, int rc, const char *what)
{
	if (rc == SQLITE_CONSTRAINT)
		return -EEXIST;
	if (rc == SQLITE_NOMEM)
		return -ENOMEM;
	fprintf(stderr, "vigil-server: store: %s: %s\n", what, sqlite3_errmsg(s->db));
	return -EIO;
}

/* The statement @i, reset and unbound; called with the lock held. */
static sqlite3_stmt *stmt(struct sq_store *s, enum stmt i)
{
	sqlite3_stmt *st = s->stmts[i];
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return st;
}

static void lock(struct sq_store *s)
{
	pthread_mutex_lock(&s->lock);
}

static void unlock(struct sq_store *s)
{
	pthread_mutex_unlock(&s->lock);
}

/* Copies column @c as text into @out (@size bytes); -EINVAL when it does not fit. */
static int col_text(sqlite3_stmt *st, int c, char *out, size_t size)
{
	const unsigned char *t = sqlite3_column_text(st, c);
	size_t n = (size_t)sqlite3_column_bytes(st, c);
	if (!t)
		n = 0;
	if (n >= size)
		return -EINVAL;
	if (n)
		memcpy(out, t, n);
	out[n] = '\0';
	return 0;
}

static char *col_dup(sqlite3_stmt *st, int c)
{
	const unsigned char *t = sqlite3_column_text(st, c);
	return strdup(t ? (const char *)t : "");
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	sqlite3_bind_text(st, i, s ? s : "", -1, SQLITE_STATIC);
}

/* Runs a statement that returns no rows; returns 0 or -errno. */
static int run_done(struct sq_store *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	int ret = rc == SQLITE_DONE ? 0 : sq_err(s, rc, what);
	sqlite3_reset(st);
	return ret;
}

/* --- meta --- */

static int sq_meta_get(struct store *st, const char *key, char *out, size_t outlen)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int rc, ret;

	lock(s);
	q = stmt(s, S_META_GET);
	bind_text(q, 1, key);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ret = col_text(q, 0, out, outlen);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc, "meta_get");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_meta_set(struct store *st, const char *key, const char *value)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_META_SET);
	bind_text(q, 1, key);
	bind_text(q, 2, value);
	ret = run_done(s, q, "meta_set");
	unlock(s);
	return ret;
}

/* --- tokens --- */

static int token_row(sqlite3_stmt *q, struct store_token *t)
{
	memset(t, 0, sizeof(*t));
	if (col_text(q, 0, t->id, sizeof(t->id)) || col_text(q, 3, t->name, sizeof(t->name)) ||
	    col_text(q, 5, t->group, sizeof(t->group)) ||
	    sqlite3_column_bytes(q, 2) != STORE_SECRET_HASH)
		return -EINVAL;
	t->kind = sqlite3_column_int(q, 1) ? TOKEN_ENROLL : TOKEN_ADMIN;
	memcpy(t->secret_hash, sqlite3_column_blob(q, 2), STORE_SECRET_HASH);
	t->role = (enum store_role)sqlite3_column_int(q, 4);
	t->uses_left = sqlite3_column_int64(q, 6);
	t->created = sqlite3_column_int64(q, 7);
	t->expires = sqlite3_column_int64(q, 8);
	t->revoked = sqlite3_column_int(q, 9) != 0;
	return 0;
}

static int sq_token_add(struct store *st, const struct store_token *t)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_TOKEN_ADD);
	bind_text(q, 1, t->id);
	sqlite3_bind_int(q, 2, t->kind == TOKEN_ENROLL);
	sqlite3_bind_blob(q, 3, t->secret_hash, STORE_SECRET_HASH, SQLITE_STATIC);
	bind_text(q, 4, t->name);
	sqlite3_bind_int(q, 5, (int)t->role);
	bind_text(q, 6, t->group);
	sqlite3_bind_int64(q, 7, t->uses_left);
	sqlite3_bind_int64(q, 8, t->created);
	sqlite3_bind_int64(q, 9, t->expires);
	sqlite3_bind_int(q, 10, t->revoked);
	ret = run_done(s, q, "token_add");
	unlock(s);
	return ret;
}

static int sq_token_get(struct store *st, const char *id, struct store_token *out)
{
	struct sq_store *s = sq(st);
	struct store_token t;
	sqlite3_stmt *q;
	int rc, ret;

	lock(s);
	q = stmt(s, S_TOKEN_GET);
	bind_text(q, 1, id);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ret = token_row(q, &t);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc, "token_get");
	sqlite3_reset(q);
	unlock(s);
	if (!ret)
		*out = t;
	return ret;
}

static int sq_token_use(struct store *st, const char *id)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_TOKEN_USE);
	bind_text(q, 1, id);
	ret = run_done(s, q, "token_use");
	if (!ret && sqlite3_changes(s->db) == 0)
		ret = -EACCES;
	unlock(s);
	return ret;
}

static int sq_token_list(struct store *st, store_token_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_token t;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, S_TOKEN_LIST);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (token_row(q, &t))
			continue;
		if ((ret = cb(&t, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = sq_err(s, rc, "token_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_token_revoke(struct store *st, const char *id)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_TOKEN_REVOKE);
	bind_text(q, 1, id);
	ret = run_done(s, q, "token_revoke");
	if (!ret && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	unlock(s);
	return ret;
}

/* --- agents --- */

static void quarantined_text(const struct store_health *h, char *out, size_t size)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < h->n_quarantined && i < STORE_MAX_QUARANTINED; i++) {
		int n = snprintf(out + used, size - used, i ? ",%" PRIu64 : "%" PRIu64,
				 h->quarantined[i]);
		if (n < 0 || (size_t)n >= size - used) {
			out[used] = '\0';
			return;
		}
		used += (size_t)n;
	}
}

static void quarantined_parse(const char *s, struct store_health *h)
{
	h->n_quarantined = 0;
	while (*s && h->n_quarantined < STORE_MAX_QUARANTINED) {
		char *end;
		unsigned long long v = strtoull(s, &end, 10);
		if (end == s)
			break;
		h->quarantined[h->n_quarantined++] = v;
		s = *end == ',' ? end + 1 : end;
	}
}

/* Binds the health columns of an insert (first = 7) or heartbeat (first = 3). */
static void bind_health(sqlite3_stmt *q, int first, const struct store_health *h, char *qbuf,
			size_t qlen)
{
	quarantined_text(h, qbuf, qlen);
	sqlite3_bind_int(q, first, h->has_content);
	sqlite3_bind_int64(q, first + 1, (int64_t)h->content_version);
	bind_text(q, first + 2, h->sensor_version);
	sqlite3_bind_int64(q, first + 3, h->uptime_seconds);
	sqlite3_bind_int64(q, first + 4, h->restarts);
	sqlite3_bind_int64(q, first + 5, h->crash_loop_reverts);
	bind_text(q, first + 6, qbuf);
	sqlite3_bind_int64(q, first + 7, h->liveness_ok);
	sqlite3_bind_int64(q, first + 8, h->liveness_failed);
	sqlite3_bind_int(q, first + 9, h->liveness_last);
	sqlite3_bind_int64(q, first + 10, h->drops);
	sqlite3_bind_int64(q, first + 11, h->alerts);
	sqlite3_bind_double(q, first + 12, h->cpu_percent);
	sqlite3_bind_int64(q, first + 13, h->rss_bytes);
	bind_text(q, first + 14, h->hostname);
}

/* The sensor lane's health as one column: "BUILD;REVERTS;Q1,Q2,...". */
static void sensor_text(const struct store_health *h, char *out, size_t size)
{
	struct store_health q = {.n_quarantined = h->n_sensor_quarantined};
	char list[STORE_MAX_QUARANTINED * 21 + 1];

	memcpy(q.quarantined, h->sensor_quarantined, sizeof(q.quarantined));
	quarantined_text(&q, list, sizeof(list));
	snprintf(out, size, "%" PRIu64 ";%" PRId64 ";%s", h->sensor_build, h->sensor_reverts, list);
}

static void sensor_parse(const char *s, struct store_health *h)
{
	struct store_health q;
	char *end;

	h->sensor_build = strtoull(s, &end, 10);
	if (*end != ';')
		return;
	h->sensor_reverts = strtoll(end + 1, &end, 10);
	if (*end != ';')
		return;
	quarantined_parse(end + 1, &q);
	h->n_sensor_quarantined = q.n_quarantined;
	memcpy(h->sensor_quarantined, q.quarantined, sizeof(h->sensor_quarantined));
}

static int agent_row(sqlite3_stmt *q, struct store_agent *a)
{
	struct store_health *h = &a->health;
	char qtext[STORE_MAX_QUARANTINED * 21 + 1];
	char stext[STORE_SENSOR_TEXT_BYTES];

	memset(a, 0, sizeof(*a));
	if (col_text(q, 0, a->id, sizeof(a->id)) || col_text(q, 2, a->group, sizeof(a->group)) ||
	    sqlite3_column_bytes(q, 1) != STORE_SECRET_HASH ||
	    col_text(q, 8, h->sensor_version, sizeof(h->sensor_version)) ||
	    col_text(q, 12, qtext, sizeof(qtext)) ||
	    col_text(q, 20, h->hostname, sizeof(h->hostname)) ||
	    col_text(q, 22, stext, sizeof(stext)))
		return -EINVAL;
	sensor_parse(stext, h);
	memcpy(a->secret_hash, sqlite3_column_blob(q, 1), STORE_SECRET_HASH);
	a->track_len = (size_t)sqlite3_column_bytes(q, 21);
	if (a->track_len > STORE_TRACK_BYTES)
		a->track_len = 0;
	if (a->track_len)
		memcpy(a->track, sqlite3_column_blob(q, 21), a->track_len);
	a->enrolled_at = sqlite3_column_int64(q, 3);
	a->last_seen = sqlite3_column_int64(q, 4);
	a->heartbeats = sqlite3_column_int64(q, 5);
	h->has_content = sqlite3_column_int(q, 6) != 0;
	h->content_version = (uint64_t)sqlite3_column_int64(q, 7);
	h->uptime_seconds = sqlite3_column_int64(q, 9);
	h->restarts = sqlite3_column_int64(q, 10);
	h->crash_loop_reverts = sqlite3_column_int64(q, 11);
	quarantined_parse(qtext, h);
	h->liveness_ok = sqlite3_column_int64(q, 13);
	h->liveness_failed = sqlite3_column_int64(q, 14);
	h->liveness_last = sqlite3_column_int(q, 15);
	h->drops = sqlite3_column_int64(q, 16);
	h->alerts = sqlite3_column_int64(q, 17);
	h->cpu_percent = sqlite3_column_double(q, 18);
	h->rss_bytes = sqlite3_column_int64(q, 19);
	return 0;
}

static int sq_agent_add(struct store *st, const struct store_agent *a)
{
	struct sq_store *s = sq(st);
	char qbuf[STORE_MAX_QUARANTINED * 21 + 1];
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_AGENT_ADD);
	bind_text(q, 1, a->id);
	sqlite3_bind_blob(q, 2, a->secret_hash, STORE_SECRET_HASH, SQLITE_STATIC);
	bind_text(q, 3, a->group);
	sqlite3_bind_int64(q, 4, a->enrolled_at);
	sqlite3_bind_int64(q, 5, a->last_seen);
	sqlite3_bind_int64(q, 6, a->heartbeats);
	char stext[STORE_SENSOR_TEXT_BYTES];
	bind_health(q, 7, &a->health, qbuf, sizeof(qbuf));
	sqlite3_bind_blob(q, 22, a->track, (int)a->track_len, SQLITE_STATIC);
	sensor_text(&a->health, stext, sizeof(stext));
	bind_text(q, 23, stext);
	ret = run_done(s, q, "agent_add");
	unlock(s);
	return ret;
}

static int sq_agent_get(struct store *st, const char *id, struct store_agent *out)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int rc, ret;

	lock(s);
	q = stmt(s, S_AGENT_GET);
	bind_text(q, 1, id);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ret = agent_row(q, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc, "agent_get");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

/* Writes one heartbeat (lock held). */
static int write_heartbeat(struct sq_store *s, const struct hb_job *j)
{
	char qbuf[STORE_MAX_QUARANTINED * 21 + 1];
	sqlite3_stmt *q = stmt(s, S_AGENT_HB);
	int ret;

	bind_text(q, 1, j->id);
	sqlite3_bind_int64(q, 2, j->now);
	char stext[STORE_SENSOR_TEXT_BYTES];
	bind_health(q, 3, j->h, qbuf, sizeof(qbuf));
	sqlite3_bind_blob(q, 18, j->track ? j->track : "", (int)j->track_len, SQLITE_STATIC);
	sensor_text(j->h, stext, sizeof(stext));
	bind_text(q, 19, stext);
	ret = run_done(s, q, "agent_heartbeat");
	if (!ret && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	return ret;
}

/* Writes @batch in one transaction; on a failure, each on its own. Sets every job's ret. */
static void write_heartbeats(struct sq_store *s, struct hb_job *batch)
{
	struct hb_job *j;
	bool one = !batch->next;

	lock(s);
	if (!one && run_done(s, stmt(s, S_BEGIN), "begin") == 0) {
		bool failed = false;
		for (j = batch; j; j = j->next) {
			j->ret = write_heartbeat(s, j);
			failed |= j->ret != 0 && j->ret != -ENOENT;
		}
		if (!failed && run_done(s, stmt(s, S_COMMIT), "commit") == 0)
			goto out;
		run_done(s, stmt(s, S_ROLLBACK), "rollback");
	}
	for (j = batch; j; j = j->next)
		j->ret = write_heartbeat(s, j);
out:
	unlock(s);
}

/*
 * Group commit: a caller that finds no batch being written writes every heartbeat queued so
 * far in one transaction; the callers that arrive meanwhile queue and sleep until theirs is
 * committed. The writer wakes exactly the callers it wrote for, and hands the next batch to the
 * first of those that queued meanwhile, so nobody wakes only to sleep again. Each caller returns
 * only once its own write is committed.
 */
static int sq_agent_heartbeat(struct store *st, const char *id, const struct store_health *h,
			      const void *track, size_t track_len, int64_t now)
{
	struct sq_store *s = sq(st);
	struct hb_job job = {.id = id, .h = h, .track = track, .track_len = track_len, .now = now};
	struct hb_job *batch, *j, *next;

	if (track_len > STORE_TRACK_BYTES)
		return -EINVAL;
	pthread_cond_init(&job.wake, NULL);
	pthread_mutex_lock(&s->hb_lock);
	*s->hb_tail = &job;
	s->hb_tail = &job.next;
	if (s->hb_writing) {
		while (!job.done && !job.lead)
			pthread_cond_wait(&job.wake, &s->hb_lock);
		if (job.done)
			goto out;
	}
	/* this thread writes: the queue, with its own job in it, becomes the batch */
	batch = s->hb_head;
	s->hb_head = NULL;
	s->hb_tail = &s->hb_head;
	s->hb_writing = true;
	pthread_mutex_unlock(&s->hb_lock);
	write_heartbeats(s, batch);
	pthread_mutex_lock(&s->hb_lock);
	/* a waiter returns once it sees done: its job is not touched after that */
	for (j = batch; j; j = next) {
		next = j->next;
		j->done = true;
		if (j != &job)
			pthread_cond_signal(&j->wake);
	}
	if (s->hb_head) {
		s->hb_head->lead = true;
		pthread_cond_signal(&s->hb_head->wake);
	} else {
		s->hb_writing = false;
	}
out:
	pthread_mutex_unlock(&s->hb_lock);
	pthread_cond_destroy(&job.wake);
	return job.ret;
}

static int sq_agent_set_group(struct store *st, const char *id, const char *group)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_AGENT_GROUP);
	bind_text(q, 1, id);
	bind_text(q, 2, group);
	ret = run_done(s, q, "agent_set_group");
	if (!ret && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	unlock(s);
	return ret;
}

static int sq_agent_list(struct store *st, const char *group, const char *after, size_t limit,
			 store_agent_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_agent a;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, group ? S_AGENT_LIST_GROUP : S_AGENT_LIST);
	bind_text(q, 1, after ? after : "");
	sqlite3_bind_int64(q, 2, limit ? (int64_t)limit : -1);
	if (group)
		bind_text(q, 3, group);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (agent_row(q, &a))
			continue;
		if ((ret = cb(&a, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "agent_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_agent_groups(struct store *st,
			   int (*cb)(const char *group, int64_t agents, void *ctx), void *ctx)
{
	struct sq_store *s = sq(st);
	char g[STORE_NAME_BYTES];
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, S_AGENT_GROUPS);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (col_text(q, 0, g, sizeof(g)))
			continue;
		if ((ret = cb(g, sqlite3_column_int64(q, 1), ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "agent_groups");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

/* --- groups --- */

static int group_row(sqlite3_stmt *q, struct store_group *g)
{
	const char *p = (const char *)sqlite3_column_text(q, 1);
	char err[128];

	memset(g, 0, sizeof(*g));
	if (col_text(q, 0, g->name, sizeof(g->name)) || !p)
		return -EINVAL;
	g->updated = sqlite3_column_int64(q, 2);
	return proto_parse_policy(p, (size_t)sqlite3_column_bytes(q, 1), &g->policy, err,
				  sizeof(err));
}

static int sq_group_put(struct store *st, const struct store_group *g)
{
	struct sq_store *s = sq(st);
	struct buf pol;
	sqlite3_stmt *q;
	int ret;

	buf_init(&pol, 16384);
	ret = proto_policy_json(&g->policy, &pol);
	if (ret)
		goto out;
	lock(s);
	q = stmt(s, S_GROUP_PUT);
	bind_text(q, 1, g->name);
	bind_text(q, 2, pol.data);
	sqlite3_bind_int64(q, 3, g->updated);
	ret = run_done(s, q, "group_put");
	unlock(s);
out:
	buf_release(&pol);
	return ret;
}

static int sq_group_get(struct store *st, const char *name, struct store_group *out)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int rc, ret;

	lock(s);
	q = stmt(s, S_GROUP_GET);
	bind_text(q, 1, name);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ret = group_row(q, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc, "group_get");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_group_list(struct store *st, store_group_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_group g;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, S_GROUP_LIST);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (group_row(q, &g))
			continue;
		if ((ret = cb(&g, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "group_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

/* --- releases --- */

static int release_row(sqlite3_stmt *q, struct store_release *r)
{
	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(q, 0);
	if (col_text(q, 1, r->hash, sizeof(r->hash)) || col_text(q, 2, r->kind, sizeof(r->kind)) ||
	    col_text(q, 3, r->name, sizeof(r->name)) ||
	    col_text(q, 7, r->created_by, sizeof(r->created_by)))
		return -EINVAL;
	r->version = (uint64_t)sqlite3_column_int64(q, 4);
	r->size = sqlite3_column_int64(q, 5);
	r->created = sqlite3_column_int64(q, 6);
	return 0;
}

static int sq_release_add(struct store *st, struct store_release *r)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_RELEASE_ADD);
	bind_text(q, 1, r->hash);
	bind_text(q, 2, r->kind);
	bind_text(q, 3, r->name);
	sqlite3_bind_int64(q, 4, (int64_t)r->version);
	sqlite3_bind_int64(q, 5, r->size);
	sqlite3_bind_int64(q, 6, r->created);
	bind_text(q, 7, r->created_by);
	ret = run_done(s, q, "release_add");
	if (!ret)
		r->id = sqlite3_last_insert_rowid(s->db);
	unlock(s);
	return ret;
}

static int sq_release_get(struct store *st, const char *hash, struct store_release *out)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int rc, ret;

	lock(s);
	q = stmt(s, S_RELEASE_GET);
	bind_text(q, 1, hash);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ret = release_row(q, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc, "release_get");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_release_list(struct store *st, store_release_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_release r;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, S_RELEASE_LIST);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (release_row(q, &r))
			continue;
		if ((ret = cb(&r, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "release_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

/* --- rollouts and decisions --- */

void store_rollout_clear(struct store_rollout *r)
{
	if (!r)
		return;
	free(r->meta);
	free(r->controller);
	r->meta = NULL;
	r->controller = NULL;
}

static int rollout_row(sqlite3_stmt *q, struct store_rollout *r)
{
	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(q, 0);
	if (col_text(q, 1, r->release_hash, sizeof(r->release_hash)) ||
	    col_text(q, 2, r->state, sizeof(r->state)))
		return -EINVAL;
	r->created = sqlite3_column_int64(q, 3);
	r->updated = sqlite3_column_int64(q, 4);
	r->meta = col_dup(q, 5);
	r->controller = col_dup(q, 6);
	if (!r->meta || !r->controller) {
		store_rollout_clear(r);
		return -ENOMEM;
	}
	return 0;
}

static int sq_rollout_add(struct store *st, struct store_rollout *r)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_ROLLOUT_ADD);
	bind_text(q, 1, r->release_hash);
	bind_text(q, 2, r->state);
	sqlite3_bind_int64(q, 3, r->created);
	sqlite3_bind_int64(q, 4, r->updated);
	bind_text(q, 5, r->meta);
	bind_text(q, 6, r->controller);
	ret = run_done(s, q, "rollout_add");
	if (!ret)
		r->id = sqlite3_last_insert_rowid(s->db);
	unlock(s);
	return ret;
}

static int sq_rollout_update(struct store *st, const struct store_rollout *r)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_ROLLOUT_UPDATE);
	sqlite3_bind_int64(q, 1, r->id);
	bind_text(q, 2, r->state);
	sqlite3_bind_int64(q, 3, r->updated);
	bind_text(q, 4, r->meta);
	bind_text(q, 5, r->controller);
	ret = run_done(s, q, "rollout_update");
	if (!ret && sqlite3_changes(s->db) == 0)
		ret = -ENOENT;
	unlock(s);
	return ret;
}

static int sq_rollout_get(struct store *st, int64_t id, struct store_rollout *out)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int rc, ret;

	lock(s);
	q = stmt(s, S_ROLLOUT_GET);
	sqlite3_bind_int64(q, 1, id);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		ret = rollout_row(q, out);
	else
		ret = rc == SQLITE_DONE ? -ENOENT : sq_err(s, rc, "rollout_get");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_rollout_list(struct store *st, store_rollout_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_rollout r;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, S_ROLLOUT_LIST);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (rollout_row(q, &r))
			continue;
		ret = cb(&r, ctx);
		store_rollout_clear(&r);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "rollout_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

static int sq_decision_add(struct store *st, const struct store_decision *d)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_DECISION_ADD);
	sqlite3_bind_int64(q, 1, d->rollout_id);
	sqlite3_bind_int64(q, 2, d->at);
	bind_text(q, 3, d->kind);
	bind_text(q, 4, d->detail ? d->detail : "{}");
	ret = run_done(s, q, "decision_add");
	unlock(s);
	return ret;
}

static int sq_decision_list(struct store *st, int64_t rollout_id, size_t limit,
			    store_decision_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_decision d;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, rollout_id ? S_DECISION_LIST : S_DECISION_LIST_ALL);
	if (rollout_id)
		sqlite3_bind_int64(q, 1, rollout_id);
	sqlite3_bind_int64(q, 2, limit ? (int64_t)limit : -1);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		memset(&d, 0, sizeof(d));
		d.id = sqlite3_column_int64(q, 0);
		d.rollout_id = sqlite3_column_int64(q, 1);
		d.at = sqlite3_column_int64(q, 2);
		if (col_text(q, 3, d.kind, sizeof(d.kind)))
			continue;
		d.detail = (char *)sqlite3_column_text(q, 4);
		if ((ret = cb(&d, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "decision_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

/* --- alerts and events --- */

static int sq_records_add(struct store *st, enum store_record_kind kind, const char *agent_id,
			  const struct store_new_record *recs, size_t n, size_t *inserted,
			  int64_t now)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	size_t added = 0;
	int ret;

	lock(s);
	ret = run_done(s, stmt(s, S_BEGIN), "begin");
	if (ret)
		goto out;
	for (size_t i = 0; i < n; i++) {
		q = stmt(s, kind == RECORD_ALERT ? S_ALERT_ADD : S_EVENT_ADD);
		bind_text(q, 1, agent_id);
		sqlite3_bind_int64(q, 2, recs[i].seq);
		sqlite3_bind_int64(q, 3, recs[i].at ? recs[i].at : now);
		sqlite3_bind_int64(q, 4, now);
		bind_text(q, 5, recs[i].rule_id);
		if (recs[i].json_len > (size_t)INT32_MAX) {
			ret = -E2BIG;
			goto out_rollback;
		}
		sqlite3_bind_text(q, 6, recs[i].json, (int)recs[i].json_len, SQLITE_STATIC);
		ret = run_done(s, q, "records_add");
		if (ret)
			goto out_rollback;
		added += (size_t)sqlite3_changes(s->db);
	}
	ret = run_done(s, stmt(s, S_COMMIT), "commit");
	if (ret)
		goto out_rollback;
	*inserted = added;
	goto out;
out_rollback:
	run_done(s, stmt(s, S_ROLLBACK), "rollback");
out:
	unlock(s);
	return ret;
}

static int sq_records_query(struct store *st, const struct store_record_query *rq,
			    store_record_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_record r;
	sqlite3_stmt *q = NULL;
	char sql[512];
	int rc, ret = 0, n;

	/* the only variable parts are the table name and which fixed clauses appear */
	n = snprintf(sql, sizeof(sql),
		     "SELECT agent_id, seq, at, received, rule_id, body FROM %s WHERE 1%s%s%s%s"
		     " ORDER BY at DESC, rowid DESC LIMIT ?5",
		     rq->kind == RECORD_ALERT ? "alerts" : "events",
		     rq->agent_id ? " AND agent_id = ?1" : "",
		     rq->rule_id ? " AND rule_id = ?2" : "", rq->since ? " AND at >= ?3" : "",
		     rq->until ? " AND at <= ?4" : "");
	if (n < 0 || (size_t)n >= sizeof(sql))
		return -EINVAL;
	lock(s);
	rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
	if (rc != SQLITE_OK) {
		ret = sq_err(s, rc, "records_query");
		goto out;
	}
	if (rq->agent_id)
		bind_text(q, 1, rq->agent_id);
	if (rq->rule_id)
		bind_text(q, 2, rq->rule_id);
	if (rq->since)
		sqlite3_bind_int64(q, 3, rq->since);
	if (rq->until)
		sqlite3_bind_int64(q, 4, rq->until);
	sqlite3_bind_int64(q, 5, rq->limit ? (int64_t)rq->limit : -1);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		memset(&r, 0, sizeof(r));
		if (col_text(q, 0, r.agent_id, sizeof(r.agent_id)) ||
		    col_text(q, 4, r.rule_id, sizeof(r.rule_id)))
			continue;
		r.seq = sqlite3_column_int64(q, 1);
		r.at = sqlite3_column_int64(q, 2);
		r.received = sqlite3_column_int64(q, 3);
		r.json = (const char *)sqlite3_column_text(q, 5);
		if (!r.json)
			r.json = "{}";
		if ((ret = cb(&r, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "records_query");
out:
	sqlite3_finalize(q);
	unlock(s);
	return ret;
}

/* --- audit --- */

static int sq_audit_add(struct store *st, const struct store_audit *a)
{
	struct sq_store *s = sq(st);
	sqlite3_stmt *q;
	int ret;

	lock(s);
	q = stmt(s, S_AUDIT_ADD);
	sqlite3_bind_int64(q, 1, a->at);
	bind_text(q, 2, a->who);
	bind_text(q, 3, a->action);
	bind_text(q, 4, a->target);
	bind_text(q, 5, a->result);
	ret = run_done(s, q, "audit_add");
	unlock(s);
	return ret;
}

static int sq_audit_list(struct store *st, size_t limit, store_audit_cb cb, void *ctx)
{
	struct sq_store *s = sq(st);
	struct store_audit a;
	sqlite3_stmt *q;
	int rc, ret = 0;

	lock(s);
	q = stmt(s, S_AUDIT_LIST);
	sqlite3_bind_int64(q, 1, limit ? (int64_t)limit : -1);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		memset(&a, 0, sizeof(a));
		a.id = sqlite3_column_int64(q, 0);
		a.at = sqlite3_column_int64(q, 1);
		if (col_text(q, 2, a.who, sizeof(a.who)))
			continue;
		a.action = (const char *)sqlite3_column_text(q, 3);
		a.target = (const char *)sqlite3_column_text(q, 4);
		a.result = (const char *)sqlite3_column_text(q, 5);
		if ((ret = cb(&a, ctx)))
			break;
	}
	if (!ret && rc != SQLITE_DONE && rc != SQLITE_ROW)
		ret = sq_err(s, rc, "audit_list");
	sqlite3_reset(q);
	unlock(s);
	return ret;
}

/* --- the write-ahead log --- */

/*
 * After each commit on the connection (lock held): notes that the log has unsynced frames and,
 * once it is long, copies it into the database (the hook replaces SQLite's automatic
 * checkpoint, which would do the same).
 */
static int on_wal_commit(void *ctx, sqlite3 *db, const char *name, int pages)
{
	struct sq_store *s = ctx;

	atomic_store_explicit(&s->wal_dirty, true, memory_order_relaxed);
	if (pages >= STORE_CHECKPOINT_PAGES)
		sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return SQLITE_OK;
}

/*
 * With synchronous=NORMAL a commit writes the log without syncing it; the sync comes at the
 * next checkpoint, which holds the store meanwhile. This thread syncs the log every
 * STORE_WAL_SYNC_MS so that a checkpoint finds little left to flush and holds the store for a
 * few milliseconds, not for the time to flush megabytes.
 */
static void *wal_syncer(void *arg)
{
	struct sq_store *s = arg;
	struct timespec ts;
	bool warned = false;

	pthread_mutex_lock(&s->sync_lock);
	while (!s->sync_stop) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += STORE_WAL_SYNC_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->sync_wake, &s->sync_lock, &ts);
		if (s->sync_stop ||
		    !atomic_exchange_explicit(&s->wal_dirty, false, memory_order_relaxed))
			continue;
		pthread_mutex_unlock(&s->sync_lock);
		/* a failure is said once: checkpoints still sync the log themselves */
		if (fdatasync(s->wal_fd) && errno != EINTR && !warned) {
			fprintf(stderr, "vigil-server: store: syncing the log: %s\n",
				strerror(errno));
			warned = true;
		}
		pthread_mutex_lock(&s->sync_lock);
	}
	pthread_mutex_unlock(&s->sync_lock);
	return NULL;
}

/* Opens the log (DB-wal, there since the store's first transaction) for the syncer, starts it. */
static int wal_syncer_start(struct sq_store *s, const char *path, char *err, size_t errlen)
{
	char wal[DB_PATH_BYTES + sizeof("-wal")];
	int n = snprintf(wal, sizeof(wal), "%s-wal", path);

	if (n < 0 || (size_t)n >= sizeof(wal)) {
		snprintf(err, errlen, "data directory path too long");
		return -ENAMETOOLONG;
	}
	s->wal_fd = open(wal, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (s->wal_fd < 0) {
		snprintf(err, errlen, "%s: %s", wal, strerror(errno));
		return -EIO;
	}
	if (pthread_create(&s->sync_thread, NULL, wal_syncer, s)) {
		snprintf(err, errlen, "cannot start the log syncing thread");
		return -EIO;
	}
	s->sync_started = true;
	sqlite3_wal_hook(s->db, on_wal_commit, s);
	return 0;
}

/* --- open and close --- */

static void sq_close(struct store *st)
{
	struct sq_store *s = sq(st);

	if (s->sync_started) {
		pthread_mutex_lock(&s->sync_lock);
		s->sync_stop = true;
		pthread_cond_signal(&s->sync_wake);
		pthread_mutex_unlock(&s->sync_lock);
		pthread_join(s->sync_thread, NULL);
	}
	if (s->wal_fd >= 0)
		close(s->wal_fd);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmts[i]);
	if (s->db) {
		/* leaves the database whole in one file for a backup or a copy */
		sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		sqlite3_close(s->db);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->hb_lock);
	pthread_mutex_destroy(&s->sync_lock);
	pthread_cond_destroy(&s->sync_wake);
	free(s);
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .meta_get = sq_meta_get,
    .meta_set = sq_meta_set,
    .token_add = sq_token_add,
    .token_get = sq_token_get,
    .token_use = sq_token_use,
    .token_list = sq_token_list,
    .token_revoke = sq_token_revoke,
    .agent_add = sq_agent_add,
    .agent_get = sq_agent_get,
    .agent_heartbeat = sq_agent_heartbeat,
    .agent_set_group = sq_agent_set_group,
    .agent_groups = sq_agent_groups,
    .agent_list = sq_agent_list,
    .group_put = sq_group_put,
    .group_get = sq_group_get,
    .group_list = sq_group_list,
    .release_add = sq_release_add,
    .release_get = sq_release_get,
    .release_list = sq_release_list,
    .rollout_add = sq_rollout_add,
    .rollout_update = sq_rollout_update,
    .rollout_get = sq_rollout_get,
    .rollout_list = sq_rollout_list,
    .decision_add = sq_decision_add,
    .decision_list = sq_decision_list,
    .records_add = sq_records_add,
    .records_query = sq_records_query,
    .audit_add = sq_audit_add,
    .audit_list = sq_audit_list,
};

int store_sqlite_open(const char *dir, struct store **out, char *err, size_t errlen)
{
	struct sq_store *s;
	char path[DB_PATH_BYTES], *msg = NULL;
	int rc, ret, n;

	n = snprintf(path, sizeof(path), "%s/%s", dir, DB_FILE);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		snprintf(err, errlen, "data directory path too long");
		return -ENAMETOOLONG;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->base.ops = &sqlite_ops;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->hb_lock, NULL);
	pthread_mutex_init(&s->sync_lock, NULL);
	pthread_cond_init(&s->sync_wake, NULL);
	s->wal_fd = -1;
	s->hb_tail = &s->hb_head;
	rc = sqlite3_open_v2(path, &s->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
				 SQLITE_OPEN_NOFOLLOW,
			     NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "cannot open");
		ret = -EIO;
		goto out_close;
	}
	sqlite3_busy_timeout(s->db, STORE_BUSY_MS);
	rc = sqlite3_exec(s->db,
			  "PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL;"
			  " PRAGMA synchronous=NORMAL;"
			  " PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
			  NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = add_sensor_column(s->db, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		ret = -EIO;
		goto out_close;
	}
	for (int i = 0; i < S_COUNT; i++) {
		rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					&s->stmts[i], NULL);
		if (rc != SQLITE_OK) {
			snprintf(err, errlen, "%s: preparing statement %d: %s", path, i,
				 sqlite3_errmsg(s->db));
			ret = -EIO;
			goto out_close;
		}
	}
	ret = wal_syncer_start(s, path, err, errlen);
	if (ret)
		goto out_close;
	chmod(path, 0600);
	*out = &s->base;
	return 0;
out_close:
	sq_close(&s->base);
	return ret;
}

void store_close(struct store *st)
{
	if (st)
		st->ops->close(st);
}
