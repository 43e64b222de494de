/*
 * The program verifier: nothing the compiler emits runs before this passes. It checks every
 * field id and type, every predicate and pool index, that jumps go forward and stay inside
 * the program (so there are no loops), and the stack depth at every instruction.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "compile_int.h"

#define VFAIL(err, errlen, ...) (snprintf((err), (errlen), __VA_ARGS__), -EINVAL)

bool pred_kind_fits(enum pred_kind kind, enum field_type type)
{
	switch (kind) {
	case PK_SCAN:
	case PK_STR_EQ:
	case PK_REGEX:
		return type == FT_STRING || type == FT_STRLIST;
	case PK_EXISTS:
		return true;
	case PK_INT_CMP:
	case PK_INT_IN:
		return type == FT_INT;
	case PK_IP_IN:
		return type == FT_IP;
	case PK_BOOL_EQ:
		return type == FT_BOOL;
	default:
		return false;
	}
}

static bool range_ok(uint32_t off, uint32_t n, uint32_t size)
{
	return n >= 1 && off <= size && n <= size - off;
}

static int pred_verify(const struct cpred *cp, uint32_t i, const struct pool_sizes *pools,
		       char *err, size_t errlen)
{
	const struct field_info *f = registry_field(cp->field);
	if (!f)
		return VFAIL(err, errlen, "predicate %u: field id %u out of range (%d fields)", i,
			     cp->field, FIELD_COUNT);
	if (cp->kind >= PK_COUNT || !pred_kind_fits((enum pred_kind)cp->kind, f->type))
		return VFAIL(err, errlen, "predicate %u: kind %u does not fit field %s of type %s",
			     i, cp->kind, f->name, registry_type_name(f->type));
	if (cp->flags & ~PF_CASELESS)
		return VFAIL(err, errlen, "predicate %u: unknown flags 0x%x", i, cp->flags);
	switch (cp->kind) {
	case PK_SCAN:
	case PK_STR_EQ:
		if (cp->op >= ROP_COUNT || !range_ok(cp->off, cp->n, pools->n_strs))
			return VFAIL(err, errlen, "predicate %u: string values out of range", i);
		break;
	case PK_REGEX:
		if (cp->op != ROP_REGEX || !range_ok(cp->off, cp->n, pools->n_strs) || cp->n != 1 ||
		    cp->num < 0 || cp->num >= (int64_t)pools->n_lazy)
			return VFAIL(err, errlen, "predicate %u: on-demand regex out of range", i);
		break;
	case PK_INT_IN:
		if (!range_ok(cp->off, cp->n, pools->n_ints))
			return VFAIL(err, errlen, "predicate %u: integer values out of range", i);
		break;
	case PK_IP_IN:
		if (!range_ok(cp->off, cp->n, pools->n_nets))
			return VFAIL(err, errlen, "predicate %u: address values out of range", i);
		break;
	case PK_INT_CMP:
		if (cp->cmp > CMP_EQ)
			return VFAIL(err, errlen, "predicate %u: bad comparison %u", i, cp->cmp);
		break;
	case PK_BOOL_EQ:
		if (cp->num < 1 || cp->num > 3)
			return VFAIL(err, errlen, "predicate %u: bad boolean set", i);
		break;
	default:
		break;
	}
	return 0;
}

int program_verify(const struct prog_view *p, const struct pool_sizes *pools, char *err,
		   size_t errlen)
{
	int16_t *depth;
	int ret = 0;

	if (!p->code || p->n_code == 0 || p->n_code > RULES_MAX_PROGRAM_INSNS)
		return VFAIL(err, errlen, "program of %u instructions (1 to %u allowed)", p->n_code,
			     RULES_MAX_PROGRAM_INSNS);
	if (p->n_preds > RULES_MAX_PREDICATES_PER_RULE || (p->n_preds && !p->preds))
		return VFAIL(err, errlen, "program with %u predicates (at most %u)", p->n_preds,
			     RULES_MAX_PREDICATES_PER_RULE);
	for (uint32_t i = 0; i < p->n_preds; i++) {
		if ((ret = pred_verify(&p->preds[i], i, pools, err, errlen)) < 0)
			return ret;
	}
	/* stack depth before each instruction; -1 until some path reaches it */
	depth = malloc(((size_t)p->n_code + 1) * sizeof(*depth));
	if (!depth)
		return -ENOMEM;
	for (uint32_t i = 0; i <= p->n_code; i++)
		depth[i] = -1;
	depth[0] = 0;
	for (uint32_t pc = 0; pc < p->n_code; pc++) {
		const struct insn *in = &p->code[pc];
		int d = depth[pc], next;
		if (d < 0) {
			ret = VFAIL(err, errlen, "instruction %u is unreachable", pc);
			goto out_free;
		}
		switch (in->op) {
		case OP_PRED:
			if (in->arg >= p->n_preds) {
				ret = VFAIL(err, errlen,
					    "instruction %u: predicate %u out of range (%u)", pc,
					    in->arg, p->n_preds);
				goto out_free;
			}
			next = d + 1;
			break;
		case OP_NOT:
		case OP_JF:
		case OP_JT:
			next = d;
			if (d < 1) {
				ret = VFAIL(err, errlen, "instruction %u: stack underflow", pc);
				goto out_free;
			}
			break;
		case OP_AND:
		case OP_OR:
			next = d - 1;
			if (d < 2) {
				ret = VFAIL(err, errlen, "instruction %u: stack underflow", pc);
				goto out_free;
			}
			break;
		case OP_POP:
			next = d - 1;
			if (d < 1) {
				ret = VFAIL(err, errlen, "instruction %u: stack underflow", pc);
				goto out_free;
			}
			break;
		default:
			ret = VFAIL(err, errlen, "instruction %u: unknown opcode %u", pc, in->op);
			goto out_free;
		}
		if (next > (int)RULES_MAX_STACK) {
			ret = VFAIL(err, errlen, "instruction %u: stack deeper than %u", pc,
				    RULES_MAX_STACK);
			goto out_free;
		}
		if (in->op == OP_JF || in->op == OP_JT) {
			/* arg counts forward from the next instruction: no backward jumps */
			if (in->arg > p->n_code - pc - 1) {
				ret = VFAIL(err, errlen,
					    "instruction %u: jump by %u leaves the program", pc,
					    in->arg);
				goto out_free;
			}
			uint32_t to = pc + 1 + in->arg;
			if (depth[to] >= 0 && depth[to] != d) {
				ret = VFAIL(err, errlen,
					    "instruction %u: jump reaches %u with stack %d, not %d",
					    pc, to, d, depth[to]);
				goto out_free;
			}
			depth[to] = (int16_t)d;
		}
		if (depth[pc + 1] >= 0 && depth[pc + 1] != next) {
			ret = VFAIL(err, errlen, "instruction %u: stack %d meets %d at %u", pc,
				    next, depth[pc + 1], pc + 1);
			goto out_free;
		}
		depth[pc + 1] = (int16_t)next;
	}
	if (depth[p->n_code] != 1)
		ret = VFAIL(err, errlen, "program ends with stack %d, not 1", depth[p->n_code]);
out_free:
	free(depth);
	return ret;
}

static int fail_rule(const struct ruleset *rs, uint32_t rule, char *err, size_t errlen,
		     const char *why)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "%s", why);
	if (rule < rs->n_rules)
		return rules_fail(err, errlen, -EINVAL, rs->rules[rule].info.file,
				  rs->rules[rule].info.line, NULL,
				  "compiled program of rule %s failed verification: %s",
				  rs->rules[rule].info.id, msg);
	snprintf(err, errlen, "compiled rules failed verification: %s", msg);
	return -EINVAL;
}

int ruleset_verify(const struct ruleset *rs, char *err, size_t errlen)
{
	struct pool_sizes pools = {rs->n_strs, rs->n_ints, rs->n_nets, rs->n_lazy};
	char why[200];
	int ret;

	for (uint32_t i = 0; i < rs->n_lazy; i++) {
		if (!rs->lazy[i])
			return fail_rule(rs, UINT32_MAX, err, errlen, "on-demand regex missing");
	}
	for (uint32_t i = 0; i < rs->n_progs; i++) {
		const struct cprog *p = &rs->progs[i];
		if (p->rule >= rs->n_rules)
			return fail_rule(rs, p->rule, err, errlen, "program names no rule");
		if (p->pred_base > rs->n_preds || p->n_preds > rs->n_preds - p->pred_base ||
		    p->code_off > rs->n_code || p->n_code > rs->n_code - p->code_off ||
		    p->act_off > rs->n_act_ids || p->n_act > rs->n_act_ids - p->act_off)
			return fail_rule(rs, p->rule, err, errlen, "program ranges out of bounds");
		for (uint32_t k = 0; k < p->n_act; k++) {
			if (rs->act_ids[p->act_off + k] >= rs->n_actions)
				return fail_rule(rs, p->rule, err, errlen, "action out of range");
		}
		if (p->by_field >= FIELD_COUNT || p->by_field < -1 ||
		    (p->by_field >= 0 && (registry_field(p->by_field)->type == FT_STRLIST ||
					  registry_field(p->by_field)->type == FT_BOOL)))
			return fail_rule(rs, p->rule, err, errlen, "bad state key field");
		struct prog_view v = {rs->code + p->code_off, p->n_code, rs->preds + p->pred_base,
				      p->n_preds};
		if ((ret = program_verify(&v, &pools, why, sizeof(why))) < 0)
			return ret == -EINVAL ? fail_rule(rs, p->rule, err, errlen, why) : ret;
		uint32_t req = 0;
		for (uint32_t k = 0; k < p->n_preds; k++) {
			if (rs->pred_prog[p->pred_base + k] != i)
				return fail_rule(rs, p->rule, err, errlen,
						 "predicate owner mismatch");
			if (rs->pred_req[p->pred_base + k]) {
				if (rs->preds[p->pred_base + k].kind != PK_SCAN)
					return fail_rule(rs, p->rule, err, errlen,
							 "required predicate is not a pattern");
				req++;
			}
		}
		if (req != p->n_req || (req && !p->needs_hit))
			return fail_rule(rs, p->rule, err, errlen,
					 "required predicate count mismatch");
	}
	for (uint32_t i = 0; i < rs->n_rules; i++) {
		const struct crule *r = &rs->rules[i];
		if (r->n_progs == 0 || r->prog_first > rs->n_progs ||
		    r->n_progs > rs->n_progs - r->prog_first ||
		    (r->kind == RK_SEQUENCE && r->n_progs > RULES_MAX_SEQUENCE_STEPS))
			return fail_rule(rs, i, err, errlen, "rule programs out of range");
	}
	for (uint32_t i = 0; i < rs->n_dbs; i++) {
		const struct cdb *d = &rs->dbs[i];
		if (d->field >= FIELD_COUNT)
			return fail_rule(rs, UINT32_MAX, err, errlen,
					 "database field out of range");
		for (uint32_t k = 0; k < d->n_ids; k++) {
			if (d->fan_start[k] > d->fan_start[k + 1])
				return fail_rule(rs, UINT32_MAX, err, errlen, "bad fan-out table");
		}
		if (d->fan_start[d->n_ids] != d->n_fan)
			return fail_rule(rs, UINT32_MAX, err, errlen, "bad fan-out table");
		/* a literal database has positions, a regex database its set of n_ids regexes */
		if ((d->mode != NULL) == (d->rx != NULL) ||
		    (d->rx && rx_set_count(d->rx) != d->n_ids))
			return fail_rule(rs, UINT32_MAX, err, errlen,
					 "regex set does not match its database");
		for (uint32_t k = 0; d->mode && k < d->n_ids; k++) {
			if (d->mode[k] & ~(LIT_AT_START | LIT_AT_END))
				return fail_rule(rs, UINT32_MAX, err, errlen,
						 "bad literal position");
		}
		if (d->n_exact_cs > d->n_exact ||
		    (d->n_exact && (!d->mode || !d->slots || d->slot_mask < d->n_exact ||
				    (d->slot_mask & (d->slot_mask + 1)) != 0)))
			return fail_rule(rs, UINT32_MAX, err, errlen, "bad lookup table");
		for (uint32_t k = 0; d->n_exact && k <= d->slot_mask; k++) {
			if (d->slots[k] > d->n_exact)
				return fail_rule(rs, UINT32_MAX, err, errlen, "bad lookup table");
		}
		for (uint32_t k = 0; k < d->n_exact; k++) {
			const struct cexact *x = &d->exact[k];
			if (x->id >= d->n_ids || d->mode[x->id] != (LIT_AT_START | LIT_AT_END) ||
			    x->off > rs->blob_len || x->len > rs->blob_len - x->off)
				return fail_rule(rs, UINT32_MAX, err, errlen, "bad lookup table");
		}
		for (uint32_t k = 0; k < d->n_fan; k++) {
			uint32_t p = d->fan_preds[k];
			if (p >= rs->n_preds || rs->preds[p].kind != PK_SCAN ||
			    rs->preds[p].field != d->field)
				return fail_rule(rs, UINT32_MAX, err, errlen,
						 "database sets a predicate it does not own");
		}
	}
	if (rs->n_buckets != rs->n_actions + 1)
		return fail_rule(rs, UINT32_MAX, err, errlen, "bucket count mismatch");
	for (uint32_t b = 0; b < rs->n_buckets; b++) {
		const struct cbucket *bk = &rs->buckets[b];
		for (uint32_t k = 0; k < bk->n_always; k++) {
			if (bk->always[k] >= rs->n_progs)
				return fail_rule(rs, UINT32_MAX, err, errlen,
						 "bucket program out of range");
		}
		for (uint32_t k = 0; k < bk->n_dbs; k++) {
			if (bk->dbs[k].db >= rs->n_dbs ||
			    rs->dbs[bk->dbs[k].db].field != bk->dbs[k].field)
				return fail_rule(rs, UINT32_MAX, err, errlen,
						 "bucket database out of range");
		}
	}
	return 0;
}
