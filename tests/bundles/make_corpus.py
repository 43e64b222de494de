#!/usr/bin/env python3
"""
Generates the bad-bundle corpus: bundles that a verifier must refuse, each with the reason it
must give, plus the correctly signed bundles whose content the agent's compiler must refuse.

Usage: make_corpus.py --vigil build/vigil OUTDIR
Writes OUTDIR/keys/ (made by `vigil keygen`), OUTDIR/root.json (`vigil root create`, content
threshold 2), OUTDIR/cases/*.bundle and OUTDIR/index.json: a list of cases, each
  {"id", "kind", "file", "expect", "root", "args", "note"}
where kind is
  "reject"   `vigil content verify FILE --root ROOT [ARGS]` must exit 1 with a reason matching
             the regular expression "expect";
  "accept"   it must exit 0 and print the manifest;
  "compile"  correctly signed content made with --skip-validation: verify accepts it, and the
             agent's compile step (`vigil content verify --compile`) must refuse it with
             "expect". These stand for the rule-compiler defect classes the agent must catch.
Nothing here is committed as binary: the corpus is made at test time. Bundles the builder would
refuse to make are assembled and signed here (ed25519.py), from the layout in docs/bundles.md.
"""
import argparse
import base64
import hashlib
import json
import os
import pathlib
import random
import struct
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import ed25519  # noqa: E402

MAGIC = b"VIGILBDL"
FORMAT = 1
HEADER = 32
SIG_ENTRY = 72
CTX_MANIFEST = b"vigil bundle manifest v1\0"
CTX_ROOT = b"vigil root v1\0"
MAX_BYTES = 64 * 1024 * 1024
MAX_MANIFEST = 4 * 1024 * 1024
MAX_FILES = 20000
MAX_FILE = 16 * 1024 * 1024
VERSION = 10  # the base bundle's version

BASE_RULES = {
    "base.yml": """\
rules:
  - id: corpus-base-1
    name: Corpus base rule
    level: low
    condition:
      all:
        - event.action: exec
        - process.executable: {endswith: /corpus-marker}
    tests:
      match:
        - {event.action: exec, process.executable: /tmp/corpus-marker}
      nomatch:
        - {event.action: exec, process.executable: /bin/true}
""",
    "lists.yml": """\
lists:
  corpus_shells: [/bin/sh, /bin/bash]
""",
    "sub/more.yml": """\
rules:
  - id: corpus-base-2
    name: Corpus shell rule
    level: medium
    condition:
      all:
        - event.action: exec
        - process.executable: {in: "@corpus_shells"}
        - process.args: {contains: corpus-shell-marker}
    tests:
      match:
        - {event.action: exec, process.executable: /bin/sh,
           process.args: [sh, -c, corpus-shell-marker]}
      nomatch:
        - {event.action: exec, process.executable: /bin/sh, process.args: [sh]}
""",
}


def _rule(cond, rid="corpus-defect-1", extra=""):
    return (f"{extra}rules:\n  - id: {rid}\n    name: Defect\n    level: low\n"
            f"    condition: {cond}\n")


# Defect classes of the rule compiler, as correctly signed content (kind "compile").
COMPILE_DEFECTS = [
    ("unknown-field", {"r.yml": _rule("{process.nosuchfield: abc}")}, r"unknown field"),
    ("newer-schema", {"r.yml": _rule("{process.executable: /x}", extra="schema: 99\n")},
     r"schema version 99"),
    ("type-mismatch", {"r.yml": _rule("{process.pid: {contains: abc}}")},
     r"does not apply to a field of type integer"),
    ("wrong-arity", {"r.yml": _rule("{not: [{process.pid: 1}, {process.pid: 2}]}")},
     r"takes one condition"),
    ("invalid-utf8", {"r.yml": b"rules:\n  - id: x1\n    name: \"n\xff\xfe\"\n    level: low\n"
                               b"    condition: {process.executable: a}\n"},
     r"UTF-8"),
    ("deep-condition-10000", {"r.yml": _rule("{not: " * 10000 + "{process.pid: 1}" +
                                             "}" * 10000)},
     r"nested deeper|deeper than|depth"),
    ("regex-rejected", {"r.yml": _rule('{process.executable: {regex: "(a)\\\\1"}}')},
     r"rejected by the linear-time engine|[Bb]ack-reference"),
    ("duplicate-ids", {"r.yml": _rule("{process.executable: a}") +
                       "  - id: corpus-defect-1\n    name: Again\n    level: low\n"
                       "    condition: {process.executable: b}\n"},
     r"duplicate rule id"),
    ("failing-test", {"r.yml": _rule("{process.executable: /bin/a}") +
                      "    tests:\n      match:\n        - {event.action: exec, "
                      "process.executable: /bin/b}\n"},
     r"rule tests? failed|test"),
]

# Names a payload must never carry: (id, name bytes).
BAD_NAMES = [
    ("dotdot", b"../x.yml"),
    ("absolute", b"/etc/x.yml"),
    ("dotdot-inside", b"a/../../b.yml"),
    ("nul", b"a\0b.yml"),
    ("very-long", b"n" * 129),
    ("very-long-4k", b"n" * 4096),
    ("empty-component", b"a//b.yml"),
    ("trailing-slash", b"a/"),
    ("dot-component", b"./x.yml"),
    ("hidden", b".hidden.yml"),
    ("space", b"a b.yml"),
    ("backslash", b"a\\b.yml"),
    ("non-ascii", "\u00e9.yml".encode()),
    ("newline", b"a\nb.yml"),
    ("too-deep", b"a/b/c/d/e/f/g/h/i.yml"),
    ("empty", b""),
    ("dot", b"."),
    ("dotdot-only", b".."),
]


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def blake(data):
    return hashlib.blake2b(data, digest_size=32).digest()


def when(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Key:
    """A vigil secret key file read back: id, public key, seed."""

    def __init__(self, path):
        lines = pathlib.Path(path).read_text().splitlines()
        raw = base64.b64decode(lines[1], validate=True)
        assert len(raw) == 82 and raw[:2] == b"Ed", f"{path}: not a vigil secret key"
        self.id, self.sk = raw[2:10], raw[18:82]
        self.seed, self.pk = self.sk[:32], self.sk[32:]
        assert ed25519.public(self.seed) == self.pk, f"{path}: Ed25519 self-check failed"
        assert blake(self.pk)[:8] == self.id, f"{path}: key id mismatch"

    def sign(self, ctx, data):
        return ed25519.sign(self.seed, blake(ctx + data))


def archive(files, count=None):
    """The payload archive of (name bytes, data bytes) pairs, in the order given."""
    out = struct.pack("<I", len(files) if count is None else count)
    for name, data in files:
        out += struct.pack("<H", len(name)) + name + struct.pack("<I", len(data)) + data
    return out


def manifest(archived, archive_bytes, now, **over):
    """The manifest object for @archived files (name bytes, data) and @archive_bytes; @over replaces
    fields (None removes one)."""
    m = {
        "created": when(now - 3600),
        "expires": when(now + 30 * 86400),
        "files": [{"name": n.decode("utf-8", "surrogateescape"), "size": len(d)}
                  for n, d in archived],
        "min_agent_version": "0.0.1",
        "name": "corpus",
        "payload": {"blake2b": blake(archive_bytes).hex(), "size": len(archive_bytes)},
        "schema_version": 1,
        "type": "vigil-bundle",
        "version": VERSION,
    }
    for k, v in over.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    return m


def assemble(mbytes, sigs, payload, magic=MAGIC, fmt=FORMAT, reserved=0, mlen=None, nsig=None,
             plen=None):
    hdr = magic + struct.pack("<IIIIQ", fmt, reserved, len(mbytes) if mlen is None else mlen,
                              len(sigs) if nsig is None else nsig,
                              len(payload) if plen is None else plen)
    return hdr + mbytes + b"".join(kid + sig for kid, sig in sigs) + payload


def signed(keys, mbytes, ctx=CTX_MANIFEST):
    return [(k.id, k.sign(ctx, mbytes)) for k in keys]


class Corpus:
    def __init__(self, vigil, out):
        self.vigil = str(vigil)
        self.out = pathlib.Path(out)
        self.cases = []
        self.now = int(time.time())
        (self.out / "cases").mkdir(parents=True, exist_ok=True)
        (self.out / "keys").mkdir(parents=True, exist_ok=True)

    def run(self, *args, check=True):
        res = subprocess.run([self.vigil, *map(str, args)], capture_output=True, text=True,
                             timeout=120)
        if check and res.returncode != 0:
            raise RuntimeError(f"vigil {' '.join(map(str, args))} failed: {res.stderr}")
        return res

    def add(self, cid, kind, data, expect, root=None, args=(), note=""):
        assert not any(c["id"] == cid for c in self.cases), f"case {cid} twice"
        name = f"{len(self.cases):03d}-{cid}.bundle"
        if data is not None:
            (self.out / "cases" / name).write_bytes(data)
        self.cases.append({"id": cid, "kind": kind, "file": f"cases/{name}", "expect": expect,
                           "root": root or "root.json", "args": list(args), "note": note})
        return self.out / "cases" / name

    # --- setup: keys, root, base bundle, all made by vigil itself ---
    def setup(self):
        keys = self.out / "keys"
        for k in ("root", "s1", "s2", "other"):
            if not (keys / f"{k}.key").exists():
                self.run("keygen", "-o", keys / k)
        self.root_key = Key(keys / "root.key")
        self.s1, self.s2 = Key(keys / "s1.key"), Key(keys / "s2.key")
        self.other = Key(keys / "other.key")
        self.run("root", "create", "--root-key", keys / "root.key", "--signer", keys / "s1.pub",
                 "--signer", keys / "s2.pub", "--threshold", 2, "-o", self.out / "root.json")
        rules = self.out / "rules" / "base"
        for name, text in BASE_RULES.items():
            (rules / name).parent.mkdir(parents=True, exist_ok=True)
            (rules / name).write_text(text)
        base = self.out / "base.bundle"
        self.run("content", "build", rules, "--version", VERSION, "--key", keys / "s1.key",
                 "--key", keys / "s2.key", "--name", "corpus", "-o", base)
        self.base = base.read_bytes()
        self.layout = self.parse(self.base)

    @staticmethod
    def parse(b):
        """Offsets of every section and archive field of a well-formed bundle."""
        _, _, mlen, nsig, plen = struct.unpack_from("<IIIIQ", b, 8)
        lay = {"mlen": mlen, "nsig": nsig, "plen": plen, "manifest": (HEADER, HEADER + mlen)}
        sig0 = HEADER + mlen
        lay["sigs"] = [(sig0 + i * SIG_ENTRY, sig0 + (i + 1) * SIG_ENTRY) for i in range(nsig)]
        p0 = sig0 + nsig * SIG_ENTRY
        lay["payload"] = (p0, p0 + plen)
        bounds, files = [p0 + 4], []
        off = p0 + 4
        (count,) = struct.unpack_from("<I", b, p0)
        for _ in range(count):
            (nl,) = struct.unpack_from("<H", b, off)
            name = b[off + 2:off + 2 + nl]
            (dl,) = struct.unpack_from("<I", b, off + 2 + nl)
            data = b[off + 6 + nl:off + 6 + nl + dl]
            files.append((name, data))
            bounds += [off + 2, off + 2 + nl, off + 6 + nl, off + 6 + nl + dl]
            off += 6 + nl + dl
        assert off == p0 + plen, "base bundle: archive does not fill the payload"
        lay["payload_bounds"], lay["files"] = bounds, files
        return lay

    def craft(self, files=None, keys=None, payload=None, mbytes=None, ctx=CTX_MANIFEST,
              mfiles=None, mpayload=None, **over):
        """A bundle signed here: @files (default: the base bundle's) in the archive, manifest
        fields @over (@mfiles, @mpayload: the manifest's "files" and "payload")."""
        files = self.layout["files"] if files is None else files
        payload = archive(files) if payload is None else payload
        if mfiles is not None:
            over["files"] = mfiles
        if mpayload is not None:
            over["payload"] = mpayload
        if mbytes is None:
            mbytes = canon(manifest(files, payload, self.now, **over))
        keys = [self.s1, self.s2] if keys is None else keys
        return assemble(mbytes, signed(keys, mbytes, ctx), payload)

    # --- the cases ---
    def baseline(self):
        self.add("base-as-built", "accept", self.base, "", note="vigil content build output")
        self.add("base-assembled-here", "accept", self.craft(), "",
                 note="the same layout assembled by this generator: the format is as documented")
        self.add("three-signatures-one-repeated", "accept",
                 self.craft(keys=[self.s1, self.s2, self.s1]), "",
                 note="a repeated signer is counted once; two distinct still meet the threshold")

    def truncations(self):
        lay, n = self.layout, len(self.base)
        bounds = {8, 12, 16, 20, 24, HEADER, lay["manifest"][1]}
        for s, e in lay["sigs"]:
            bounds |= {s + 8, e}
        bounds |= set(lay["payload_bounds"])
        cuts = set()
        for b in bounds:
            for d in range(-2, 3):
                if 0 <= b + d < n:
                    cuts.add(b + d)
        cuts |= {0, 1, n - 1}
        for cut in sorted(cuts):
            expect = (r"empty file" if cut == 0 else
                      r"truncated header" if cut < HEADER else
                      r"truncated: header declares")
            self.add(f"truncated-at-{cut}", "reject", self.base[:cut], expect,
                     note="truncation at or near a section boundary")

    def region(self, pos):
        lay = self.layout
        if pos < 8:
            return "magic", r"bad magic"
        if pos < 12:
            return "format", r"unsupported bundle format version"
        if pos < 16:
            return "reserved", r"reserved header field is not zero"
        if pos < 20:
            return "manifest-length", r"manifest length|truncated:|trailing bytes:"
        if pos < 24:
            return "signature-count", r"signature count|truncated:|trailing bytes:"
        if pos < HEADER:
            return "payload-length", r"payload length|truncated:|trailing bytes:"
        if pos < lay["manifest"][1]:
            return "manifest", r"bad signature"
        for s, e in lay["sigs"]:
            if s <= pos < s + 8:
                return "key-id", r"unknown key id"
            if s + 8 <= pos < e:
                return "signature", r"bad signature"
        return "payload", r"payload hash mismatch"

    def bitflips(self):
        n = len(self.base)
        rng = random.Random(20240719)
        positions = set(range(HEADER))  # every header byte once
        positions |= {int(i * (n - 1) / 63) for i in range(64)}  # evenly across the file
        positions |= set(rng.sample(range(HEADER, n), 24))  # and some chosen by a fixed seed
        lay = self.layout
        for s, e in [lay["manifest"], lay["payload"]] + lay["sigs"]:
            positions |= {s, e - 1}
        for pos in sorted(positions):
            bit = (pos * 7 + 3) % 8
            data = bytearray(self.base)
            data[pos] ^= 1 << bit
            where, expect = self.region(pos)
            self.add(f"bitflip-{pos}-{bit}", "reject", bytes(data), expect,
                     note=f"one bit flipped in the {where}")

    def header_cases(self):
        b, lay = self.base, self.layout
        self.add("empty", "reject", b"", r"empty file")
        self.add("text-file", "reject", b"untrusted comment: not a bundle\n" * 4, r"bad magic")
        self.add("magic-lowercase", "reject", b"vigilbdl" + b[8:], r"bad magic")
        self.add("format-2", "reject", b[:8] + struct.pack("<I", 2) + b[12:],
                 r"unsupported bundle format version 2")
        self.add("format-0", "reject", b[:8] + struct.pack("<I", 0) + b[12:],
                 r"unsupported bundle format version 0")
        self.add("reserved-set", "reject", b[:12] + struct.pack("<I", 1) + b[16:],
                 r"reserved header field")
        self.add("trailing-byte", "reject", b + b"\0", r"trailing bytes:")
        self.add("trailing-kib", "reject", b + b"A" * 1024, r"trailing bytes:")
        hdr = lambda mlen, nsig, plen: (MAGIC + struct.pack("<IIIIQ", 1, 0, mlen, nsig, plen))
        rest = b[HEADER:]
        self.add("manifest-length-zero", "reject", hdr(0, lay["nsig"], lay["plen"]) + rest,
                 r"manifest length 0 not in")
        self.add("manifest-length-over-cap", "reject",
                 hdr(MAX_MANIFEST + 1, lay["nsig"], lay["plen"]) + rest, r"manifest length \d+ not in")
        self.add("manifest-length-u32-max", "reject", hdr(2**32 - 1, lay["nsig"], lay["plen"]) +
                 rest, r"manifest length \d+ not in")
        self.add("signature-count-zero", "reject", hdr(lay["mlen"], 0, lay["plen"]) + rest,
                 r"signature count 0 not in")
        self.add("signature-count-33", "reject", hdr(lay["mlen"], 33, lay["plen"]) + rest,
                 r"signature count 33 not in")
        self.add("signature-count-u32-max", "reject", hdr(lay["mlen"], 2**32 - 1, lay["plen"]) +
                 rest, r"signature count \d+ not in")
        self.add("payload-length-over-cap", "reject",
                 hdr(lay["mlen"], lay["nsig"], MAX_BYTES + 1) + rest, r"payload length \d+ exceeds")
        self.add("payload-length-u64-max", "reject", hdr(lay["mlen"], lay["nsig"], 2**64 - 1) +
                 rest, r"payload length \d+ exceeds")
        # lengths whose sum wraps 32 or 64 bits to the file's size: caught by the caps
        self.add("lengths-sum-wraps-32-bits", "reject",
                 hdr(lay["mlen"], lay["nsig"], lay["plen"] + 2**32) + rest,
                 r"payload length \d+ exceeds")
        self.add("lengths-sum-wraps-64-bits", "reject",
                 hdr(lay["mlen"], lay["nsig"], lay["plen"] + 2**64 - 2**32) + rest,
                 r"payload length \d+ exceeds")
        path = self.add("file-over-64-mib", "reject", None, r"larger than the \d+ byte cap",
                        note="sparse file one byte over the bundle cap")
        with open(path, "wb") as f:
            f.write(b)
            f.truncate(MAX_BYTES + 1)

    def signature_cases(self):
        s1, s2, other, rk = self.s1, self.s2, self.other, self.root_key
        self.add("wrong-key", "reject", self.craft(keys=[other]), r"unknown key id " + other.id.hex())
        self.add("wrong-key-besides-valid", "reject", self.craft(keys=[s1, s2, other]),
                 r"signature 2 is by unknown key id")
        self.add("root-key-signs-content", "reject", self.craft(keys=[rk]),
                 r"unknown key id " + rk.id.hex())
        self.add("below-threshold", "reject", self.craft(keys=[s1]),
                 r"threshold not met: signed by 1 distinct content key, the root requires 2")
        self.add("below-threshold-other-key", "reject", self.craft(keys=[s2]),
                 r"threshold not met: signed by 1 distinct")
        self.add("duplicate-signer", "reject", self.craft(keys=[s1, s1]),
                 r"threshold not met: signed by 1 distinct")
        self.add("duplicate-signer-32-times", "reject", self.craft(keys=[s2] * 32),
                 r"threshold not met: signed by 1 distinct")
        files = self.layout["files"]
        payload = archive(files)
        m = canon(manifest(files, payload, self.now))
        self.add("key-id-swapped", "reject", assemble(m, [(s1.id, s1.sign(CTX_MANIFEST, m)),
                                                          (s2.id, s1.sign(CTX_MANIFEST, m))],
                                                      payload),
                 r"bad signature 1 by key " + s2.id.hex())
        self.add("root-context-signature", "reject", self.craft(ctx=CTX_ROOT),
                 r"bad signature 0 by key")
        self.add("zero-signature", "reject", assemble(m, [(s1.id, bytes(64)), (s2.id, bytes(64))],
                                                      payload), r"bad signature 0")
        other_m = canon(manifest(files, payload, self.now, version=VERSION + 1))
        self.add("signature-of-other-manifest", "reject",
                 assemble(m, signed([s1, s2], other_m), payload), r"bad signature 0")
        self.add("unsigned-manifest-edit", "reject",
                 assemble(other_m, signed([s1, s2], m), payload), r"bad signature")

    def manifest_cases(self):
        now, files = self.now, self.layout["files"]
        cases = [
            ("expired", dict(created=when(now - 7200), expires=when(now - 3600)),
             r"bundle expired at"),
            ("expired-one-second-ago", dict(created=when(now - 7200), expires=when(now - 1)),
             r"bundle expired at"),
            ("expired-in-1970", dict(created=when(0), expires=when(1)), r"bundle expired at"),
            ("created-after-expires", dict(created=when(now + 7200), expires=when(now + 3600)),
             r"'expires' is not after 'created'"),
            ("expires-bad-month", dict(expires="2030-13-01T00:00:00Z"), r"'created' or 'expires'"),
            ("expires-feb-29-2027", dict(expires="2027-02-29T00:00:00Z"),
             r"'created' or 'expires'"),
            ("expires-with-offset", dict(expires="2030-01-01T00:00:00+00:00"),
             r"'created' or 'expires'"),
            ("expires-number", dict(expires=1900000000), r"'created' or 'expires'"),
            ("schema-too-new", dict(schema_version=99), r"needs schema version 99, this agent has 1"),
            ("schema-2", dict(schema_version=2), r"needs schema version 2"),
            ("schema-over-u32", dict(schema_version=2**32), r"'schema_version'"),
            ("schema-zero", dict(schema_version=0), r"'schema_version'"),
            ("agent-too-new", dict(min_agent_version="99.0.0"),
             r"needs agent version 99\.0\.0 or later"),
            ("agent-too-new-patch", dict(min_agent_version="0.1.999999"),
             r"needs agent version 0\.1\.999999"),
            ("agent-version-two-parts", dict(min_agent_version="1.2"), r"'min_agent_version'"),
            ("agent-version-leading-zero", dict(min_agent_version="01.0.0"),
             r"'min_agent_version'"),
            ("agent-version-huge-part", dict(min_agent_version="1000000.0.0"),
             r"'min_agent_version'"),
            ("name-10000-bytes", dict(name="n" * 10000), r"'name' missing or not"),
            ("name-65-bytes", dict(name="n" * 65), r"'name' missing or not"),
            ("name-with-slash", dict(name="a/b"), r"'name' missing or not"),
            ("name-empty", dict(name=""), r"'name' missing or not"),
            ("name-missing", dict(name=None), r"'name' missing or not"),
            ("version-zero", dict(version=0), r"'version' missing or not"),
            ("version-2-pow-53", dict(version=2**53), r"'version' missing or not"),
            ("version-negative", dict(version=-1), r"'version' missing or not"),
            ("version-float", dict(version=1.5), r"'version' missing or not"),
            ("version-string", dict(version="10"), r"'version' missing or not"),
            ("version-2-pow-64", dict(version=2**64), r"manifest: not JSON"),
            ("type-wrong", dict(type="vigil-root"), r"'type' is not"),
            ("unknown-field", dict(fields_needed=["process.pid"]), r"unknown field 'fields_needed'"),
            ("files-empty", dict(files=[]), r"'files' lists 0 files"),
            ("files-not-list", dict(files={"a": 1}), r"'files' missing or not a list"),
            ("files-too-many", dict(files=[{"name": f"f{i:05d}.yml", "size": 1}
                                           for i in range(MAX_FILES + 1)]),
             r"'files' lists 20001 files"),
            ("file-size-over-cap", dict(files=[{"name": "base.yml", "size": MAX_FILE + 1}]),
             r"files\[0\] is not"),
            ("file-entry-extra-field", dict(files=[{"name": "base.yml", "size": 1, "mode": 1}]),
             r"files\[0\] is not"),
            ("payload-size-over-cap", dict(payload={"blake2b": "00" * 32, "size": MAX_BYTES + 1}),
             r"'payload' is not"),
            ("payload-hash-uppercase", dict(payload={"blake2b": "AB" * 32, "size": 1}),
             r"'payload' is not"),
            ("payload-hash-short", dict(payload={"blake2b": "ab" * 31, "size": 1}),
             r"'payload' is not"),
            ("downgrade-not-above-version", dict(allow_downgrade_from=VERSION),
             r"'allow_downgrade_from' is not an integer above"),
            ("downgrade-negative", dict(allow_downgrade_from=-5),
             r"'allow_downgrade_from' is not an integer above"),
            ("files-unsorted", dict(files=[{"name": "b.yml", "size": 1},
                                           {"name": "a.yml", "size": 1}]),
             r"not after the previous name"),
            ("files-duplicate", dict(files=[{"name": "a.yml", "size": 1},
                                            {"name": "a.yml", "size": 1}]),
             r"not after the previous name"),
            ("file-is-also-directory", dict(files=[{"name": "a", "size": 1},
                                                   {"name": "a/b.yml", "size": 1}]),
             r"a directory of it is also a file"),
        ]
        for cid, over, expect in cases:
            for field in ("files", "payload"):
                if field in over:
                    over["m" + field] = over.pop(field)
            self.add(f"manifest-{cid}", "reject", self.craft(**over), expect)

        payload = archive(files)
        good = manifest(files, payload, now)
        raw = [
            ("not-json", b"this is not json", r"manifest: not JSON"),
            ("array", b"[1,2,3]", r"manifest: not a JSON object"),
            ("nesting-100000", b"[" * 100000 + b"]" * 100000, r"manifest: not JSON"),
            ("nul-byte", canon(good)[:20] + b"\0" + canon(good)[21:], r"manifest: not JSON"),
            ("pretty-printed", json.dumps(good, sort_keys=True, indent=1).encode(),
             r"not in canonical form"),
            ("keys-unsorted", json.dumps(dict(reversed(list(good.items()))),
                                         separators=(",", ":")).encode(),
             r"not in canonical form"),
            ("escaped-letter", canon(good).replace(b'"corpus"', b'"corp\\u0075s"'),
             r"not in canonical form"),
            ("duplicate-key", canon(good)[:-1] + b',"version":' + str(VERSION + 1).encode() + b"}",
             r"manifest: not JSON"),
            ("trailing-garbage", canon(good) + b" x", r"manifest: not JSON"),
            ("utf8-bom", b"\xef\xbb\xbf" + canon(good), r"manifest: not JSON"),
            ("invalid-utf8-string", canon(good).replace(b'"corpus"', b'"corp\xffs"'),
             r"manifest: not JSON"),
        ]
        for cid, mbytes, expect in raw:
            self.add(f"manifest-raw-{cid}", "reject", self.craft(mbytes=mbytes, payload=payload),
                     expect)
        big = canon(manifest(files, payload, now, name="n" * (MAX_MANIFEST + 16)))
        self.add("manifest-over-cap", "reject", self.craft(mbytes=big, payload=payload),
                 r"manifest length \d+ not in")

    def name_cases(self):
        data = b"rules: []\n"
        for cid, name in BAD_NAMES:
            files = [(name, data)]
            # the manifest lists the name: refused when the manifest is read
            self.add(f"name-in-manifest-{cid}", "reject", self.craft(files=files),
                     r"unsafe name|manifest: not JSON|not after the previous")
            # the manifest lists a safe name, the archive carries the bad one
            payload = archive(files)
            m = canon(manifest([(b"x.yml", data)], payload, self.now))
            self.add(f"name-in-payload-{cid}", "reject", assemble(m, signed([self.s1, self.s2], m),
                                                                  payload),
                     r"payload: file 0: (unsafe name|name length)")

    def payload_cases(self):
        files = self.layout["files"]
        one = [(b"a.yml", b"rules: []\n")]

        def with_payload(cid, payload, expect, mfiles=None):
            m = canon(manifest(one if mfiles is None else mfiles, payload, self.now))
            self.add(f"payload-{cid}", "reject",
                     assemble(m, signed([self.s1, self.s2], m), payload), expect)

        good = archive(one)
        with_payload("empty", b"", r"payload: truncated before the file count")
        with_payload("count-zero", struct.pack("<I", 0), r"payload: 0 files")
        with_payload("count-mismatch", archive(one + [(b"b.yml", b"x")]),
                     r"payload: 2 files, the manifest lists 1")
        with_payload("count-u32-max", archive(one, count=2**32 - 1), r"payload: 4294967295 files")
        with_payload("count-20001", archive(one, count=MAX_FILES + 1), r"payload: 20001 files")
        with_payload("name-length-zero", struct.pack("<IH", 1, 0) + b"x" * 16,
                     r"name length 0 not in")
        with_payload("name-length-200", struct.pack("<IH", 1, 200) + b"x" * 300,
                     r"name length 200 not in")
        with_payload("name-past-end", struct.pack("<IH", 1, 100) + b"a.yml",
                     r"truncated name")
        with_payload("data-length-missing", struct.pack("<IH", 1, 5) + b"a.yml",
                     r"truncated data length")
        with_payload("data-past-end", struct.pack("<IH", 1, 5) + b"a.yml" +
                     struct.pack("<I", 1000) + b"short", r"truncated data")
        with_payload("data-length-over-cap", struct.pack("<IH", 1, 5) + b"a.yml" +
                     struct.pack("<I", MAX_FILE + 1), r"more than 16777216")
        with_payload("data-length-u32-max", struct.pack("<IH", 1, 5) + b"a.yml" +
                     struct.pack("<I", 2**32 - 1), r"more than 16777216")
        with_payload("trailing-after-last-file", good + b"\0\0\0", r"3 bytes after the last file")
        with_payload("name-differs", archive([(b"b.yml", b"rules: []\n")]),
                     r"is not the manifest's 'a.yml'")
        with_payload("size-differs", archive([(b"a.yml", b"rules: [] \n")]),
                     r"is not the manifest's 'a.yml' \(10 bytes\)")
        # manifest size and hash that do not describe the payload carried
        payload = archive(files)
        m = manifest(files, payload, self.now)
        m["payload"]["size"] += 1
        mb = canon(m)
        self.add("payload-size-not-manifest", "reject",
                 assemble(mb, signed([self.s1, self.s2], mb), payload),
                 r"payload is \d+ bytes, the manifest says \d+")
        m = manifest(files, payload, self.now)
        m["payload"]["blake2b"] = blake(payload + b"x").hex()
        mb = canon(m)
        self.add("payload-hash-not-manifest", "reject",
                 assemble(mb, signed([self.s1, self.s2], mb), payload), r"payload hash mismatch")
        swapped = archive(files[:-1] + [(files[-1][0], files[-1][1][::-1])])
        self.add("payload-swapped-after-signing", "reject",
                 assemble(canon(m), signed([self.s1, self.s2], canon(m)), swapped),
                 r"payload hash mismatch")

    def root_cases(self):
        rk = self.root_key
        keys = [{"keyid": k.id.hex(), "public": k.pk.hex()} for k in (self.s1, self.s2)]
        signed_part = {"content_keys": keys, "content_threshold": 2,
                       "expires": when(self.now - 60),
                       "root_keys": [{"keyid": rk.id.hex(), "public": rk.pk.hex()}],
                       "root_threshold": 1, "type": "vigil-root", "version": 2}
        doc = {"signatures": [{"keyid": rk.id.hex(),
                               "sig": rk.sign(CTX_ROOT, canon(signed_part)).hex()}],
               "signed": signed_part}
        (self.out / "root-expired.json").write_text(json.dumps(doc, indent=2) + "\n")
        self.add("root-expired", "reject", self.base, r"trust root version 2 expired at",
                 root="root-expired.json", note="valid bundle, pinned root past its expiry")
        signed_part = dict(signed_part, expires=when(self.now + 86400), content_threshold=1,
                           content_keys=keys[:1])
        doc = {"signatures": [{"keyid": rk.id.hex(),
                               "sig": rk.sign(CTX_ROOT, canon(signed_part)).hex()}],
               "signed": signed_part}
        (self.out / "root-s1-only.json").write_text(json.dumps(doc) + "\n")
        self.add("root-without-s2", "reject", self.base, r"unknown key id " + self.s2.id.hex(),
                 root="root-s1-only.json",
                 note="a bundle signed by a key the pinned root does not name")
        self.add("root-threshold-1-one-signature", "accept", self.craft(keys=[self.s1]), "",
                 root="root-s1-only.json")

    def version_cases(self):
        self.add("version-equal-active", "reject", self.base, r"already the active version",
                 args=["--active-version", VERSION])
        self.add("version-lower-than-active", "reject", self.base,
                 r"lower than the active 11 and carries no signed downgrade instruction",
                 args=["--active-version", VERSION + 1])
        self.add("version-higher-than-active", "accept", self.base, "",
                 args=["--active-version", VERSION - 1])
        down = self.craft(allow_downgrade_from=VERSION + 5)
        self.add("downgrade-covered", "accept", down, "", args=["--active-version", VERSION + 5])
        self.add("downgrade-not-covered", "reject", down,
                 r"downgrade instruction covers only versions up to 15",
                 args=["--active-version", VERSION + 6])

    def compile_cases(self):
        keys = self.out / "keys"
        for cid, files, expect in COMPILE_DEFECTS:
            d = self.out / "rules" / cid
            for name, text in files.items():
                (d / name).parent.mkdir(parents=True, exist_ok=True)
                (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
            path = self.add(f"compile-{cid}", "compile", None, expect,
                            note="correctly signed (--skip-validation): for the agent's "
                                 "compile step")
            self.run("content", "build", d, "--version", VERSION, "--key", keys / "s1.key",
                     "--key", keys / "s2.key", "--name", "corpus", "--skip-validation",
                     "-o", path)
            self.cases[-1]["rules"] = str(d.relative_to(self.out))

    def generate(self):
        self.setup()
        self.baseline()
        self.truncations()
        self.bitflips()
        self.header_cases()
        self.signature_cases()
        self.manifest_cases()
        self.name_cases()
        self.payload_cases()
        self.root_cases()
        self.version_cases()
        self.compile_cases()
        (self.out / "index.json").write_text(json.dumps(self.cases, indent=1) + "\n")
        return self.cases


def generate(vigil, out):
    """Makes the corpus in @out with the vigil binary @vigil; returns the list of cases."""
    return Corpus(vigil, out).generate()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vigil", default=os.environ.get("VIGIL", "build/vigil"))
    ap.add_argument("outdir")
    a = ap.parse_args()
    cases = generate(a.vigil, a.outdir)
    kinds = {}
    for c in cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    print(f"{len(cases)} cases in {a.outdir}: " +
          ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))


if __name__ == "__main__":
    main()
