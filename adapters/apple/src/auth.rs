//! Device authentication: who sent a request, proven by the identity certificate.
//!
//! Two ways, as Apple allows:
//! - `Mdm-Signature`: a detached CMS signature over the body (base64), whose signer
//!   certificate must chain to a trusted CA. Verified on every request (the body differs
//!   each time); a certificate seen before skips the chain check.
//! - Behind a TLS-terminating ingress, the client certificate forwarded in a header
//!   (RFC 9440 `:base64 DER:` or URL-escaped PEM), when configured. A header value seen
//!   before is answered from a cache keyed by its hash, so the hot path costs a hash.
//!
//! Trusted CAs: the enrollment service's device-identity CA (fetched once) and the
//! configured enterprise CAs, each bound to a tenant. Validity times are checked against
//! the injected clock, not the system's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use mdm_domain::TenantId;
use mdm_runtime::SharedClock;
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509Ref, X509StoreContext};

/// The header of the CMS signature.
pub const SIGNATURE_HEADER: &str = "Mdm-Signature";
/// Largest signature or forwarded-certificate header accepted.
const MAX_HEADER: usize = 32 * 1024;
/// Entries kept in each cache before it is emptied.
const CACHE_CAPACITY: usize = 200_000;

/// Why a request is not authenticated. Never shown to the device in detail.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no signature and no forwarded certificate")]
    Missing,
    #[error("the signature or certificate cannot be read")]
    Malformed,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the certificate does not chain to a trusted CA")]
    Untrusted,
    #[error("the certificate is not valid now")]
    Expired,
    #[error("the device-identity CA is not known yet")]
    NoTrustAnchor,
}

/// Who issued a device's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issuer {
    /// The enrollment service's device-identity CA.
    Ours,
    /// A configured enterprise CA, for this tenant's devices.
    Enterprise(TenantId),
}

/// An authenticated device certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCert {
    /// SHA-256 of the DER certificate: what enrollments are bound to.
    pub hash: [u8; 32],
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: Issuer,
    pub der: Arc<[u8]>,
}

impl DeviceCert {
    pub fn not_after_time(&self) -> DateTime<Utc> {
        mdm_store::from_millis(self.not_after)
    }
}

struct Trust {
    store: X509Store,
    ours: Option<X509>,
}

/// Authenticates devices.
pub struct Authenticator {
    clock: SharedClock,
    header: Option<::http::HeaderName>,
    enterprise: Vec<(X509, TenantId)>,
    trust: RwLock<Trust>,
    /// Verified certificates by their hash.
    certs: Mutex<HashMap<[u8; 32], Arc<DeviceCert>>>,
    /// Forwarded header values (by hash) already resolved to a certificate.
    headers: Mutex<HashMap<[u8; 32], Arc<DeviceCert>>>,
}

impl Authenticator {
    /// `header`: the forwarded client-certificate header when trusted.
    pub fn new(
        clock: SharedClock,
        header: Option<::http::HeaderName>,
        enterprise: Vec<(X509, TenantId)>,
    ) -> anyhow::Result<Self> {
        let store = build_store(None, &enterprise)?;
        Ok(Self {
            clock,
            header,
            enterprise,
            trust: RwLock::new(Trust { store, ours: None }),
            certs: Mutex::new(HashMap::new()),
            headers: Mutex::new(HashMap::new()),
        })
    }

    /// Whether the enrollment service's CA is known.
    pub fn has_our_ca(&self) -> bool {
        self.trust.read().map(|t| t.ours.is_some()).unwrap_or(false)
    }

    pub fn our_ca(&self) -> Option<X509> {
        self.trust.read().ok().and_then(|t| t.ours.clone())
    }

    /// Trusts the enrollment service's device-identity CA.
    pub fn set_our_ca(&self, ca: X509) -> anyhow::Result<()> {
        let store = build_store(Some(&ca), &self.enterprise)?;
        if let Ok(mut trust) = self.trust.write() {
            *trust = Trust {
                store,
                ours: Some(ca),
            };
        }
        Ok(())
    }

    /// Authenticates a request from its headers and body.
    pub fn authenticate(
        &self,
        headers: &actix_web::http::header::HeaderMap,
        body: &[u8],
    ) -> Result<Arc<DeviceCert>, AuthError> {
        if let Some(signature) = headers.get(SIGNATURE_HEADER) {
            return self.verify_signature(signature.as_bytes(), body);
        }
        if let Some(name) = &self.header
            && let Some(value) = headers.get(name.as_str())
        {
            return self.forwarded(value.as_bytes());
        }
        Err(AuthError::Missing)
    }

    /// Verifies a detached CMS signature (base64 in `Mdm-Signature`) over `body`.
    pub fn verify_signature(
        &self,
        header: &[u8],
        body: &[u8],
    ) -> Result<Arc<DeviceCert>, AuthError> {
        if header.len() > MAX_HEADER {
            return Err(AuthError::Malformed);
        }
        let cleaned: Vec<u8> = header
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        let der = STANDARD.decode(cleaned).map_err(|_| AuthError::Malformed)?;
        let pkcs7 = Pkcs7::from_der(&der).map_err(|_| AuthError::Malformed)?;
        let none = Stack::new().map_err(|_| AuthError::Malformed)?;
        let signers = pkcs7
            .signers(&none, Pkcs7Flags::empty())
            .map_err(|_| AuthError::Malformed)?;
        let signer = signers
            .iter()
            .next()
            .ok_or(AuthError::Malformed)?
            .to_owned();
        let hash = cert_hash(&signer)?;
        let known = self.cached_cert(&hash);
        let trust = self.trust.read().map_err(|_| AuthError::NoTrustAnchor)?;
        // A certificate verified before needs only the signature checked.
        let flags = if known.is_some() {
            Pkcs7Flags::BINARY | Pkcs7Flags::NOVERIFY
        } else {
            Pkcs7Flags::BINARY
        };
        pkcs7
            .verify(&none, &trust.store, Some(body), None, flags)
            .map_err(|_| {
                if known.is_some() {
                    AuthError::BadSignature
                } else {
                    AuthError::Untrusted
                }
            })?;
        drop(trust);
        let cert = match known {
            Some(cert) => cert,
            None => self.admit(&signer, hash)?,
        };
        self.check_time(&cert)?;
        Ok(cert)
    }

    /// Resolves a forwarded client certificate.
    pub fn forwarded(&self, value: &[u8]) -> Result<Arc<DeviceCert>, AuthError> {
        if value.len() > MAX_HEADER || value.is_empty() {
            return Err(AuthError::Malformed);
        }
        let key = openssl::sha::sha256(value);
        if let Some(cert) = self.headers.lock().ok().and_then(|m| m.get(&key).cloned()) {
            self.check_time(&cert)?;
            return Ok(cert);
        }
        let cert = parse_forwarded(value)?;
        let hash = cert_hash(&cert)?;
        let device = match self.cached_cert(&hash) {
            Some(known) => known,
            None => self.admit(&cert, hash)?,
        };
        self.check_time(&device)?;
        if let Ok(mut headers) = self.headers.lock() {
            if headers.len() >= CACHE_CAPACITY {
                headers.clear();
            }
            headers.insert(key, device.clone());
        }
        Ok(device)
    }

    /// Verifies a certificate presented another way (a SCEP renewal's signer).
    pub fn verify_certificate(&self, cert: &X509Ref) -> Result<Arc<DeviceCert>, AuthError> {
        let hash = cert_hash(cert)?;
        let device = match self.cached_cert(&hash) {
            Some(known) => known,
            None => self.admit(cert, hash)?,
        };
        self.check_time(&device)?;
        Ok(device)
    }

    fn cached_cert(&self, hash: &[u8; 32]) -> Option<Arc<DeviceCert>> {
        self.certs.lock().ok().and_then(|m| m.get(hash).cloned())
    }

    /// Checks the chain of a certificate not seen before and remembers it.
    fn admit(&self, cert: &X509Ref, hash: [u8; 32]) -> Result<Arc<DeviceCert>, AuthError> {
        let issuer = self.verify_chain(cert)?;
        let device = Arc::new(DeviceCert {
            hash,
            subject: common_name(cert).unwrap_or_default(),
            not_before: asn1_millis(cert.not_before()).ok_or(AuthError::Malformed)?,
            not_after: asn1_millis(cert.not_after()).ok_or(AuthError::Malformed)?,
            issuer,
            der: cert.to_der().map_err(|_| AuthError::Malformed)?.into(),
        });
        if let Ok(mut certs) = self.certs.lock() {
            if certs.len() >= CACHE_CAPACITY {
                certs.clear();
            }
            certs.insert(hash, device.clone());
        }
        Ok(device)
    }

    fn verify_chain(&self, cert: &X509Ref) -> Result<Issuer, AuthError> {
        let trust = self.trust.read().map_err(|_| AuthError::NoTrustAnchor)?;
        let chain = Stack::new().map_err(|_| AuthError::Malformed)?;
        let mut context = X509StoreContext::new().map_err(|_| AuthError::Malformed)?;
        let root = context
            .init(&trust.store, cert, &chain, |ctx| {
                if !ctx.verify_cert()? {
                    return Ok(None);
                }
                Ok(ctx
                    .chain()
                    .and_then(|chain| chain.iter().last().map(|c| c.to_owned())))
            })
            .map_err(|_| AuthError::Untrusted)?
            .ok_or(AuthError::Untrusted)?;
        let now = self.clock.now();
        let at = Asn1Time::from_unix(now.timestamp()).map_err(|_| AuthError::Malformed)?;
        if root.not_after() < at || root.not_before() > at {
            return Err(AuthError::Expired);
        }
        if let Some(ours) = &trust.ours
            && same_cert(ours, &root)
        {
            return Ok(Issuer::Ours);
        }
        self.enterprise
            .iter()
            .find(|(ca, _)| same_cert(ca, &root))
            .map(|(_, tenant)| Issuer::Enterprise(*tenant))
            .ok_or(AuthError::Untrusted)
    }

    fn check_time(&self, cert: &DeviceCert) -> Result<(), AuthError> {
        let now = self.clock.now().timestamp_millis();
        if now < cert.not_before || now > cert.not_after {
            return Err(AuthError::Expired);
        }
        Ok(())
    }
}

fn build_store(ours: Option<&X509>, enterprise: &[(X509, TenantId)]) -> anyhow::Result<X509Store> {
    let mut builder = X509StoreBuilder::new()?;
    // Times are checked against the injected clock instead.
    builder.set_flags(X509VerifyFlags::NO_CHECK_TIME)?;
    // Identity certificates carry client-auth usages, not S/MIME ones.
    builder.set_purpose(openssl::x509::X509PurposeId::ANY)?;
    if let Some(ca) = ours {
        builder.add_cert(ca.clone())?;
    }
    for (ca, _) in enterprise {
        builder.add_cert(ca.clone())?;
    }
    Ok(builder.build())
}

fn same_cert(a: &X509Ref, b: &X509Ref) -> bool {
    match (a.to_der(), b.to_der()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// SHA-256 of the certificate's DER.
pub fn cert_hash(cert: &X509Ref) -> Result<[u8; 32], AuthError> {
    let der = cert.to_der().map_err(|_| AuthError::Malformed)?;
    Ok(openssl::sha::sha256(&der))
}

pub fn common_name(cert: &X509Ref) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| String::from_utf8(e.data().as_slice().to_vec()).ok())
}

/// Unix milliseconds of an ASN.1 time.
pub fn asn1_millis(time: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    Some((i64::from(diff.days) * 86_400 + i64::from(diff.secs)) * 1000)
}

/// Reads a forwarded certificate: RFC 9440 (`:base64 DER:`), URL-escaped PEM, or plain
/// base64 DER.
fn parse_forwarded(value: &[u8]) -> Result<X509, AuthError> {
    let text = std::str::from_utf8(value)
        .map_err(|_| AuthError::Malformed)?
        .trim();
    if let Some(inner) = text.strip_prefix(':').and_then(|t| t.strip_suffix(':')) {
        let der = STANDARD.decode(inner).map_err(|_| AuthError::Malformed)?;
        return X509::from_der(&der).map_err(|_| AuthError::Malformed);
    }
    if text.contains("BEGIN") {
        let pem = percent_decode(text).ok_or(AuthError::Malformed)?;
        return X509::from_pem(&pem).map_err(|_| AuthError::Malformed);
    }
    let der = STANDARD.decode(text).map_err(|_| AuthError::Malformed)?;
    X509::from_der(&der).map_err(|_| AuthError::Malformed)
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%0Ac").unwrap(), b"a b\nc");
        assert!(percent_decode("bad%2").is_none());
        assert!(percent_decode("bad%zz").is_none());
    }

    #[test]
    fn forwarded_garbage_is_malformed() {
        assert_eq!(
            parse_forwarded(b":not base64:").unwrap_err(),
            AuthError::Malformed
        );
        assert_eq!(
            parse_forwarded(b"-----BEGIN%20CERTIFICATE-----").unwrap_err(),
            AuthError::Malformed
        );
        assert_eq!(
            parse_forwarded(&[0xff, 0xfe]).unwrap_err(),
            AuthError::Malformed
        );
    }
}
