//! Tokens sealed to their page. Everything the service says to a page crosses the DevTools
//! protocol, which the driver traces at TRACE and a remote browser's host may log: a token must be
//! unreadable there. Each page makes an ECDH P-256 key pair when it loads (WebCrypto, its private
//! key not extractable) and publishes the public half; each token is sealed to it with a fresh
//! key pair of the service's: the shared secret through HKDF-SHA256 keys AES-256-GCM. A reader of
//! every message sees two public keys, a nonce and the ciphertext; only that page can open it, and
//! only once it holds the ciphertext (a page never publishes what it opened).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

/// The HKDF `info` both sides use (`page/entry.js` has the same string).
const INFO: &[u8] = b"callagent-websdk token v1";

/// A page's public key: an uncompressed P-256 point.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PageKey(Box<[u8]>);

impl std::fmt::Debug for PageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageKey(P-256)")
    }
}

impl PageKey {
    /// The key a page published (base64 of WebCrypto's `raw` export).
    pub(crate) fn parse(published: &str) -> Result<Self, String> {
        let bytes = B64.decode(published).map_err(|e| format!("the page's key is not base64: {e}"))?;
        if bytes.len() != 65 || bytes[0] != 4 {
            return Err(format!("the page's key is not an uncompressed P-256 point ({} bytes)", bytes.len()));
        }
        Ok(Self(bytes.into()))
    }
}

/// A token sealed to one page: what a creation passes instead of the token.
#[derive(Serialize)]
pub(crate) struct Sealed {
    /// The service's one-time public key.
    epk: String,
    nonce: String,
    /// The token, encrypted and authenticated (AES-256-GCM, the tag appended).
    ct: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").finish_non_exhaustive()
    }
}

/// Seals `secret` to the page whose public key is `to`.
pub(crate) fn seal(to: &PageKey, secret: &[u8]) -> Result<Sealed, String> {
    let failed = |what: &str| format!("cannot seal the token to its page: {what}");
    let rng = SystemRandom::new();
    let ours = EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| failed("no key pair"))?;
    let epk = ours.compute_public_key().map_err(|_| failed("no public key"))?;
    let key = agree_ephemeral(ours, &UnparsedPublicKey::new(&ECDH_P256, &to.0), |shared| {
        let prk = Salt::new(HKDF_SHA256, &[]).extract(shared);
        Some(UnboundKey::from(prk.expand(&[INFO], &AES_256_GCM).ok()?))
    })
    .map_err(|_| failed("the page's key is not on the curve"))?
    .ok_or_else(|| failed("key derivation"))?;
    let mut nonce = [0u8; 12];
    rng.fill(&mut nonce).map_err(|_| failed("no randomness"))?;
    let mut ct = secret.to_vec();
    LessSafeKey::new(key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut ct)
        .map_err(|_| failed("encryption"))?;
    Ok(Sealed { epk: B64.encode(epk.as_ref()), nonce: B64.encode(nonce), ct: B64.encode(ct) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::agreement::PublicKey;

    /// The HKDF `info` the page uses, read from `page/entry.js` (not this module's [`INFO`]: a
    /// change on one side only must fail the test, as it would fail every creation).
    fn page_info() -> Vec<u8> {
        let entry = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/page/entry.js")).unwrap();
        let at = entry.find("const INFO = new TextEncoder().encode(\"").expect("entry.js's INFO");
        let rest = &entry[at..].split_once('"').unwrap().1;
        rest.split_once('"').unwrap().0.as_bytes().to_vec()
    }

    /// Opens `sealed` with the page's private key, as `page/entry.js` does with WebCrypto.
    fn open(page: EphemeralPrivateKey, sealed: &Sealed) -> Vec<u8> {
        let epk = B64.decode(&sealed.epk).unwrap();
        let info = page_info();
        let key = agree_ephemeral(page, &UnparsedPublicKey::new(&ECDH_P256, epk), |shared| {
            let prk = Salt::new(HKDF_SHA256, &[]).extract(shared);
            LessSafeKey::new(UnboundKey::from(prk.expand(&[&info], &AES_256_GCM).unwrap()))
        })
        .unwrap();
        let nonce = Nonce::try_assume_unique_for_key(&B64.decode(&sealed.nonce).unwrap()).unwrap();
        let mut ct = B64.decode(&sealed.ct).unwrap();
        key.open_in_place(nonce, Aad::empty(), &mut ct).unwrap().to_vec()
    }

    fn page() -> (EphemeralPrivateKey, PublicKey) {
        let private = EphemeralPrivateKey::generate(&ECDH_P256, &SystemRandom::new()).unwrap();
        let public = private.compute_public_key().unwrap();
        (private, public)
    }

    #[test]
    fn only_the_page_opens_what_is_sealed_to_it_and_nothing_shows_the_token() {
        let (private, public) = page();
        let key = PageKey::parse(&B64.encode(public.as_ref())).unwrap();
        let token = b"eyJhbGciOiJub25lIn0.eyJza3lwZWlkIjoiYWNzOjEifQ.";
        let sealed = seal(&key, token).unwrap();
        let seen = serde_json::to_string(&sealed).unwrap() + &format!("{sealed:?}{key:?}");
        assert!(!seen.contains("eyJza3lwZWlkIjoiYWNzOjEifQ") && !seen.contains("eyJhbGci"), "{seen}");
        assert_eq!(open(private, &sealed), token);
        // Another page's key opens nothing; a fresh key pair makes each sealing different.
        let (other, _) = page();
        let epk = B64.decode(&sealed.epk).unwrap();
        let wrong = agree_ephemeral(other, &UnparsedPublicKey::new(&ECDH_P256, epk), |shared| {
            let prk = Salt::new(HKDF_SHA256, &[]).extract(shared);
            LessSafeKey::new(UnboundKey::from(prk.expand(&[INFO], &AES_256_GCM).unwrap()))
        })
        .unwrap();
        let mut ct = B64.decode(&sealed.ct).unwrap();
        let nonce = Nonce::try_assume_unique_for_key(&B64.decode(&sealed.nonce).unwrap()).unwrap();
        assert!(wrong.open_in_place(nonce, Aad::empty(), &mut ct).is_err());
        assert_ne!(seal(&key, token).unwrap().ct, sealed.ct);
    }

    #[test]
    fn a_malformed_page_key_is_refused() {
        assert!(PageKey::parse("not base64!").is_err());
        assert!(PageKey::parse(&B64.encode([4u8; 33])).is_err());
        let off_curve = PageKey::parse(&B64.encode([4u8; 65])).unwrap();
        assert!(seal(&off_curve, b"t").unwrap_err().contains("not on the curve"));
    }
}
