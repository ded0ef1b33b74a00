//! Encryption of the local state at rest (`advanced.security.encrypt_secrets`
//! with `ENCRYPTION_KEY`): XChaCha20-Poly1305 (authenticated), a fresh random
//! 24-byte nonce per write, the key derived from the configured key text by
//! SHA-256 with a domain prefix.
//!
//! File format: `MCSTATE-ENC1\n` + nonce + ciphertext (with its tag). A
//! wrong key fails authentication: a clear error, and the file is never
//! overwritten by a store that could not read it. See decision 0008.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

pub const MAGIC: &[u8] = b"MCSTATE-ENC1\n";
const NONCE_LEN: usize = 24;

/// The state key; never printed.
#[derive(Clone)]
pub struct StateCipher {
    aead: XChaCha20Poly1305,
}

impl std::fmt::Debug for StateCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCipher(***)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CipherError {
    #[error(
        "the state is encrypted but no key is configured: set advanced.security.encrypt_secrets: true and ENCRYPTION_KEY"
    )]
    NoKey,
    #[error("the state cannot be decrypted: wrong ENCRYPTION_KEY, or the file was altered")]
    WrongKeyOrTampered,
    #[error("the encrypted state is truncated")]
    Truncated,
    #[error("encryption failed")]
    Encrypt,
}

impl StateCipher {
    pub fn from_key(key: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"memory-connector state key v1\0");
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        Self { aead: XChaCha20Poly1305::new(&digest) }
    }

    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self.aead.encrypt(&nonce, plain).map_err(|_| CipherError::Encrypt)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn decrypt(&self, bytes: &[u8]) -> Result<Vec<u8>, CipherError> {
        let body = bytes.strip_prefix(MAGIC).ok_or(CipherError::Truncated)?;
        if body.len() < NONCE_LEN + 16 {
            return Err(CipherError::Truncated);
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        self.aead.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| CipherError::WrongKeyOrTampered)
    }
}

pub fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The bytes as stored -> the plain bytes, under the configured cipher (if any).
pub fn open_bytes(cipher: Option<&StateCipher>, bytes: &[u8]) -> Result<Option<Vec<u8>>, CipherError> {
    match (is_encrypted(bytes), cipher) {
        (false, _) => Ok(None),
        (true, None) => Err(CipherError::NoKey),
        (true, Some(c)) => c.decrypt(bytes).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wrong_key_and_tampering() {
        let c = StateCipher::from_key("a-32-character-key-for-the-tests!");
        let sealed = c.encrypt(b"{\"connectors\": {}}").unwrap();
        assert!(is_encrypted(&sealed));
        assert!(!sealed.windows(10).any(|w| w == b"connectors"));
        assert_eq!(c.decrypt(&sealed).unwrap(), b"{\"connectors\": {}}");
        assert_ne!(c.encrypt(b"x").unwrap(), c.encrypt(b"x").unwrap(), "fresh nonce per write");
        let other = StateCipher::from_key("another-32-character-key-for-tests");
        assert_eq!(other.decrypt(&sealed), Err(CipherError::WrongKeyOrTampered));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(c.decrypt(&tampered), Err(CipherError::WrongKeyOrTampered));
        assert_eq!(open_bytes(None, &sealed), Err(CipherError::NoKey));
        assert_eq!(open_bytes(None, b"{}"), Ok(None));
        assert_eq!(format!("{c:?}"), "StateCipher(***)");
    }
}
