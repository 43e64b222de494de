/*
 * A growable byte buffer with a hard cap set at creation: everything filled from outside
 * goes through one of these, so no input can grow memory without bound.
 */
#ifndef VIGIL_BUF_H
#define VIGIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max; /* appends that would exceed this fail with -E2BIG */
};

/* Sets up an empty buffer that may hold at most @max bytes. Allocates nothing yet. */
void buf_init(struct buf *b, size_t max);

/* Frees the storage; the buffer may be reused after buf_init(). Accepts NULL. */
void buf_release(struct buf *b);

/* Empties the buffer, keeping its storage. */
void buf_reset(struct buf *b);

/* Appends @n bytes. Returns 0, -E2BIG past the cap, or -ENOMEM. On error @b is unchanged. */
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_char(struct buf *b, char c);
int buf_append_str(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Formats the reason for a failure into @err (@errlen bytes, cut to fit) and returns @ret. */
int err_set(char *err, size_t errlen, int ret, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Makes sure @extra more bytes fit without reallocating. Same errors as buf_append. */
int buf_reserve(struct buf *b, size_t extra);

/* Writes all @len bytes of @data to @fd, retrying short writes and EINTR. Returns 0 or -errno. */
int fd_write_all(int fd, const void *data, size_t len);

/* Replaces, in place, every byte of the string @s outside printable ASCII with '?': for
 * messages that quote input (a parser's error text) and must stay one printable line. */
void text_printable(char *s);

/* Replaces, in place, every control character of @s (line breaks included) with a space,
 * keeping UTF-8 text as it is: for messages that quote rule text. */
void text_one_line(char *s);

/* Overflow-checked size arithmetic: returns 0 and stores the result, or -EOVERFLOW. */
int size_mul(size_t a, size_t b, size_t *out);
int size_add(size_t a, size_t b, size_t *out);

#endif
