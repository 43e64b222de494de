"""
Ed25519 signing for the bad-bundle corpus generator, through libsodium (Debian's
python3-nacl). It lets the generator sign manifests that `vigil content build` refuses to
make (unsafe names, expired, oversize fields), so that each defect reaches the check that must
catch it. Test use only; every signature is checked again by vigil when it verifies the corpus.
"""
import nacl.signing


def public(seed):
    """The 32-byte public key of the 32-byte secret seed."""
    return nacl.signing.SigningKey(bytes(seed)).verify_key.encode()


def sign(seed, msg):
    """The 64-byte Ed25519 signature of msg by the key with this seed."""
    return nacl.signing.SigningKey(bytes(seed)).sign(bytes(msg)).signature
