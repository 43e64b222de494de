/*
 * The web console: one static page and its script, served at /console. It holds no data of
 * its own; everything it shows comes from the admin API with the token the operator types,
 * kept in the browser tab's session storage only. Text is put into the page with textContent,
 * never as HTML, and the Content-Security-Policy allows only this server's own script.
 */
#include <string.h>

#include "server.h"

static const char page[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>vigil console</title>\n"
    "<style>\n"
    "body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}\n"
    "header{background:#1d2733;color:#fff;padding:8px 16px;display:flex;gap:16px;"
    "align-items:center}\n"
    "header h1{font-size:16px;margin:0 16px 0 0}\n"
    "nav button{background:none;border:0;color:#cfd8e3;cursor:pointer;font-size:14px}\n"
    "nav button.on{color:#fff;text-decoration:underline}\n"
    "main{padding:16px}\n"
    "table{border-collapse:collapse;background:#fff;width:100%}\n"
    "td,th{border-bottom:1px solid #e3e6ea;padding:4px 8px;text-align:left;"
    "vertical-align:top}\n"
    "th{background:#eef1f4}\n"
    "#msg{color:#b00020;margin:8px 0}\n"
    "input{font:inherit;padding:2px 4px}\n"
    "button.act{margin-right:4px}\n"
    "</style></head><body>\n"
    "<header><h1>vigil</h1><nav id=\"tabs\"></nav>\n"
    "<span style=\"margin-left:auto\"><input id=\"token\" type=\"password\" size=\"30\" "
    "placeholder=\"admin token\"> <button id=\"save\">use token</button></span></header>\n"
    "<main><div id=\"msg\"></div><div id=\"view\"></div></main>\n"
    "<script src=\"/console/app.js\"></script>\n"
    "</body></html>\n";

static const char script[] =
    "'use strict';\n"
    "const tabs = ['agents', 'rollouts', 'releases', 'groups', 'alerts', 'decisions', "
    "'audit'];\n"
    "let current = 'agents';\n"
    "const $ = (id) => document.getElementById(id);\n"
    "function token() { return sessionStorage.getItem('vigil-token') || ''; }\n"
    "function say(text) { $('msg').textContent = text || ''; }\n"
    "async function api(method, path, body) {\n"
    "  const r = await fetch('/api/v1/admin/' + path, {method,\n"
    "    headers: {'Authorization': 'Bearer ' + token(), 'Content-Type': 'application/json'},\n"
    "    body: body === undefined ? undefined : JSON.stringify(body)});\n"
    "  const j = await r.json().catch(() => ({}));\n"
    "  if (!r.ok) throw new Error(r.status + ': ' + (j.error || r.statusText));\n"
    "  return j;\n"
    "}\n"
    "function cell(v) {\n"
    "  const td = document.createElement('td');\n"
    "  if (v instanceof Node) td.appendChild(v);\n"
    "  else td.textContent = v === null || v === undefined ? '' :\n"
    "    (typeof v === 'object' ? JSON.stringify(v) : String(v));\n"
    "  return td;\n"
    "}\n"
    "function table(cols, rows) {\n"
    "  const t = document.createElement('table');\n"
    "  const h = t.insertRow();\n"
    "  for (const c of cols) { const th = document.createElement('th'); th.textContent = c;\n"
    "    h.appendChild(th); }\n"
    "  for (const r of rows) { const tr = t.insertRow(); for (const v of r) "
    "tr.appendChild(cell(v)); }\n"
    "  return t;\n"
    "}\n"
    "function button(label, fn) {\n"
    "  const b = document.createElement('button'); b.className = 'act'; b.textContent = label;\n"
    "  b.onclick = async () => { try { await fn(); say(label + ': done'); show(current); }\n"
    "    catch (e) { say(e.message); } };\n"
    "  return b;\n"
    "}\n"
    "function actions(r) {\n"
    "  const span = document.createElement('span');\n"
    "  for (const a of ['pause', 'resume', 'halt', 'rollback', 'promote'])\n"
    "    span.appendChild(button(a, () => api('POST', 'rollouts/' + r.id + '/' + a, {})));\n"
    "  span.appendChild(button('approve', () => {\n"
    "    const g = prompt('approve for group'); if (!g) throw new Error('no group');\n"
    "    return api('POST', 'rollouts/' + r.id + '/approve', {group: g}); }));\n"
    "  return span;\n"
    "}\n"
    "const views = {\n"
    "  agents: async () => table(['id', 'group', 'host', 'last seen', 'content', 'sensor',\n"
    "    'restarts', 'reverts', 'quarantined', 'liveness', 'alerts'],\n"
    "    (await api('GET', 'agents?limit=1000')).agents.map(a => [a.id, a.group, a.hostname,\n"
    "      a.last_seen, a.content_version, a.sensor_version, a.restarts,\n"
    "      a.crash_loop_reverts, a.quarantined.join(' '), a.liveness.last, a.alerts])),\n"
    "  rollouts: async () => {\n"
    "    const d = await api('GET', 'rollouts');\n"
    "    const div = document.createElement('div');\n"
    "    div.appendChild(button('emergency stop', () => {\n"
    "      if (!confirm('halt every active rollout?')) throw new Error('cancelled');\n"
    "      return api('POST', 'emergency-stop', {}); }));\n"
    "    div.appendChild(table(['id', 'state', 'version', 'previous', 'step', 'plan',\n"
    "      'approved', 'actions'], d.rollouts.slice().reverse().map(r => [r.id, r.state,\n"
    "      r.release.version, r.previous, r.step,\n"
    "      r.plan.map(s => s.ring + ':' + s.percent + '%').join(' '), r.approved.join(' '),\n"
    "      actions(r)])));\n"
    "    return div;\n"
    "  },\n"
    "  releases: async () => table(['id', 'version', 'kind', 'name', 'hash', 'size', "
    "'created', 'by'],\n"
    "    (await api('GET', 'releases')).releases.map(r => [r.id, r.version, r.kind, r.name,\n"
    "      r.hash, r.size, r.created, r.created_by])),\n"
    "  groups: async () => table(['name', 'policy', 'updated'],\n"
    "    (await api('GET', 'groups')).groups.map(g => [g.name, g.policy, g.updated])),\n"
    "  alerts: async () => table(['at', 'agent', 'rule', 'seq', 'data'],\n"
    "    (await api('GET', 'alerts?limit=200')).alerts.map(a => [a.at, a.agent_id, a.rule_id,\n"
    "      a.seq, a.data])),\n"
    "  decisions: async () => table(['at', 'rollout', 'kind', 'reason', 'failed gate'],\n"
    "    (await api('GET', 'decisions?limit=200')).decisions.map(d => [d.at, d.rollout,\n"
    "      d.kind, d.detail.reason, d.detail.failed_gate])),\n"
    "  audit: async () => table(['at', 'who', 'action', 'target', 'result'],\n"
    "    (await api('GET', 'audit?limit=200')).audit.map(a => [a.at, a.who, a.action, "
    "a.target,\n"
    "      a.result])),\n"
    "};\n"
    "async function show(name) {\n"
    "  current = name;\n"
    "  for (const b of $('tabs').children) b.className = b.textContent === name ? 'on' : '';\n"
    "  if (!token()) { say('enter an admin token'); return; }\n"
    "  try { const v = await views[name](); $('view').replaceChildren(v); }\n"
    "  catch (e) { say(e.message); $('view').replaceChildren(); }\n"
    "}\n"
    "for (const t of tabs) {\n"
    "  const b = document.createElement('button'); b.textContent = t;\n"
    "  b.onclick = () => { say(''); show(t); }; $('tabs').appendChild(b);\n"
    "}\n"
    "$('save').onclick = () => { sessionStorage.setItem('vigil-token', $('token').value);\n"
    "  $('token').value = ''; say(''); show(current); };\n"
    "show(current);\n";

static void serve(struct reply *rp, const char *body, size_t len, const char *type)
{
	reply_json(rp, 200);
	if (buf_append(&rp->body, body, len)) {
		reply_error(rp, 500, "out of memory");
		return;
	}
	rp->content_type = type;
	rp->csp = true;
}

void console_page(struct request *rq, struct reply *rp)
{
	(void)rq;
	serve(rp, page, sizeof(page) - 1, "text/html; charset=utf-8");
}

void console_script(struct request *rq, struct reply *rp)
{
	(void)rq;
	serve(rp, script, sizeof(script) - 1, "text/javascript; charset=utf-8");
}
