"""
Ed25519 signing (RFC 8032, section 5.1) in plain Python, for the bad-bundle corpus generator
only: it lets the generator sign manifests that `vigil content build` refuses to make (unsafe
names, expired, oversize fields), so that each defect reaches the check that must catch it.
Slow and not constant-time; never used for real keys. Every signature it makes is checked by
libsodium when vigil verifies the corpus, and public() is cross-checked against key files.
"""
import hashlib

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493


def _inv(x):
    return pow(x, _P - 2, _P)


_D = -121665 * _inv(121666) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _x_from_y(y, sign):
    xx = (y * y - 1) * _inv(_D * y * y + 1) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - xx) % _P != 0:
        raise ValueError("not a curve point")
    if x & 1 != sign:
        x = _P - x
    return x


_BY = 4 * _inv(5) % _P
_BX = _x_from_y(_BY, 0)
_B = (_BX, _BY, 1, _BX * _BY % _P)  # extended coordinates (X, Y, Z, T)
_ZERO = (0, 1, 1, 0)


def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = _ZERO
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _encode(p):
    zi = _inv(p[2])
    x, y = p[0] * zi % _P, p[1] * zi % _P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _expand(seed):
    if len(seed) != 32:
        raise ValueError("an Ed25519 seed is 32 bytes")
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a &= (1 << 254) - 8
    a |= 1 << 254
    return a, h[32:]


def public(seed):
    """The 32-byte public key of the 32-byte secret seed."""
    a, _ = _expand(seed)
    return _encode(_mul(a, _B))


def sign(seed, msg):
    """The 64-byte signature of @msg by the key with secret @seed."""
    a, prefix = _expand(seed)
    pk = _encode(_mul(a, _B))
    r = int.from_bytes(hashlib.sha512(prefix + msg).digest(), "little") % _L
    rr = _encode(_mul(r, _B))
    k = int.from_bytes(hashlib.sha512(rr + pk + msg).digest(), "little") % _L
    s = (r + k * a) % _L
    return rr + s.to_bytes(32, "little")
