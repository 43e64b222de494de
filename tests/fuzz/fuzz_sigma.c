/*
 * libFuzzer target for the Sigma converter: any bytes as a Sigma rule. A rule that converts
 * must compile with the rule compiler (the converter never emits what lint would refuse);
 * one that does not must say why. The same bytes also go through the condition parser.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/rules.h"
#include "lib/sigma.h"

static const char *const names[] = {"selection", "sel_a", "sel_b", "filter", "_x", "keywords"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sigma_result res;
	char err[512], *cond;
	struct buf out;
	int rc;

	rc = sigma_convert((const char *)data, size, "fuzz.yml", &res);
	if (rc == 0) {
		struct rules_source src = {
		    .name = "fuzz.yml", .data = res.text.data, .len = res.text.len};
		struct ruleset *rs = NULL;
		if (res.status != SIGMA_CONVERTED || res.id[0] == '\0')
			abort();
		if (ruleset_load_sources(&src, 1, &rs, err, sizeof(err)) != 0) {
			fprintf(stderr, "converted rule refused by the compiler: %s\n%s\n", err,
				res.text.data);
			abort();
		}
		ruleset_free(rs);
	} else if (res.status == SIGMA_CONVERTED || res.reason[0] == '\0' ||
		   strchr(res.reason, '\n') || res.text.len != 0) {
		abort();
	}
	sigma_result_free(&res);

	if (size > SIGMA_COND_MAX + 16)
		return 0;
	cond = malloc(size + 1);
	if (!cond)
		return 0;
	memcpy(cond, data, size);
	cond[size] = '\0';
	buf_init(&out, 1u << 20);
	if (sigma_condition_normalize(cond, names, sizeof(names) / sizeof(names[0]), &out, err,
				      sizeof(err)) != 0 &&
	    err[0] == '\0')
		abort();
	buf_release(&out);
	free(cond);
	return 0;
}
