/*
 * The audit log: who did what to what, when, and how it ended, for every admin action.
 */
#include <stdio.h>

#include "server.h"

void audit_record(struct server *srv, const struct principal *who, const char *action,
		  const char *target, unsigned status, const char *result, int64_t now)
{
	struct store_audit a = {0};
	char res[320];
	int ret;

	snprintf(a.who, sizeof(a.who), "%s", who->name[0] ? who->name : "anonymous");
	snprintf(res, sizeof(res), "%u%s%s", status, result && result[0] ? " " : "",
		 result ? result : "");
	a.at = now;
	a.action = action;
	a.target = target;
	a.result = res;
	ret = srv->store->ops->audit_add(srv->store, &a);
	if (ret)
		fprintf(stderr, "vigil-server: audit: cannot record %s by %s (%d)\n", action, a.who,
			ret);
}
