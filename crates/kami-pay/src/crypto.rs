//! The cryptography every protocol needs, in one place: RSA PKCS#1 v1.5 signatures (aws-lc-rs,
//! constant-time; not the `rsa` crate, which has an open timing advisory), keys loaded from
//! whatever form a payment console hands out, AES-256-GCM, MD5.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::Engine;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("not PEM or base64 key material")]
    Encoding,
    #[error("not an RSA private key (PKCS#1 or PKCS#8, 2048-8192 bits)")]
    BadPrivateKey,
    #[error("not an RSA public key (SubjectPublicKeyInfo, PKCS#1 or X.509 certificate)")]
    BadPublicKey,
    #[error("signing failed")]
    Sign,
    #[error("decryption failed (wrong key, nonce, associated data or tampered ciphertext)")]
    Decrypt,
}

/// The digest inside an RSA PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaHash {
    /// Alipay `RSA2`, WeChat Pay v3, Epay v2.
    Sha256,
    /// Alipay legacy `RSA`.
    Sha1,
}

/// DER bytes from PEM (any label) or bare base64 (whitespace ignored), as consoles hand them out.
fn der_from_text(text: &str) -> Result<(Option<String>, Vec<u8>), KeyError> {
    let t = text.trim();
    if t.starts_with("-----BEGIN") {
        let p = pem::parse(t).map_err(|_| KeyError::Encoding)?;
        return Ok((Some(p.tag().to_owned()), p.into_contents()));
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(compact)
        .map(|d| (None, d))
        .map_err(|_| KeyError::Encoding)
}

/// An RSA private key that signs (PKCS#1 v1.5).
pub struct RsaSigner {
    key: KeyPair,
    /// The key's DER (PKCS#8 or PKCS#1), kept for legacy SHA1 signing only.
    der: Vec<u8>,
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(***)")
    }
}

impl RsaSigner {
    /// PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`), PEM or bare base64.
    pub fn from_text(text: &str) -> Result<RsaSigner, KeyError> {
        let (_, der) = der_from_text(text)?;
        let key = KeyPair::from_pkcs8(&der)
            .or_else(|_| KeyPair::from_der(&der))
            .map_err(|_| KeyError::BadPrivateKey)?;
        Ok(RsaSigner { key, der })
    }

    /// A fresh 2048-bit key (demo and tests).
    pub fn generate() -> Result<RsaSigner, KeyError> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::BadPrivateKey)?;
        let der: Pkcs8V1Der<'static> = key.as_der().map_err(|_| KeyError::BadPrivateKey)?;
        let der = der.as_ref().to_vec();
        Ok(RsaSigner { key, der })
    }

    pub fn sign(&self, hash: RsaHash, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match hash {
            RsaHash::Sha256 => {
                let mut sig = vec![0u8; self.key.public_modulus_len()];
                self.key
                    .sign(
                        &signature::RSA_PKCS1_SHA256,
                        &SystemRandom::new(),
                        message,
                        &mut sig,
                    )
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            RsaHash::Sha1 => sign_sha1_legacy(&self.der, message),
        }
    }

    /// Standard base64 of the signature, the form every protocol here transmits.
    pub fn sign_base64(&self, hash: RsaHash, message: &[u8]) -> Result<String, KeyError> {
        self.sign(hash, message).map(|s| B64.encode(s))
    }

    /// The public half, as a verifier.
    pub fn verifier(&self) -> Result<RsaVerifier, KeyError> {
        RsaVerifier::from_der(self.public_key_spki_der()?.as_slice())
    }

    /// SubjectPublicKeyInfo DER of the public half.
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        let der: PublicKeyX509Der<'static> = self
            .key
            .public_key()
            .as_der()
            .map_err(|_| KeyError::BadPublicKey)?;
        Ok(der.as_ref().to_vec())
    }

    /// `BEGIN PUBLIC KEY` PEM of the public half.
    pub fn public_key_pem(&self) -> Result<String, KeyError> {
        Ok(pem::encode(&pem::Pem::new(
            "PUBLIC KEY",
            self.public_key_spki_der()?,
        )))
    }

    /// `BEGIN PRIVATE KEY` (PKCS#8) PEM, to write a generated key to a file.
    pub fn private_key_pem(&self) -> Result<String, KeyError> {
        let der: Pkcs8V1Der<'static> = self.key.as_der().map_err(|_| KeyError::BadPrivateKey)?;
        Ok(pem::encode(&pem::Pem::new(
            "PRIVATE KEY",
            der.as_ref().to_vec(),
        )))
    }
}

/// SHA1withRSA (PKCS#1 v1.5) through AWS-LC's `RSA_sign`: aws-lc-rs offers SHA1 only for
/// verification, and Alipay's legacy `RSA` sign type still needs it for requests.
fn sign_sha1_legacy(der: &[u8], message: &[u8]) -> Result<Vec<u8>, KeyError> {
    use aws_lc_sys::{
        d2i_AutoPrivateKey, EVP_PKEY_free, EVP_PKEY_get1_RSA, NID_sha1, RSA_free, RSA_sign,
        RSA_size,
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, message);
    let len = std::os::raw::c_long::try_from(der.len()).map_err(|_| KeyError::BadPrivateKey)?;
    // SAFETY: `p` points into `der`, which outlives the call; every pointer AWS-LC returns is
    // checked for null and freed exactly once; `out` has RSA_size bytes as RSA_sign requires.
    unsafe {
        let mut p = der.as_ptr();
        let pkey = d2i_AutoPrivateKey(std::ptr::null_mut(), &mut p, len);
        if pkey.is_null() {
            return Err(KeyError::BadPrivateKey);
        }
        let rsa = EVP_PKEY_get1_RSA(pkey);
        EVP_PKEY_free(pkey);
        if rsa.is_null() {
            return Err(KeyError::BadPrivateKey);
        }
        let mut out = vec![0u8; RSA_size(rsa) as usize];
        let mut out_len: std::os::raw::c_uint = 0;
        let d = digest.as_ref();
        let ok = RSA_sign(
            NID_sha1,
            d.as_ptr(),
            d.len(),
            out.as_mut_ptr(),
            &mut out_len,
            rsa,
        );
        RSA_free(rsa);
        if ok != 1 {
            return Err(KeyError::Sign);
        }
        out.truncate(out_len as usize);
        Ok(out)
    }
}

/// An RSA public key that verifies PKCS#1 v1.5 signatures.
#[derive(Clone)]
pub struct RsaVerifier {
    /// PKCS#1 `RSAPublicKey` DER, what aws-lc-rs verifies with.
    pkcs1: Vec<u8>,
}

impl std::fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaVerifier")
    }
}

impl RsaVerifier {
    /// SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`), PKCS#1 (`BEGIN RSA PUBLIC KEY`) or an X.509
    /// certificate (`BEGIN CERTIFICATE`), PEM or bare base64.
    pub fn from_text(text: &str) -> Result<RsaVerifier, KeyError> {
        let (tag, der) = der_from_text(text)?;
        if tag.as_deref() == Some("CERTIFICATE") {
            return Ok(Certificate::from_der(&der)?.verifier);
        }
        RsaVerifier::from_der(&der)
    }

    /// DER in any of the forms above (tried in turn).
    pub fn from_der(der: &[u8]) -> Result<RsaVerifier, KeyError> {
        use x509_parser::prelude::FromDer;
        if let Ok((rest, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der) {
            if rest.is_empty() {
                return RsaVerifier::from_pkcs1(spki.subject_public_key.data.to_vec());
            }
        }
        if let Ok(cert) = Certificate::from_der(der) {
            return Ok(cert.verifier);
        }
        RsaVerifier::from_pkcs1(der.to_vec())
    }

    fn from_pkcs1(pkcs1: Vec<u8>) -> Result<RsaVerifier, KeyError> {
        // Parse once so a bad key fails at load time, not at the first notification.
        aws_lc_rs::rsa::PublicEncryptingKey::from_der(&pkcs1_to_spki(&pkcs1))
            .map_err(|_| KeyError::BadPublicKey)?;
        Ok(RsaVerifier { pkcs1 })
    }

    pub fn verify(&self, hash: RsaHash, message: &[u8], sig: &[u8]) -> bool {
        let alg: &'static dyn signature::VerificationAlgorithm = match hash {
            RsaHash::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            RsaHash::Sha1 => &signature::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY,
        };
        UnparsedPublicKey::new(alg, &self.pkcs1)
            .verify(message, sig)
            .is_ok()
    }

    /// Verify a standard-base64 signature; malformed base64 is simply invalid.
    pub fn verify_base64(&self, hash: RsaHash, message: &[u8], sig_b64: &str) -> bool {
        match B64.decode(sig_b64.trim()) {
            Ok(sig) => self.verify(hash, message, &sig),
            Err(_) => false,
        }
    }
}

/// Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (rsaEncryption, NULL parameters).
fn pkcs1_to_spki(pkcs1: &[u8]) -> Vec<u8> {
    fn der_len(n: usize, out: &mut Vec<u8>) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    const ALG: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bit_string);
    bit_string.push(0);
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALG.len() + bit_string.len(), &mut out);
    out.extend_from_slice(&ALG);
    out.extend(bit_string);
    out
}

/// An X.509 certificate's serial number (upper-case hex, as WeChat Pay sends it) and key.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub serial_hex: String,
    pub verifier: RsaVerifier,
    /// Validity window, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl Certificate {
    pub fn from_text(text: &str) -> Result<Certificate, KeyError> {
        let (_, der) = der_from_text(text)?;
        Certificate::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<Certificate, KeyError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| KeyError::BadPublicKey)?;
        let spki = cert.public_key();
        let verifier = RsaVerifier::from_pkcs1(spki.subject_public_key.data.to_vec())?;
        Ok(Certificate {
            serial_hex: hex::encode_upper(cert.raw_serial())
                .trim_start_matches('0')
                .to_owned(),
            verifier,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// AES-256-GCM with a 16-byte tag appended to the ciphertext (WeChat Pay v3 `resource`).
pub fn aes256gcm_decrypt(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Vec<u8>, KeyError> {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| KeyError::Decrypt)?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Decrypt)?;
    let mut buf = ciphertext_and_tag.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Decrypt)?;
    Ok(plain.to_vec())
}

/// The inverse of [`aes256gcm_decrypt`] (simulators, tests).
pub fn aes256gcm_encrypt(
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, KeyError> {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| KeyError::Decrypt)?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Decrypt)?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| KeyError::Decrypt)?;
    Ok(buf)
}

/// Lower-case hex MD5 (Epay v1 signatures).
pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(data))
}

/// Constant-time equality for signatures and keys.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_in_every_key_form() {
        let signer = RsaSigner::generate().unwrap();
        let pem_pub = signer.public_key_pem().unwrap();
        let msg = b"app_id=2021&method=alipay.trade.query";
        for hash in [RsaHash::Sha256, RsaHash::Sha1] {
            let sig = signer.sign_base64(hash, msg).unwrap();
            assert_eq!(sig.len(), 344);
            let v = RsaVerifier::from_text(&pem_pub).unwrap();
            assert!(v.verify_base64(hash, msg, &sig));
            assert!(!v.verify_base64(hash, b"app_id=2022&method=alipay.trade.query", &sig));
            assert!(!v.verify_base64(hash, msg, "not base64!"));
            let other = if hash == RsaHash::Sha256 {
                RsaHash::Sha1
            } else {
                RsaHash::Sha256
            };
            assert!(!v.verify_base64(other, msg, &sig));
        }
        // Bare base64 SPKI (the Alipay console form) and PKCS#1 public keys load too.
        let spki = signer.public_key_spki_der().unwrap();
        let bare = B64.encode(&spki);
        assert!(RsaVerifier::from_text(&bare).is_ok());
        use x509_parser::prelude::FromDer;
        let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).unwrap();
        let pkcs1_pem = pem::encode(&pem::Pem::new(
            "RSA PUBLIC KEY",
            parsed.subject_public_key.data.to_vec(),
        ));
        let v = RsaVerifier::from_text(&pkcs1_pem).unwrap();
        assert!(v.verify_base64(
            RsaHash::Sha256,
            msg,
            &signer.sign_base64(RsaHash::Sha256, msg).unwrap()
        ));
        // Private keys: PKCS#8 PEM and bare base64 round-trip.
        let pk8 = signer.private_key_pem().unwrap();
        let again = RsaSigner::from_text(&pk8).unwrap();
        assert_eq!(again.public_key_spki_der().unwrap(), spki);
        let bare_priv: String = pk8.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(RsaSigner::from_text(&bare_priv).is_ok());
        assert_eq!(format!("{signer:?}"), "RsaSigner(***)");
    }

    #[test]
    fn rejects_garbage_keys() {
        assert_eq!(
            RsaSigner::from_text("hello").unwrap_err(),
            KeyError::Encoding
        );
        assert_eq!(
            RsaSigner::from_text("aGVsbG8=").unwrap_err(),
            KeyError::BadPrivateKey
        );
        assert!(RsaVerifier::from_text("aGVsbG8=").is_err());
        assert!(RsaVerifier::from_text(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
        )
        .is_err());
    }

    #[test]
    fn aes_gcm_round_trip_and_tamper() {
        let key = [7u8; 32];
        let ct = aes256gcm_encrypt(&key, b"0123456789ab", b"transaction", b"{\"a\":1}").unwrap();
        assert_eq!(
            aes256gcm_decrypt(&key, b"0123456789ab", b"transaction", &ct).unwrap(),
            b"{\"a\":1}"
        );
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(aes256gcm_decrypt(&key, b"0123456789ab", b"transaction", &bad).is_err());
        assert!(aes256gcm_decrypt(&key, b"0123456789ab", b"certificate", &ct).is_err());
        assert!(aes256gcm_decrypt(&[8u8; 32], b"0123456789ab", b"transaction", &ct).is_err());
        assert!(aes256gcm_decrypt(&key, b"short", b"transaction", &ct).is_err());
    }

    #[test]
    fn md5_known_vector() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
