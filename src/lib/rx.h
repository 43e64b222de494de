/*
 * Regular expressions of the rules: RE2, a linear-time engine whose compile costs
 * microseconds, behind a C interface. A set holds the regexes one field is searched for and,
 * for each, literal fragments ("atoms") of which a value must contain at least one for the
 * regex to match; the caller finds the atoms with its literal matcher and asks the set which
 * regexes then match, so that a regex runs only on values that hold one of its atoms.
 */
#ifndef VIGIL_RX_H
#define VIGIL_RX_H

#include <stdbool.h>
#include <stddef.h>

/* Memory one regex may use: its compiled program and its search caches. A regex whose
 * program does not fit is refused; a search whose cache keeps filling falls back to RE2's
 * slower automaton, still linear in the input. */
#define RX_MAX_MEM (512u << 10)
/* Shortest atom worth looking for, and the shortest taken from a regex that has none that
 * long: a regex with no atoms of RX_MIN_ATOM_LAST bytes is run on every value of its field. */
#define RX_MIN_ATOM	 3u
#define RX_MIN_ATOM_LAST 2u
/* Atoms one set may have, and regexes one set may hold. */
#define RX_MAX_ATOMS 65536u
#define RX_MAX_SET   65536u

struct rx;
struct rx_set;

/*
 * Compiles regex @pat (@len bytes, no NUL) to match anywhere in a value, bytes as Latin-1.
 * Returns 0 with *@out set, -EINVAL with the reason in @err (at most @errlen bytes) when the
 * pattern is refused, or -ENOMEM.
 */
int rx_new(const char *pat, size_t len, struct rx **out, char *err, size_t errlen);
/* Whether @r matches somewhere in @s (@len bytes). */
bool rx_search(const struct rx *r, const char *s, size_t len);
/* Bytes of @r's compiled program. */
size_t rx_bytes(const struct rx *r);
void rx_free(struct rx *r);

/* A new empty set in *@out: 0 or -ENOMEM. */
int rx_set_new(struct rx_set **out);
/*
 * Adds regex @pat as the set's next one (ids count from 0 in the order of the calls).
 * Returns 0, -EINVAL with the reason in @err, -E2BIG past RX_MAX_SET, or -ENOMEM; the set is
 * unchanged on error. Nothing can be added once the set is compiled.
 */
int rx_set_add(struct rx_set *s, const char *pat, size_t len, char *err, size_t errlen);
/* Computes the set's atoms: 0, -E2BIG past RX_MAX_ATOMS, -EINVAL when compiled already,
 * or -ENOMEM. */
int rx_set_compile(struct rx_set *s);
/* The compiled set's atoms: lower case, to be found in values ignoring ASCII case. */
size_t rx_set_atom_count(const struct rx_set *s);
const char *rx_set_atom(const struct rx_set *s, size_t i, size_t *len);
/* Whether some regex of the set has no atom, so must run on every value. */
bool rx_set_has_unfiltered(const struct rx_set *s);
/* Regexes of the set and bytes of their compiled programs. */
size_t rx_set_count(const struct rx_set *s);
size_t rx_set_bytes(const struct rx_set *s);
/*
 * Calls @hit(@ctx, id) once for every regex of the compiled set that matches @str (@len
 * bytes), given the ids of the atoms found in it (@atoms, @n_atoms, each below
 * rx_set_atom_count, in any order). Returns the number of regexes matched, or -ENOMEM (then
 * some matches may be missing).
 */
int rx_set_match(const struct rx_set *s, const char *str, size_t len, const unsigned *atoms,
		 size_t n_atoms, void (*hit)(void *ctx, unsigned id), void *ctx);
void rx_set_free(struct rx_set *s);

#endif
