//! The certificate a webhook names (`PAYPAL-CERT-URL`): which URLs kami fetches at all, and
//! what makes the fetched certificate PayPal's.
//!
//! A forger chooses the URL, so it is checked before anything is fetched: https, one of
//! PayPal's API hosts, the certificates path ([`CertPolicy::check_url`]; no user info, no
//! other port). The answer (PEM: the signing certificate, then its intermediates) must chain
//! to one of the policy's roots (signatures checked with aws-lc-rs, each certificate within its
//! validity, intermediates marked CA), its leaf's common name must end in `.paypal.com`, and
//! its key must be RSA. Tests and the demo inject their own roots and URL prefixes (the
//! simulator plays PayPal with a CA generated at run time); production uses
//! [`CertPolicy::paypal`].

use std::collections::HashMap;
use std::sync::Mutex;

use x509_parser::oid_registry::{OID_PKCS1_SHA1WITHRSA, OID_SHA1_WITH_RSA};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::crypto::{Certificate, RsaVerifier};

/// PayPal's API hosts that serve webhook certificates (live and sandbox).
pub const PAYPAL_CERT_HOSTS: [&str; 4] = [
    "api.paypal.com",
    "api-m.paypal.com",
    "api.sandbox.paypal.com",
    "api-m.sandbox.paypal.com",
];
/// Where PayPal serves them (`https://api.paypal.com/v1/notifications/certs/CERT-…`).
pub const CERT_PATH: &str = "/v1/notifications/certs/";
/// The signing certificate's common name must end with this.
pub const CN_SUFFIX: &str = ".paypal.com";
/// Longest chain followed from the leaf to a root.
const MAX_DEPTH: usize = 5;
/// Certificates kept (URLs are pinned to PayPal's hosts; this bounds the map regardless).
const CACHE_ENTRIES: usize = 16;

/// Why a certificate URL or a certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate URL is not one of PayPal's (https, PayPal's API hosts, {CERT_PATH})")]
    UrlNotAllowed,
    #[error("certificate file holds no PEM certificate")]
    NoCertificate,
    #[error("certificate does not parse")]
    Unparsable,
    #[error("certificate is outside its validity period")]
    Expired,
    #[error("certificate common name does not end in {CN_SUFFIX}")]
    WrongName,
    #[error("certificate does not chain to a trusted root")]
    Untrusted,
    #[error("certificate key is not an RSA key")]
    NotRsa,
}

/// A trusted root: its subject (DER `Name`, with its SEQUENCE header) and key (DER SPKI).
#[derive(Debug, Clone)]
struct Root {
    subject: Vec<u8>,
    spki: Vec<u8>,
}

/// Which certificate URLs are fetched and which roots vouch for what they serve.
#[derive(Debug, Clone)]
pub struct CertPolicy {
    /// Allowed URL prefixes (scheme, host, optional port, path), as `url` serialises them.
    prefixes: Vec<String>,
    roots: Vec<Root>,
}

/// DER SEQUENCE around `content` (webpki's anchors keep only the contents).
fn der_sequence(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    let n = content.len();
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
    out.extend_from_slice(content);
    out
}

impl CertPolicy {
    /// Production: PayPal's hosts over https, the Mozilla root programme's CAs (PayPal's
    /// certificates are issued by DigiCert).
    pub fn paypal() -> CertPolicy {
        CertPolicy {
            prefixes: PAYPAL_CERT_HOSTS
                .iter()
                .map(|h| format!("https://{h}{CERT_PATH}"))
                .collect(),
            roots: webpki_roots::TLS_SERVER_ROOTS
                .iter()
                .map(|a| Root {
                    subject: der_sequence(a.subject.as_ref()),
                    spki: der_sequence(a.subject_public_key_info.as_ref()),
                })
                .collect(),
        }
    }

    /// Another PayPal (the simulator): certificates under `url_prefixes` (each an http(s) URL
    /// ending in `/`), trusted when they chain to one of the PEM certificates `roots_pem`.
    pub fn custom(url_prefixes: &[String], roots_pem: &str) -> Result<CertPolicy, CertError> {
        let mut roots = Vec::new();
        for der in pem_certificates(roots_pem)? {
            let (_, c) = X509Certificate::from_der(&der).map_err(|_| CertError::Unparsable)?;
            roots.push(Root {
                subject: c.subject().as_raw().to_vec(),
                spki: c.public_key().raw.to_vec(),
            });
        }
        let prefixes = url_prefixes
            .iter()
            .filter_map(|p| url::Url::parse(p).ok())
            .map(|u| u.to_string())
            .collect();
        Ok(CertPolicy { prefixes, roots })
    }

    /// `url` if kami may fetch a signing certificate from it.
    pub fn check_url(&self, url: &str) -> Result<url::Url, CertError> {
        let u = url::Url::parse(url).map_err(|_| CertError::UrlNotAllowed)?;
        if !u.username().is_empty()
            || u.password().is_some()
            || u.query().is_some()
            || u.fragment().is_some()
            || !matches!(u.scheme(), "https" | "http")
        {
            return Err(CertError::UrlNotAllowed);
        }
        let s = u.as_str();
        // A prefix ends in `/`, so `api.paypal.com.evil.com` or `/certs/../x` cannot pass
        // (the parser has already resolved dot segments).
        if self
            .prefixes
            .iter()
            .any(|p| s.starts_with(p.as_str()) && s.len() > p.len())
        {
            Ok(u)
        } else {
            Err(CertError::UrlNotAllowed)
        }
    }

    /// The signing key of a fetched certificate file, once its chain, validity (at
    /// `now_secs`), name and key type check out.
    pub fn validate(&self, pem_text: &str, now_secs: i64) -> Result<SigningCert, CertError> {
        let ders = pem_certificates(pem_text)?;
        let parsed: Vec<X509Certificate<'_>> = ders
            .iter()
            .map(|d| {
                X509Certificate::from_der(d)
                    .map(|(_, c)| c)
                    .map_err(|_| CertError::Unparsable)
            })
            .collect::<Result<_, _>>()?;
        let leaf = parsed.first().ok_or(CertError::NoCertificate)?;
        let within = |c: &X509Certificate<'_>| {
            let v = c.validity();
            v.not_before.timestamp() <= now_secs && now_secs <= v.not_after.timestamp()
        };
        if !within(leaf) {
            return Err(CertError::Expired);
        }
        let cn_ok = leaf
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .is_some_and(|cn| cn.to_ascii_lowercase().ends_with(CN_SUFFIX));
        if !cn_ok {
            return Err(CertError::WrongName);
        }
        self.chain(leaf, &parsed[1..], within)?;
        let first = ders.first().ok_or(CertError::NoCertificate)?;
        let cert = Certificate::from_der(first).map_err(|_| CertError::NotRsa)?;
        Ok(SigningCert {
            key: cert.verifier,
            not_before: cert.not_before,
            not_after: cert.not_after,
        })
    }

    /// From `cert` up through `intermediates` to a root, every signature checked.
    fn chain(
        &self,
        cert: &X509Certificate<'_>,
        intermediates: &[X509Certificate<'_>],
        within: impl Fn(&X509Certificate<'_>) -> bool,
    ) -> Result<(), CertError> {
        let mut current = cert;
        for _ in 0..MAX_DEPTH {
            let issuer = current.issuer().as_raw();
            for root in self.roots.iter().filter(|r| r.subject == issuer) {
                if let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&root.spki) {
                    if signed_by(current, &spki) {
                        return Ok(());
                    }
                }
            }
            let next = intermediates.iter().find(|i| {
                i.subject().as_raw() == issuer
                    && i.is_ca()
                    && within(i)
                    && signed_by(current, i.public_key())
            });
            match next {
                Some(i) => current = i,
                None => return Err(CertError::Untrusted),
            }
        }
        Err(CertError::Untrusted)
    }
}

/// `cert`'s signature verifies with `key` (no SHA-1).
fn signed_by(cert: &X509Certificate<'_>, key: &SubjectPublicKeyInfo<'_>) -> bool {
    let alg = &cert.signature_algorithm.algorithm;
    if *alg == OID_PKCS1_SHA1WITHRSA || *alg == OID_SHA1_WITH_RSA {
        return false;
    }
    cert.verify_signature(Some(key)).is_ok()
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order.
fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let blocks = pem::parse_many(text).map_err(|_| CertError::Unparsable)?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(ders)
}

/// A checked signing certificate's key and validity (unix seconds).
#[derive(Debug, Clone)]
pub struct SigningCert {
    pub key: RsaVerifier,
    pub not_before: i64,
    pub not_after: i64,
}

/// Checked certificates by URL, filled ahead of verification (the fetch is I/O;
/// verification is pure).
#[derive(Debug, Default)]
pub struct CertCache {
    certs: Mutex<HashMap<String, SigningCert>>,
}

impl CertCache {
    /// The certificate of `url`, if fetched, checked and valid at `now_secs`.
    pub fn get(&self, url: &str, now_secs: i64) -> Option<SigningCert> {
        let certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        certs
            .get(url)
            .filter(|c| c.not_before <= now_secs && now_secs <= c.not_after)
            .cloned()
    }

    pub fn insert(&self, url: &str, cert: SigningCert, now_secs: i64) {
        let mut certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        if certs.len() >= CACHE_ENTRIES {
            certs.retain(|_, c| c.not_after >= now_secs);
            if certs.len() >= CACHE_ENTRIES {
                certs.clear();
            }
        }
        certs.insert(url.to_owned(), cert);
    }
}
