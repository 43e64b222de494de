/*
 * The rules' regular expressions on RE2 (rx.h). Every entry point catches what the C++ side
 * can throw (only allocation failure), so that no exception crosses into C.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <map>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <re2/filtered_re2.h>
#include <re2/re2.h>

extern "C" {
#include "rx.h"
}

struct rx {
	re2::RE2 re;
	rx(const re2::StringPiece &p, const re2::RE2::Options &o) : re(p, o)
	{
	}
};

/*
 * The regexes of one field. Each regex's atoms come from RE2's prefilter of that regex alone:
 * a monotone formula over its atoms that holds for every value it matches, so a value with
 * none of them cannot match (unless the formula is always true: the regex is unfiltered).
 * The set keeps, per atom, the regexes it may trigger.
 */
struct rx_set {
	std::vector<std::string> pats;
	std::vector<rx *> re;
	std::vector<std::string> atoms;
	std::vector<uint32_t> fan_start, fan; /* atom k: fan[fan_start[k] .. fan_start[k + 1]) */
	std::vector<uint32_t> unfiltered;
	size_t bytes = 0;
	bool compiled = false;
	~rx_set()
	{
		for (rx *r : re)
			delete r;
	}
};

static re2::RE2::Options rx_options()
{
	re2::RE2::Options o;

	o.set_encoding(re2::RE2::Options::EncodingLatin1);
	o.set_log_errors(false);
	o.set_max_mem(RX_MAX_MEM);
	o.set_never_capture(true);
	return o;
}

/* Copies @msg into @err on one line: RE2's reasons quote the pattern, which may hold any byte. */
static void set_err(char *err, size_t errlen, const char *msg)
{
	if (!err || !errlen)
		return;
	snprintf(err, errlen, "%s", msg);
	for (char *c = err; *c; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	}
}

/* Compiles @pat into *@out; the reason in @err when refused. */
static int compile_one(const char *pat, size_t len, rx **out, char *err, size_t errlen)
{
	*out = nullptr;
	if (memchr(pat, '\0', len)) {
		set_err(err, errlen, "the pattern contains a NUL byte");
		return -EINVAL;
	}
	rx *r = new (std::nothrow) rx(re2::StringPiece(pat, len), rx_options());
	if (!r)
		return -ENOMEM;
	if (!r->re.ok()) {
		set_err(err, errlen, r->re.error().c_str());
		delete r;
		return -EINVAL;
	}
	*out = r;
	return 0;
}

int rx_new(const char *pat, size_t len, struct rx **out, char *err, size_t errlen)
{
	try {
		return compile_one(pat, len, out, err, errlen);
	} catch (...) {
		*out = nullptr;
		return -ENOMEM;
	}
}

bool rx_search(const struct rx *r, const char *s, size_t len)
{
	try {
		return re2::RE2::PartialMatch(re2::StringPiece(s ? s : "", len), r->re);
	} catch (...) {
		return false;
	}
}

size_t rx_bytes(const struct rx *r)
{
	return r && r->re.ok() ? (size_t)r->re.ProgramSize() * 16u : 0;
}

void rx_free(struct rx *r)
{
	delete r;
}

int rx_set_new(struct rx_set **out)
{
	*out = new (std::nothrow) rx_set();
	return *out ? 0 : -ENOMEM;
}

int rx_set_add(struct rx_set *s, const char *pat, size_t len, char *err, size_t errlen)
{
	rx *r = nullptr;
	int ret;

	if (s->compiled)
		return -EINVAL;
	if (s->re.size() >= RX_MAX_SET)
		return -E2BIG;
	try {
		if ((ret = compile_one(pat, len, &r, err, errlen)) < 0)
			return ret;
		s->pats.emplace_back(pat, len);
		s->re.push_back(r);
		s->bytes += rx_bytes(r);
		return 0;
	} catch (...) {
		if (s->pats.size() > s->re.size())
			s->pats.pop_back();
		delete r;
		return -ENOMEM;
	}
}

/*
 * The atoms of at least @min bytes regex @pat needs, into @out; false when it has none (it
 * may match anything).
 */
static bool atoms_of(const std::string &pat, int min, std::vector<std::string> *out)
{
	re2::FilteredRE2 f(min);
	std::vector<int> none, always;
	int id;

	out->clear();
	if (f.Add(pat, rx_options(), &id) != re2::RE2::NoError)
		return false;
	f.Compile(out);
	f.AllPotentials(none, &always);
	return always.empty() && !out->empty();
}

static int set_compile(struct rx_set *s)
{
	std::map<std::string, uint32_t> index;
	std::vector<std::pair<uint32_t, uint32_t>> pairs; /* (atom, regex) */
	std::vector<std::string> mine;

	for (uint32_t i = 0; i < s->re.size(); i++) {
		/* atoms of RX_MIN_ATOM bytes; of RX_MIN_ATOM_LAST when a regex has no longer ones
		 */
		if (!atoms_of(s->pats[i], (int)RX_MIN_ATOM, &mine) &&
		    !atoms_of(s->pats[i], (int)RX_MIN_ATOM_LAST, &mine)) {
			s->unfiltered.push_back(i);
			continue;
		}
		for (const std::string &a : mine) {
			auto it = index.emplace(a, (uint32_t)index.size()).first;
			pairs.emplace_back(it->second, i);
		}
		if (index.size() > RX_MAX_ATOMS)
			return -E2BIG;
	}
	s->atoms.resize(index.size());
	for (const auto &kv : index)
		s->atoms[kv.second] = kv.first;
	std::sort(pairs.begin(), pairs.end());
	pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
	s->fan_start.assign(s->atoms.size() + 1, 0);
	for (const auto &p : pairs)
		s->fan_start[p.first + 1]++;
	for (size_t k = 0; k < s->atoms.size(); k++)
		s->fan_start[k + 1] += s->fan_start[k];
	s->fan.resize(pairs.size());
	for (size_t k = 0; k < pairs.size(); k++)
		s->fan[k] = pairs[k].second;
	s->pats.clear();
	s->pats.shrink_to_fit();
	return 0;
}

int rx_set_compile(struct rx_set *s)
{
	int ret;

	if (s->compiled || s->re.empty())
		return -EINVAL;
	try {
		ret = set_compile(s);
	} catch (...) {
		ret = -ENOMEM;
	}
	if (ret < 0) {
		s->atoms.clear();
		s->fan_start.clear();
		s->fan.clear();
		s->unfiltered.clear();
		return ret;
	}
	s->compiled = true;
	return 0;
}

size_t rx_set_atom_count(const struct rx_set *s)
{
	return s->compiled ? s->atoms.size() : 0;
}

const char *rx_set_atom(const struct rx_set *s, size_t i, size_t *len)
{
	if (i >= rx_set_atom_count(s)) {
		*len = 0;
		return nullptr;
	}
	*len = s->atoms[i].size();
	return s->atoms[i].data();
}

bool rx_set_has_unfiltered(const struct rx_set *s)
{
	return !s->unfiltered.empty();
}

size_t rx_set_count(const struct rx_set *s)
{
	return s->re.size();
}

size_t rx_set_bytes(const struct rx_set *s)
{
	return s->bytes;
}

int rx_set_match(const struct rx_set *s, const char *str, size_t len, const unsigned *atoms,
		 size_t n_atoms, void (*hit)(void *ctx, unsigned id), void *ctx)
{
	/* per regex, the call that last ran it: each runs once per call; kept per thread, so a
	 * search allocates nothing once this thread has seen a set this large */
	static thread_local std::vector<uint32_t> stamp;
	static thread_local uint32_t gen;
	int n = 0;

	if (!s->compiled)
		return 0;
	try {
		if (stamp.size() < s->re.size())
			stamp.resize(s->re.size(), 0);
	} catch (...) {
		return -ENOMEM;
	}
	if (++gen == 0) {
		std::fill(stamp.begin(), stamp.end(), 0);
		gen = 1;
	}
	for (uint32_t i : s->unfiltered) {
		if (rx_search(s->re[i], str, len)) {
			hit(ctx, i);
			n++;
		}
	}
	for (size_t k = 0; k < n_atoms; k++) {
		unsigned a = atoms[k];
		if (a >= s->atoms.size())
			continue;
		for (uint32_t f = s->fan_start[a]; f < s->fan_start[a + 1]; f++) {
			uint32_t i = s->fan[f];
			if (stamp[i] == gen)
				continue;
			stamp[i] = gen;
			if (rx_search(s->re[i], str, len)) {
				hit(ctx, i);
				n++;
			}
		}
	}
	return n;
}

void rx_set_free(struct rx_set *s)
{
	delete s;
}
