/*
 * Sigma to native rules: converts one Sigma rule (YAML bytes) into the text of a vigil rule
 * file (docs/rules.md), or says in one line why it cannot be expressed. Pure: no I/O.
 */
#ifndef VIGIL_SIGMA_H
#define VIGIL_SIGMA_H

#include <stddef.h>

#include "buf.h"

/*
 * How Sigma maps onto vigil (the decisions a reader of a converted rule needs):
 *
 * Log sources: product linux with category process_creation (event.action exec),
 * file_event (event.action create or write, with TargetFilename on file.path; or rename, with
 * TargetFilename on the destination file.target_path: Sigma's file_event is "a file now
 * exists at this path", which a rename into place is too) and network_connection
 * (event.action connect or accept; Initiated 'true' is network.direction egress, 'false'
 * ingress). A logsource with a service, or any other product or category, is unsupported.
 *
 * Fields: Image process.executable, CommandLine process.command_line, ParentImage
 * process.parent.executable, ParentCommandLine process.parent.command_line, User user.name,
 * CurrentDirectory process.working_directory, ProcessId process.pid, ParentProcessId
 * process.parent.pid, LogonId user.audit.id (the audit login uid), TargetFilename file.path,
 * DestinationIp/Port and SourceIp/Port destination.* and source.*, Protocol
 * network.transport, DestinationIsIpv6/SourceIsIpv6 network.type. Every other field
 * (DestinationHostname, OriginalFileName, Hashes, ...) is not observed: vigil's events never
 * carry it, so a predicate on it is constant (false; true for `null` and `exists: false`).
 * The constant is folded away when that narrows the rule (an alternative of an OR is
 * dropped, and the converted file says so in a comment); when folding it would widen the
 * rule (a filter under `not`, a `null` test) or leaves nothing that can match (the field is
 * needed for every match), the rule is not converted and the reason names the field.
 *
 * Values: Sigma's default matching is case-insensitive, so plain values use the i-operators
 * (iequals, icontains, istartswith, iendswith) and `cased` selects the exact ones. Wildcards
 * `*` and `?` (escaped with a backslash) become istartswith/iendswith/icontains when they are
 * only leading or trailing, else an anchored regex. `re` passes the pattern as `regex`
 * (case-sensitive unless `re|i`; `re|m` and `re|s` become inline flags) after checking that
 * Hyperscan accepts it. base64/base64offset output (and `wide`/utf16 encodings before them)
 * is matched case-sensitively, since base64 is. `windash` expands the leading - or / of each
 * flag into -, /, en dash, em dash and horizontal bar. `null` is `exists: false`. Keyword
 * searches (unfielded strings) are icontains on process.command_line (for file_event also on
 * file.path, or file.target_path for a rename); since Sigma searches the whole event this
 * narrows the rule, so a keyword search under `not` is refused rather than widened. Integer fields
 * take integers and lt, lte, gt, gte; IP fields take addresses, `cidr`, and whole-octet prefixes
 * ('10.', as startswith) as CIDRs.
 *
 * Conditions: and, or, not, parentheses, `1 of`/`any of`/`all of` a name pattern or `them`
 * (which skips names starting with '_'); a list of conditions is their OR. Aggregations
 * (`| count() ...`), `near`, correlation rules and multi-document rule collections are refused.
 *
 * Metadata (rules are converted whatever their status): the Sigma id is the rule id (so the file is
 * named ID.yml), the title is the name (cut at 256 bytes), the level is kept (medium when absent),
 * only attack.* tags are kept, and the description carries the author and the Detection Rule
 * License attribution.
 */

/* Largest Sigma rule file accepted. */
#define SIGMA_FILE_MAX (1024u * 1024u)
/* Deepest YAML nesting accepted in a rule. */
#define SIGMA_YAML_DEPTH_MAX 32
/* YAML nodes one rule may have. */
#define SIGMA_YAML_NODES_MAX 100000u
/* Longest condition string, and the deepest nesting of not and parentheses in it. */
#define SIGMA_COND_MAX	     16384u
#define SIGMA_COND_DEPTH_MAX 64
/* Bytes of memory one conversion may use for its tree, and bytes of output it may write. */
#define SIGMA_WORK_MAX	 (64u * 1024u * 1024u)
#define SIGMA_OUTPUT_MAX (8u * 1024u * 1024u)
/* Alternatives one value may expand into (windash and base64offset multiply). */
#define SIGMA_EXPANSION_MAX 256u
/* Longest value of a native rule (docs/rules.md). */
#define SIGMA_VALUE_MAX 4096u

enum sigma_status {
	SIGMA_CONVERTED = 0,
	SIGMA_UNSUPPORTED_LOGSOURCE = 1, /* not a product/category vigil observes */
	SIGMA_UNCONVERTIBLE = 2,	 /* a supported source, but the rule cannot be expressed */
	SIGMA_INVALID = 3,		 /* not a well-formed Sigma rule */
};

struct sigma_result {
	enum sigma_status status;
	char id[65];	  /* the Sigma id, when one was read (empty otherwise) */
	struct buf text;  /* SIGMA_CONVERTED: the native rule file */
	char reason[512]; /* otherwise: why, one line, with the YAML line when known */
	char note[512];	  /* SIGMA_CONVERTED: what was folded away (empty when nothing) */
};

/*
 * Converts the Sigma rule in @src (@len bytes, need not be NUL-terminated). @origin names
 * the source in the converted file's header comment (may be NULL). Fills @res, which the
 * caller frees with sigma_result_free() whatever the outcome. Returns 0 when the rule was
 * converted, -ENOTSUP for an unsupported log source, -EINVAL when the rule is malformed or
 * cannot be expressed, -E2BIG past a limit, -ENOMEM; res->reason says which.
 */
int sigma_convert(const char *src, size_t len, const char *origin, struct sigma_result *res);

/* Frees what @res holds; accepts NULL. */
void sigma_result_free(struct sigma_result *res);

/*
 * Parses the Sigma condition @cond over the selection names @names (@n of them) and writes
 * its normalized form to @out as an S-expression, quantifiers expanded: "(and a (not b))",
 * "(or sel_1 sel_2)". For tests and diagnostics. Returns 0, or -EINVAL with a one-line
 * reason in @err (@out then holds nothing useful).
 */
int sigma_condition_normalize(const char *cond, const char *const *names, size_t n, struct buf *out,
			      char *err, size_t errlen);

#endif
