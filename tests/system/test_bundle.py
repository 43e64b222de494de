"""
Keys, trust roots and signed content bundles through the real `vigil` binary: keygen, root
create / verify / rotation, content build / verify, and the bad-bundle corpus
(tests/bundles/make_corpus.py), every case of which must be refused with its own reason and
never kill the verifier.
"""
import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import ROOT, VIGIL

sys.path.insert(0, str(ROOT / "tests" / "bundles"))
import make_corpus  # noqa: E402

GOOD_RULES = make_corpus.BASE_RULES


def vigil(*args, timeout=120):
    if not os.access(VIGIL, os.X_OK):
        pytest.fail(f"{VIGIL} is missing: run make first", pytrace=False)
    return subprocess.run([str(VIGIL), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_line_failure(res, status=1):
    """Asserts @res failed with @status, was not killed, and said why on exactly one line."""
    assert res.returncode >= 0, f"killed by signal {-res.returncode}: {res.stderr[-500:]}"
    assert res.returncode == status, f"exit {res.returncode}, want {status}: {res.stderr!r}"
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"want one line on stderr, got {res.stderr!r}"
    return lines[0]


def write_rules(d, files):
    d = pathlib.Path(d)
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for k in ("root", "s1", "s2", "new-root"):
        res = vigil("keygen", "-o", d / k)
        assert res.returncode == 0, res.stderr
    res = vigil("root", "create", "--root-key", d / "root.key", "--signer", d / "s1.pub",
                "--signer", d / "s2.pub", "--threshold", 2, "-o", d / "root.json")
    assert res.returncode == 0, res.stderr
    res = vigil("root", "create", "--root-key", d / "root.key", "--signer", d / "s1.pub",
                "-o", d / "root1.json")
    assert res.returncode == 0, res.stderr
    return d


@pytest.fixture(scope="module")
def schema_version():
    res = vigil("schema")
    m = re.search(r"schema version (\d+)", res.stdout)
    assert m, res.stdout[:200]
    return int(m.group(1))


# --- usage ---

@pytest.mark.parametrize("args,flags", [
    (["keygen", "--help"], ["-o NAME"]),
    (["root", "--help"], ["--root-key", "--signer", "--threshold", "--previous", "--expires"]),
    (["content", "build", "--help"], ["--version", "--key", "--expires", "--skip-validation",
                                      "--min-agent-version", "--allow-downgrade-from"]),
    (["content", "verify", "--help"], ["--root", "--compile", "--active-version"]),
], ids=["keygen", "root", "content-build", "content-verify"])
def test_help(args, flags):
    res = vigil(*args)
    assert res.returncode == 0, res.stderr
    for flag in flags:
        assert flag in res.stdout, f"{' '.join(args)} does not mention {flag}"


@pytest.mark.parametrize("args", [
    ["keygen"],
    ["keygen", "-o"],
    ["keygen", "-o", "x", "extra"],
    ["root"],
    ["root", "nosuch"],
    ["root", "create"],
    ["root", "create", "--root-key", "r.key", "--signer", "s.pub"],
    ["root", "create", "--root-key", "r.key", "--signer", "s.pub", "--threshold", "2", "-o",
     "x.json"],
    ["root", "create", "--root-key", "r.key", "--signer", "s.pub", "--threshold", "x", "-o",
     "x.json"],
    ["root", "verify"],
    ["content", "build"],
    ["content", "build", "rules", "--version", "0", "--key", "k", "-o", "x"],
    ["content", "build", "rules", "--version", "1", "-o", "x"],
    ["content", "build", "rules", "--version", "1", "--key", "k", "-o", "x", "--expires", "3x"],
    ["content", "build", "rules", "--version", "1", "--key", "k", "-o", "x", "--bogus"],
    ["content", "verify"],
    ["content", "verify", "x.bundle"],
    ["content", "verify", "x.bundle", "--root", "r.json", "--active-version", "abc"],
], ids=lambda a: " ".join(a))
def test_bad_usage(args, tmp_path):
    res = vigil(*args)
    one_line_failure(res, status=2)
    assert res.stdout == ""


# --- keys ---

def test_keygen(tmp_path):
    res = vigil("keygen", "-o", tmp_path / "k")
    assert res.returncode == 0, res.stderr
    key, pub = tmp_path / "k.key", tmp_path / "k.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    keyid = re.search(r"key id ([0-9a-f]{16})", res.stdout).group(1)
    assert pub.read_text().startswith(f"untrusted comment: vigil public key {keyid}\n")
    assert key.read_text().startswith(f"untrusted comment: vigil secret key {keyid}\n")
    # the key id is the first 8 bytes of BLAKE2b-256 of the public key
    k = make_corpus.Key(key)
    assert k.id.hex() == keyid
    # never overwritten
    before = key.read_bytes()
    line = one_line_failure(vigil("keygen", "-o", tmp_path / "k"))
    assert "exists already" in line
    assert key.read_bytes() == before


def test_keygen_does_not_follow_links(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (tmp_path / "k.key").symlink_to(target)
    one_line_failure(vigil("keygen", "-o", tmp_path / "k"))
    assert target.read_text() == "precious\n"
    assert not (tmp_path / "k.pub").exists()
    # NAME.pub in the way: the secret key made first is removed again
    (tmp_path / "j.pub").write_text("x")
    one_line_failure(vigil("keygen", "-o", tmp_path / "j"))
    assert not (tmp_path / "j.key").exists()


def test_secret_key_rejected_when_corrupt(keys, tmp_path):
    lines = (keys / "s1.key").read_text().splitlines()
    raw = bytearray(__import__("base64").b64decode(lines[1]))
    raw[40] ^= 1
    bad = tmp_path / "bad.key"
    bad.write_text(lines[0] + "\n" + __import__("base64").b64encode(bytes(raw)).decode() + "\n")
    rules = write_rules(tmp_path / "rules", GOOD_RULES)
    line = one_line_failure(vigil("content", "build", rules, "--version", 1, "--key", bad,
                                  "-o", tmp_path / "b.bundle"))
    assert "checksum" in line
    line = one_line_failure(vigil("content", "build", rules, "--version", 1, "--key",
                                  keys / "s1.pub", "-o", tmp_path / "b.bundle"))
    assert "secret key" in line
    assert not (tmp_path / "b.bundle").exists()


# --- roots ---

def test_root_verify_summary(keys):
    res = vigil("root", "verify", keys / "root.json")
    assert res.returncode == 0, res.stderr
    s = json.loads(res.stdout)
    assert s["version"] == 1 and s["content_threshold"] == 2 and s["root_threshold"] == 1
    s1 = make_corpus.Key(keys / "s1.key").id.hex()
    assert s1 in s["content_keys"] and len(s["content_keys"]) == 2
    doc = json.loads((keys / "root.json").read_text())
    assert doc["signed"]["type"] == "vigil-root"


def test_root_tampered(keys, tmp_path):
    doc = json.loads((keys / "root.json").read_text())
    doc["signed"]["content_threshold"] = 1
    p = tmp_path / "tampered.json"
    p.write_text(json.dumps(doc))
    line = one_line_failure(vigil("root", "verify", p))
    assert "bad signature" in line


def test_root_rotation(keys, tmp_path):
    new = tmp_path / "v2.json"
    res = vigil("root", "create", "--root-key", keys / "new-root.key", "--signer", keys / "s1.pub",
                "--previous", keys / "root.json", "--previous-key", keys / "root.key",
                "-o", new)
    assert res.returncode == 0, res.stderr
    res = vigil("root", "verify", new, "--root", keys / "root.json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["accepted"] is True and out["replaces_version"] == 1
    assert out["root"]["version"] == 2

    # a successor signed only by its own key: the old root's threshold is not met
    alone = tmp_path / "alone.json"
    res = vigil("root", "create", "--root-key", keys / "new-root.key", "--signer", keys / "s1.pub",
                "--version", 2, "-o", alone)
    assert res.returncode == 0, res.stderr
    line = one_line_failure(vigil("root", "verify", alone, "--root", keys / "root.json"))
    assert "rejected" in line and "current root key" in line
    # the same version again is not an update
    line = one_line_failure(vigil("root", "verify", keys / "root.json", "--root",
                                  keys / "root.json"))
    assert "not higher" in line
    # root create checks what an agent would and writes nothing it would refuse
    line = one_line_failure(vigil("root", "create", "--root-key", keys / "new-root.key",
                                  "--signer", keys / "s1.pub", "--previous", keys / "root.json",
                                  "--previous-key", keys / "s1.key", "--version", 3,
                                  "-o", tmp_path / "v3.json"))
    assert "would refuse" in line
    assert not (tmp_path / "v3.json").exists()


def test_root_refuses_key_in_both_roles(keys, tmp_path):
    line = one_line_failure(vigil("root", "create", "--root-key", keys / "s1.key", "--signer",
                                  keys / "s1.pub", "-o", tmp_path / "r.json"))
    assert "roles" in line


# --- build and verify ---

def build(keys, rules, out, *extra, version=5, signers=("s1", "s2")):
    args = ["content", "build", rules, "--version", version, "-o", out, *extra]
    for s in signers:
        args += ["--key", keys / f"{s}.key"]
    return vigil(*args)


def test_build_and_verify(keys, tmp_path, schema_version):
    rules = write_rules(tmp_path / "rules", GOOD_RULES)
    (rules / "README.txt").write_text("not a rule file\n")
    out = tmp_path / "c.bundle"
    res = build(keys, rules, out, "--name", "unit-content", "--expires", "2d")
    assert res.returncode == 0, res.stderr
    assert "2 rules compiled, 4 tests passed" in res.stdout and res.stderr == ""
    res = vigil("content", "verify", out, "--root", keys / "root.json")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1
    m = json.loads(res.stdout)
    assert m["name"] == "unit-content" and m["version"] == 5 and m["type"] == "vigil-bundle"
    assert m["schema_version"] == schema_version
    assert re.fullmatch(r"\d+\.\d+\.\d+", m["min_agent_version"])
    assert [f["name"] for f in m["files"]] == ["base.yml", "lists.yml", "sub/more.yml"]
    assert m["files"][0]["size"] == len(GOOD_RULES["base.yml"])
    assert re.fullmatch(r"[0-9a-f]{64}", m["payload"]["blake2b"])
    created = time.mktime(time.strptime(m["created"], "%Y-%m-%dT%H:%M:%SZ"))
    expires = time.mktime(time.strptime(m["expires"], "%Y-%m-%dT%H:%M:%SZ"))
    assert expires - created == 2 * 86400
    # the manifest printed is the one signed, byte for byte
    data = out.read_bytes()
    mlen = int.from_bytes(data[16:20], "little")
    assert data[32:32 + mlen].decode() == res.stdout.strip()
    res = vigil("content", "verify", out, "--root", keys / "root.json", "--compile")
    assert res.returncode == 0, res.stderr
    # a root that needs only s1 accepts it too; one that does not know s2 does not
    line = one_line_failure(vigil("content", "verify", out, "--root", keys / "root1.json"))
    assert "unknown key id" in line


def test_build_of_shipped_content(keys, tmp_path):
    out = tmp_path / "default.bundle"
    res = build(keys, ROOT / "content", out)
    assert res.returncode == 0, res.stderr
    res = vigil("content", "verify", out, "--root", keys / "root.json", "--compile")
    assert res.returncode == 0, res.stderr


def test_threshold_needs_distinct_keys(keys, tmp_path):
    rules = write_rules(tmp_path / "rules", GOOD_RULES)
    out = tmp_path / "one.bundle"
    assert build(keys, rules, out, signers=("s1",)).returncode == 0
    line = one_line_failure(vigil("content", "verify", out, "--root", keys / "root.json"))
    assert "threshold not met: signed by 1 distinct content key, the root requires 2" in line
    line = one_line_failure(build(keys, rules, out, signers=("s1", "s1")))
    assert "given twice" in line


def test_versions_from_the_command_line(keys, tmp_path):
    rules = write_rules(tmp_path / "rules", GOOD_RULES)
    out = tmp_path / "v.bundle"
    assert build(keys, rules, out, "--min-agent-version", "99.0.0").returncode == 0
    line = one_line_failure(vigil("content", "verify", out, "--root", keys / "root.json"))
    assert "needs agent version 99.0.0 or later" in line
    assert build(keys, rules, out, "--allow-downgrade-from", 9, version=4).returncode == 0
    root = keys / "root.json"
    assert vigil("content", "verify", out, "--root", root, "--active-version", 9).returncode == 0
    line = one_line_failure(vigil("content", "verify", out, "--root", root,
                                  "--active-version", 10))
    assert "covers only versions up to 9" in line
    line = one_line_failure(vigil("content", "verify", out, "--root", root,
                                  "--active-version", 4))
    assert "already the active version" in line
    line = one_line_failure(build(keys, rules, out, "--allow-downgrade-from", 4, version=4))
    assert "downgrade" in line


def test_expiry_from_the_command_line(keys, tmp_path):
    rules = write_rules(tmp_path / "rules", GOOD_RULES)
    out = tmp_path / "e.bundle"
    assert build(keys, rules, out, "--expires", "1s").returncode == 0
    lasting = tmp_path / "lasting.bundle"
    assert build(keys, rules, lasting).returncode == 0
    short_root = tmp_path / "short-root.json"
    res = vigil("root", "create", "--root-key", keys / "root.key", "--signer", keys / "s1.pub",
                "--signer", keys / "s2.pub", "--expires", "1s", "-o", short_root)
    assert res.returncode == 0, res.stderr
    assert "expires" in json.loads(short_root.read_text())["signed"]
    time.sleep(1.2)
    line = one_line_failure(vigil("content", "verify", out, "--root", keys / "root.json"))
    assert "bundle expired at" in line
    assert vigil("content", "verify", lasting, "--root", keys / "root.json").returncode == 0
    line = one_line_failure(vigil("content", "verify", lasting, "--root", short_root))
    assert re.search(r"trust root version 1 expired at", line), line


@pytest.mark.parametrize("cid", [c[0] for c in make_corpus.COMPILE_DEFECTS])
def test_build_refuses_defective_content(keys, tmp_path, cid):
    files, expect = {c[0]: (c[1], c[2]) for c in make_corpus.COMPILE_DEFECTS}[cid]
    rules = write_rules(tmp_path / "rules", files)
    out = tmp_path / "d.bundle"
    line = one_line_failure(build(keys, rules, out))
    assert "refused" in line and re.search(expect, line), line
    assert not out.exists()


def test_skip_validation_warns(keys, tmp_path):
    rules = write_rules(tmp_path / "rules", {"r.yml": "rules: [this is not a rule]\n"})
    out = tmp_path / "s.bundle"
    res = build(keys, rules, out, "--skip-validation")
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stderr and "--skip-validation" in res.stderr
    assert vigil("content", "verify", out, "--root", keys / "root.json").returncode == 0
    line = one_line_failure(vigil("content", "verify", out, "--root", keys / "root.json",
                                  "--compile"))
    assert "signatures valid, content refused" in line


def test_build_refuses_unbundlable_trees(keys, tmp_path):
    rules = write_rules(tmp_path / "spaces", {"a b.yml": GOOD_RULES["base.yml"]})
    line = one_line_failure(build(keys, rules, tmp_path / "x.bundle"))
    assert "cannot go into a bundle" in line
    rules = write_rules(tmp_path / "links", GOOD_RULES)
    (rules / "link.yml").symlink_to(rules / "base.yml")
    line = one_line_failure(build(keys, rules, tmp_path / "x.bundle"))
    assert "symbolic links" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_failure(build(keys, empty, tmp_path / "x.bundle"))
    assert "no *.yml" in line
    assert not (tmp_path / "x.bundle").exists()


def test_verify_refuses_links_and_missing_files(keys, tmp_path):
    rules = write_rules(tmp_path / "rules", GOOD_RULES)
    out = tmp_path / "c.bundle"
    assert build(keys, rules, out).returncode == 0
    (tmp_path / "link.bundle").symlink_to(out)
    line = one_line_failure(vigil("content", "verify", tmp_path / "link.bundle", "--root",
                                  keys / "root.json"))
    assert "symbolic link" in line
    one_line_failure(vigil("content", "verify", tmp_path / "nosuch", "--root", keys / "root.json"))
    one_line_failure(vigil("content", "verify", out, "--root", tmp_path / "nosuch.json"))


def test_verify_refuses_fifos_and_devices_without_waiting(keys, tmp_path):
    # a FIFO nobody writes to: opening it must not wait for a writer
    fifo = tmp_path / "pipe.bundle"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero"):
        line = one_line_failure(vigil("content", "verify", path, "--root", keys / "root.json",
                                      timeout=10))
        assert "not a regular file" in line
    # the root document is read the same way
    line = one_line_failure(vigil("content", "verify", "/dev/null", "--root", fifo, timeout=10))
    assert str(fifo) in line and "not a regular file" in line


# --- the bad-bundle corpus ---

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    cases = make_corpus.generate(VIGIL, out)
    return out, cases


def verify_case(out, case, *extra):
    return vigil("content", "verify", out / case["file"], "--root", out / case["root"],
                 *case["args"], *extra)


def test_corpus_covers_every_class(corpus):
    _, cases = corpus
    assert len(cases) >= 200, f"only {len(cases)} cases"
    ids = [c["id"] for c in cases]
    for prefix in ("truncated-at-", "bitflip-", "empty", "wrong-key", "below-threshold",
                   "duplicate-signer", "manifest-expired", "manifest-schema-too-new",
                   "manifest-agent-too-new", "manifest-name-10000-bytes",
                   "manifest-files-too-many", "payload-", "name-in-manifest-dotdot",
                   "name-in-payload-absolute", "name-in-payload-nul", "name-in-manifest-very-long",
                   "version-equal-active", "version-lower-than-active", "root-expired",
                   "file-over-64-mib"):
        assert any(i.startswith(prefix) for i in ids), f"no case {prefix}*"
    compile_ids = {c["id"] for c in cases if c["kind"] == "compile"}
    for cid in ("unknown-field", "newer-schema", "type-mismatch", "wrong-arity", "invalid-utf8",
                "deep-condition-10000", "regex-rejected", "duplicate-ids"):
        assert f"compile-{cid}" in compile_ids, f"no compile case {cid}"
    assert sum(c["kind"] == "reject" for c in cases) >= 200


def test_corpus_rejected_with_reason(corpus):
    out, cases = corpus
    failures = []
    for case in cases:
        if case["kind"] != "reject":
            continue
        res = verify_case(out, case)
        lines = res.stderr.splitlines()
        if res.returncode < 0:
            failures.append(f"{case['id']}: killed by {signal.Signals(-res.returncode).name}")
        elif res.returncode != 1:
            failures.append(f"{case['id']}: exit {res.returncode}, stderr {res.stderr[-300:]!r}")
        elif len(lines) != 1 or not re.search(case["expect"], lines[0]):
            failures.append(f"{case['id']}: want /{case['expect']}/, got {res.stderr[-300:]!r}")
        elif res.stdout:
            failures.append(f"{case['id']}: printed {res.stdout[:100]!r} on failure")
    assert not failures, f"{len(failures)} cases wrong:\n" + "\n".join(failures[:40])


def test_corpus_accepted(corpus):
    out, cases = corpus
    for case in cases:
        if case["kind"] != "accept":
            continue
        res = verify_case(out, case)
        assert res.returncode == 0, f"{case['id']}: {res.stderr}"
        assert json.loads(res.stdout)["type"] == "vigil-bundle"


def test_corpus_compile_defects_reach_the_compiler(corpus, keys, tmp_path):
    """
    Correctly signed content made with --skip-validation: the signature check accepts it (the
    agent's verify step), the compile step must refuse it with the defect's reason, and the
    publisher's build refuses the same rules.
    """
    out, cases = corpus
    for case in cases:
        if case["kind"] != "compile":
            continue
        res = verify_case(out, case)
        assert res.returncode == 0, f"{case['id']}: signature check refused: {res.stderr}"
        res = verify_case(out, case, "--compile")
        line = one_line_failure(res)
        assert re.search(case["expect"], line), f"{case['id']}: want /{case['expect']}/: {line}"
        res = build(keys, out / case["rules"], tmp_path / "x.bundle")
        line = one_line_failure(res)
        assert "refused" in line, f"{case['id']}: build did not refuse: {line}"
