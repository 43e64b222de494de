/*
 * The process cache: a pid-keyed hash table over a slot array, with one list of live
 * entries in least-recently-used order and one list of exited entries in exit order.
 */
#include "proc_cache.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define NIL UINT32_MAX
/* Slots allocated on first use; the array doubles up to max_entries. */
#define INITIAL_SLOTS	256u
#define MIN_BUCKET_BITS 8u
/* Domain key of the hash that turns a boot id into the entity id key. */
#define ENTITY_DOMAIN "vigil.entity_id.v1"

enum slot_state {
	SLOT_FREE,
	SLOT_LIVE,
	SLOT_EXITED,
};

/* Strings of an entry, in the order they are packed into its blob. */
enum entry_str {
	STR_EXECUTABLE,
	STR_COMMAND_LINE,
	STR_WORKING_DIRECTORY,
	STR_TTY,
	STR_CGROUP,
	STR_CONTAINER_ID,
	STR_COUNT,
};

static const size_t str_cap[STR_COUNT] = {
    [STR_EXECUTABLE] = PROC_PATH_MAX,
    [STR_COMMAND_LINE] = PROC_CMDLINE_MAX,
    [STR_WORKING_DIRECTORY] = PROC_PATH_MAX,
    [STR_TTY] = PROC_SHORT_STR_MAX,
    [STR_CGROUP] = PROC_PATH_MAX,
    [STR_CONTAINER_ID] = PROC_SHORT_STR_MAX,
};

static const enum field_id str_field[STR_COUNT] = {
    [STR_EXECUTABLE] = F_PROCESS_EXECUTABLE,
    [STR_COMMAND_LINE] = F_PROCESS_COMMAND_LINE,
    [STR_WORKING_DIRECTORY] = F_PROCESS_WORKING_DIRECTORY,
    [STR_TTY] = F_PROCESS_TTY_NAME,
    [STR_CGROUP] = F_PROCESS_CGROUP,
    [STR_CONTAINER_ID] = F_CONTAINER_ID,
};

struct slot {
	struct proc_info info; /* string members point into blob */
	char *blob;
	size_t blob_len;
	uint32_t hash_next;  /* next slot in the same bucket, or the free list */
	uint32_t prev, next; /* neighbours in the live or exited list */
	uint8_t truncated;   /* bit per enum entry_str: the string was cut */
	uint8_t state;
};

/* A doubly linked list of slots through prev/next; head is the most recent. */
struct slot_list {
	uint32_t head, tail;
};

struct proc_cache {
	struct slot *slots;
	uint32_t n_slots;  /* allocated */
	uint32_t *buckets; /* 1 << bucket_bits of them, at least n_slots */
	unsigned bucket_bits;
	uint32_t free_head;
	struct slot_list live;	 /* head: most recently used */
	struct slot_list exited; /* tail: oldest exit */
	size_t entries;
	size_t max_entries;
	size_t string_bytes;
	size_t max_bytes;
	uint64_t evictions, reaped, pid_reuse, misses;
	unsigned char key[crypto_generichash_BYTES];
};

static char **info_str(struct proc_info *info, enum entry_str s)
{
	switch (s) {
	case STR_EXECUTABLE:
		return &info->executable;
	case STR_COMMAND_LINE:
		return &info->command_line;
	case STR_WORKING_DIRECTORY:
		return &info->working_directory;
	case STR_TTY:
		return &info->tty;
	case STR_CGROUP:
		return &info->cgroup;
	case STR_CONTAINER_ID:
	default:
		return &info->container_id;
	}
}

static const char *info_cstr(const struct proc_info *info, enum entry_str s)
{
	return *info_str((struct proc_info *)info, s);
}

static void entity_key(const char *boot_id, unsigned char key[crypto_generichash_BYTES])
{
	const char *b = boot_id ? boot_id : "";
	crypto_generichash(key, crypto_generichash_BYTES, (const unsigned char *)b, strlen(b),
			   (const unsigned char *)ENTITY_DOMAIN, sizeof(ENTITY_DOMAIN) - 1);
}

static void entity_id_keyed(const unsigned char key[crypto_generichash_BYTES], uint32_t pid,
			    uint64_t start_ticks, char out[PROC_ENTITY_ID_LEN + 1])
{
	unsigned char msg[12], hash[crypto_generichash_BYTES];

	/* fixed little-endian layout, so every host and source derives the same id */
	for (int i = 0; i < 4; i++)
		msg[i] = (unsigned char)(pid >> (8 * i));
	for (int i = 0; i < 8; i++)
		msg[4 + i] = (unsigned char)(start_ticks >> (8 * i));
	crypto_generichash(hash, sizeof(hash), msg, sizeof(msg), key, crypto_generichash_BYTES);
	sodium_bin2hex(out, PROC_ENTITY_ID_LEN + 1, hash, PROC_ENTITY_ID_LEN / 2);
}

void proc_entity_id(const char *boot_id, uint32_t pid, uint64_t start_ticks,
		    char out[PROC_ENTITY_ID_LEN + 1])
{
	unsigned char key[crypto_generichash_BYTES];

	entity_key(boot_id, key);
	entity_id_keyed(key, pid, start_ticks, out);
}

static uint32_t hash_pid(uint32_t pid, unsigned bits)
{
	return (pid * 2654435761u) >> (32 - bits);
}

/*
 * Doubles the slot array (up to max_entries) and keeps at least as many buckets as slots.
 * Returns 0, or -ENOMEM with the cache unchanged.
 */
static int cache_grow(struct proc_cache *cache)
{
	size_t want = cache->n_slots ? (size_t)cache->n_slots * 2 : INITIAL_SLOTS;
	unsigned bits = cache->bucket_bits ? cache->bucket_bits : MIN_BUCKET_BITS;
	uint32_t *buckets = NULL;
	struct slot *slots;
	size_t bytes;

	if (want > cache->max_entries)
		want = cache->max_entries;
	if (want <= cache->n_slots)
		return -ENOMEM; /* already at the cap: callers evict instead */
	while (((size_t)1 << bits) < want)
		bits++;
	if (bits != cache->bucket_bits) {
		if (size_mul((size_t)1 << bits, sizeof(*buckets), &bytes) < 0)
			return -ENOMEM;
		buckets = malloc(bytes);
		if (!buckets)
			return -ENOMEM;
	}
	if (size_mul(want, sizeof(*slots), &bytes) < 0)
		goto out_free_buckets;
	slots = realloc(cache->slots, bytes);
	if (!slots)
		goto out_free_buckets;
	cache->slots = slots;

	/* fresh slots go on the free list, lowest index first */
	for (size_t i = want; i-- > cache->n_slots;) {
		memset(&slots[i], 0, sizeof(slots[i]));
		slots[i].state = SLOT_FREE;
		slots[i].hash_next = cache->free_head;
		cache->free_head = (uint32_t)i;
	}
	cache->n_slots = (uint32_t)want;

	if (buckets) {
		for (size_t b = 0; b < ((size_t)1 << bits); b++)
			buckets[b] = NIL;
		for (uint32_t i = 0; i < cache->n_slots; i++) {
			struct slot *s = &slots[i];
			uint32_t h;

			if (s->state == SLOT_FREE)
				continue;
			h = hash_pid(s->info.pid, bits);
			s->hash_next = buckets[h];
			buckets[h] = i;
		}
		free(cache->buckets);
		cache->buckets = buckets;
		cache->bucket_bits = bits;
	}
	return 0;

out_free_buckets:
	free(buckets);
	return -ENOMEM;
}

static uint32_t bucket_of(const struct proc_cache *cache, uint32_t pid)
{
	return hash_pid(pid, cache->bucket_bits);
}

static uint32_t cache_find(const struct proc_cache *cache, uint32_t pid)
{
	if (!cache->buckets)
		return NIL;
	for (uint32_t i = cache->buckets[bucket_of(cache, pid)]; i != NIL;
	     i = cache->slots[i].hash_next) {
		if (cache->slots[i].info.pid == pid)
			return i;
	}
	return NIL;
}

static void list_unlink(struct proc_cache *cache, struct slot_list *l, uint32_t i)
{
	struct slot *s = &cache->slots[i];

	if (s->prev != NIL)
		cache->slots[s->prev].next = s->next;
	else
		l->head = s->next;
	if (s->next != NIL)
		cache->slots[s->next].prev = s->prev;
	else
		l->tail = s->prev;
	s->prev = s->next = NIL;
}

static void list_push_head(struct proc_cache *cache, struct slot_list *l, uint32_t i)
{
	struct slot *s = &cache->slots[i];

	s->prev = NIL;
	s->next = l->head;
	if (l->head != NIL)
		cache->slots[l->head].prev = i;
	l->head = i;
	if (l->tail == NIL)
		l->tail = i;
}

static struct slot_list *list_of(struct proc_cache *cache, const struct slot *s)
{
	return s->state == SLOT_EXITED ? &cache->exited : &cache->live;
}

/* Marks live entry @i as just used. Exited entries keep their place in exit order. */
static void touch(struct proc_cache *cache, uint32_t i)
{
	if (cache->slots[i].state != SLOT_LIVE || cache->live.head == i)
		return;
	list_unlink(cache, &cache->live, i);
	list_push_head(cache, &cache->live, i);
}

static void slot_remove(struct proc_cache *cache, uint32_t i)
{
	struct slot *s = &cache->slots[i];
	uint32_t *link = &cache->buckets[bucket_of(cache, s->info.pid)];

	while (*link != i)
		link = &cache->slots[*link].hash_next;
	*link = s->hash_next;
	list_unlink(cache, list_of(cache, s), i);
	cache->string_bytes -= s->blob_len;
	free(s->blob);
	memset(s, 0, sizeof(*s));
	s->state = SLOT_FREE;
	s->hash_next = cache->free_head;
	cache->free_head = i;
	cache->entries--;
}

/* Removes one entry to make room: the oldest exited one, else the least recently used. */
static bool evict_one(struct proc_cache *cache)
{
	if (cache->exited.tail != NIL) {
		slot_remove(cache, cache->exited.tail);
		cache->reaped++;
		return true;
	}
	if (cache->live.tail != NIL) {
		slot_remove(cache, cache->live.tail);
		cache->evictions++;
		return true;
	}
	return false;
}

/* Length of @s cut to at most @cap bytes without splitting a UTF-8 sequence. */
static size_t capped_len(const char *s, size_t cap, bool *cut)
{
	size_t n = strnlen(s, cap + 1);

	*cut = n > cap;
	if (!*cut)
		return n;
	n = cap;
	/* back off over continuation bytes so the cut lands on a sequence boundary */
	for (size_t k = 0; k < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; k++)
		n--;
	return n;
}

/*
 * Copies the strings of @src into one new blob and points @dst's string members into it.
 * Returns the blob (or NULL with *@len 0 when there are no strings), sets *@truncated.
 * Returns -ENOMEM through @err.
 */
static char *pack_strings(const struct proc_info *src, struct proc_info *dst, size_t *len,
			  uint8_t *truncated, int *err)
{
	size_t lens[STR_COUNT], total = 0;
	char *blob, *p;

	*truncated = 0;
	*err = 0;
	for (int k = 0; k < STR_COUNT; k++) {
		const char *s = info_cstr(src, (enum entry_str)k);
		bool cut = false;

		lens[k] = s ? capped_len(s, str_cap[k], &cut) : 0;
		if (cut)
			*truncated |= (uint8_t)(1u << k);
		if (s)
			total += lens[k] + 1; /* caps keep this far from overflow */
	}
	*len = total;
	for (int k = 0; k < STR_COUNT; k++)
		*info_str(dst, (enum entry_str)k) = NULL;
	if (!total)
		return NULL;
	blob = malloc(total);
	if (!blob) {
		*err = -ENOMEM;
		return NULL;
	}
	p = blob;
	for (int k = 0; k < STR_COUNT; k++) {
		const char *s = info_cstr(src, (enum entry_str)k);
		if (!s)
			continue;
		memcpy(p, s, lens[k]);
		p[lens[k]] = '\0';
		*info_str(dst, (enum entry_str)k) = p;
		p += lens[k] + 1;
	}
	return blob;
}

struct proc_cache *proc_cache_new(size_t max_entries, const char *boot_id)
{
	struct proc_cache *cache;

	if (max_entries == 0 || max_entries >= NIL) {
		errno = EINVAL;
		return NULL;
	}
	if (sodium_init() < 0) {
		errno = EIO;
		return NULL;
	}
	cache = calloc(1, sizeof(*cache));
	if (!cache)
		return NULL;
	cache->max_entries = max_entries;
	cache->max_bytes = PROC_CACHE_DEFAULT_MAX_BYTES;
	cache->free_head = NIL;
	cache->live.head = cache->live.tail = NIL;
	cache->exited.head = cache->exited.tail = NIL;
	entity_key(boot_id, cache->key);
	return cache;
}

void proc_cache_free(struct proc_cache *cache)
{
	if (!cache)
		return;
	for (uint32_t i = 0; i < cache->n_slots; i++)
		free(cache->slots[i].blob);
	free(cache->slots);
	free(cache->buckets);
	sodium_memzero(cache->key, sizeof(cache->key));
	free(cache);
}

void proc_cache_set_max_bytes(struct proc_cache *cache, size_t max_bytes)
{
	cache->max_bytes = max_bytes;
}

const struct proc_info *proc_cache_get(struct proc_cache *cache, uint32_t pid)
{
	uint32_t i = cache_find(cache, pid);

	if (i == NIL) {
		cache->misses++;
		return NULL;
	}
	touch(cache, i);
	return &cache->slots[i].info;
}

/*
 * Stores @info (its strings copied and capped, @inherited_cut or'd into the entry's cut
 * marks). @info may point into the cache itself: it is copied before anything moves, and
 * everything that can fail happens before the cache is changed.
 */
static int cache_store(struct proc_cache *cache, const struct proc_info *info,
		       uint8_t inherited_cut)
{
	struct proc_info copy = *info;
	size_t blob_len;
	uint8_t cut;
	int err;
	char *blob = pack_strings(info, &copy, &blob_len, &cut, &err);
	uint32_t i;
	struct slot *s;

	if (err)
		return err;
	i = cache_find(cache, copy.pid);
	if (i == NIL && cache->free_head == NIL && cache->n_slots < cache->max_entries) {
		err = cache_grow(cache);
		if (err)
			goto out_free_blob;
	}

	if (i != NIL) {
		s = &cache->slots[i];
		if (s->info.start_ticks != copy.start_ticks) {
			cache->pid_reuse++;
			entity_id_keyed(cache->key, copy.pid, copy.start_ticks, copy.entity_id);
		} else {
			memcpy(copy.entity_id, s->info.entity_id, sizeof(copy.entity_id));
		}
		list_unlink(cache, list_of(cache, s), i);
		cache->string_bytes -= s->blob_len;
		free(s->blob);
		s->blob = NULL;
		s->blob_len = 0;
	} else {
		while (cache->entries >= cache->max_entries && evict_one(cache))
			;
		entity_id_keyed(cache->key, copy.pid, copy.start_ticks, copy.entity_id);
	}
	/*
	 * The string budget. The entry being replaced is out of both lists already, so it is
	 * never the victim; a single entry larger than the budget is still kept.
	 */
	while (cache->string_bytes + blob_len > cache->max_bytes && evict_one(cache))
		;

	if (i == NIL) {
		i = cache->free_head;
		s = &cache->slots[i];
		cache->free_head = s->hash_next;
		s->hash_next = cache->buckets[bucket_of(cache, copy.pid)];
		cache->buckets[bucket_of(cache, copy.pid)] = i;
		cache->entries++;
	}
	s = &cache->slots[i];
	copy.entity_id[PROC_ENTITY_ID_LEN] = '\0';
	s->info = copy;
	s->blob = blob;
	s->blob_len = blob_len;
	s->truncated = cut | inherited_cut;
	if (copy.command_line_truncated)
		s->truncated |= 1u << STR_COMMAND_LINE;
	s->info.command_line_truncated = s->truncated & (1u << STR_COMMAND_LINE);
	s->state = copy.exited ? SLOT_EXITED : SLOT_LIVE;
	cache->string_bytes += blob_len;
	list_push_head(cache, list_of(cache, s), i);
	return 0;

out_free_blob:
	free(blob);
	return err;
}

int proc_cache_put(struct proc_cache *cache, const struct proc_info *info)
{
	return cache_store(cache, info, 0);
}

int proc_cache_fork(struct proc_cache *cache, uint32_t parent, uint32_t child,
		    uint64_t child_start_ticks)
{
	uint32_t c = cache_find(cache, child);
	uint32_t p = cache_find(cache, parent);
	struct proc_info info = {0};
	uint8_t cut = 0;

	/* seeding or an earlier event may already know this very process, and know it better */
	if (c != NIL && cache->slots[c].info.start_ticks == child_start_ticks &&
	    cache->slots[c].state == SLOT_LIVE) {
		touch(cache, c);
		return 0;
	}
	if (p != NIL) {
		info = cache->slots[p].info; /* strings are copied by cache_store */
		cut = cache->slots[p].truncated;
		touch(cache, p);
	} else {
		info.loginuid = -1;
	}
	info.pid = child;
	info.ppid = parent;
	info.start_ticks = child_start_ticks;
	info.exited = false;
	return cache_store(cache, &info, cut);
}

void proc_cache_exit(struct proc_cache *cache, uint32_t pid)
{
	uint32_t i = cache_find(cache, pid);
	struct slot *s;

	if (i == NIL)
		return;
	s = &cache->slots[i];
	if (s->state == SLOT_EXITED)
		return;
	list_unlink(cache, &cache->live, i);
	s->state = SLOT_EXITED;
	s->info.exited = true;
	list_push_head(cache, &cache->exited, i);
}

/* Last path component of @path ("bash" for "/usr/bin/bash"). */
static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static void set_str(struct event *ev, enum field_id id, const char *s, bool cut)
{
	if (!s || event_has(ev, id))
		return;
	event_set_cstr(ev, id, s);
	if (cut)
		event_mark_truncated(ev, id);
}

static void set_id(struct event *ev, enum field_id id, int64_t value)
{
	if (!event_has(ev, id))
		event_set_decimal(ev, id, value);
}

/*
 * The entry of @s's parent, or NIL when it is unknown or the cached entry under that pid
 * started after @s did (the pid was reused since, so it is not the parent).
 */
static uint32_t parent_of(const struct proc_cache *cache, const struct slot *s)
{
	uint32_t p;

	if (s->info.ppid == 0 || s->info.ppid == s->info.pid)
		return NIL;
	p = cache_find(cache, s->info.ppid);
	if (p != NIL && cache->slots[p].info.start_ticks > s->info.start_ticks)
		return NIL;
	return p;
}

static void enrich_ancestors(struct proc_cache *cache, struct event *ev, uint32_t i)
{
	uint32_t seen[PROC_ANCESTORS_MAX + 1];
	unsigned n_seen = 0;

	if (event_has(ev, F_PROCESS_ANCESTORS))
		return;
	seen[n_seen++] = cache->slots[i].info.pid;
	for (unsigned depth = 0; depth < PROC_ANCESTORS_MAX; depth++) {
		uint32_t p = parent_of(cache, &cache->slots[i]);
		const struct slot *a;
		bool loop = false;

		if (p == NIL)
			break;
		a = &cache->slots[p];
		for (unsigned k = 0; k < n_seen; k++)
			loop |= seen[k] == a->info.pid;
		if (loop)
			break;
		seen[n_seen++] = a->info.pid;
		/* an ancestor whose image is unknown is skipped; the walk goes on above it */
		if (a->info.executable)
			event_list_append(ev, F_PROCESS_ANCESTORS, a->info.executable,
					  strlen(a->info.executable));
		if (a->info.pid == 1)
			break;
		i = p;
	}
}

bool proc_cache_enrich(struct proc_cache *cache, struct event *ev, uint32_t pid)
{
	uint32_t i = cache_find(cache, pid);
	const struct slot *s;
	const struct proc_info *info;
	uint32_t p;

	if (i == NIL) {
		cache->misses++;
		return false;
	}
	touch(cache, i);
	s = &cache->slots[i];
	info = &s->info;

	if (!event_has(ev, F_PROCESS_PID))
		event_set_int(ev, F_PROCESS_PID, info->pid);
	set_str(ev, F_PROCESS_ENTITY_ID, info->entity_id, false);
	for (int k = 0; k < STR_COUNT; k++)
		set_str(ev, str_field[k], info_cstr(info, (enum entry_str)k),
			s->truncated & (1u << k));
	if (info->executable)
		set_str(ev, F_PROCESS_NAME, base_name(info->executable),
			s->truncated & (1u << STR_EXECUTABLE));
	set_id(ev, F_USER_ID, info->uid);
	set_id(ev, F_USER_EFFECTIVE_ID, info->euid);
	set_id(ev, F_GROUP_ID, info->gid);
	set_id(ev, F_GROUP_EFFECTIVE_ID, info->egid);
	if (info->loginuid >= 0)
		set_id(ev, F_USER_AUDIT_ID, info->loginuid);

	if (info->ppid != 0 && !event_has(ev, F_PROCESS_PARENT_PID))
		event_set_int(ev, F_PROCESS_PARENT_PID, info->ppid);
	p = parent_of(cache, s);
	if (p != NIL) {
		const struct slot *ps = &cache->slots[p];

		set_str(ev, F_PROCESS_PARENT_ENTITY_ID, ps->info.entity_id, false);
		set_str(ev, F_PROCESS_PARENT_EXECUTABLE, ps->info.executable,
			ps->truncated & (1u << STR_EXECUTABLE));
		if (ps->info.executable)
			set_str(ev, F_PROCESS_PARENT_NAME, base_name(ps->info.executable),
				ps->truncated & (1u << STR_EXECUTABLE));
		set_str(ev, F_PROCESS_PARENT_COMMAND_LINE, ps->info.command_line,
			ps->truncated & (1u << STR_COMMAND_LINE));
	}
	enrich_ancestors(cache, ev, i);
	return true;
}

void proc_cache_get_stats(const struct proc_cache *cache, struct proc_cache_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->entries = cache->entries;
	out->max_entries = cache->max_entries;
	out->evictions = cache->evictions;
	out->reaped = cache->reaped;
	out->pid_reuse = cache->pid_reuse;
	out->misses = cache->misses;
	out->string_bytes = cache->string_bytes;
	out->max_bytes = cache->max_bytes;
}
