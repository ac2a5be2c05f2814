//! A SCEP responder (RFC 8894) in front of the enrollment service's CA. The adapter holds
//! a registration-authority key pair: devices encrypt their requests to it, and it signs
//! the answers. The device's key never leaves the device; the CA signs the CSR.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509NameBuilder, X509Req};

use crate::der::{self, Tlv};

const OID_SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const OID_DATA: &str = "1.2.840.113549.1.7.1";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_CONTENT_TYPE: &str = "1.2.840.113549.1.9.3";
const OID_MESSAGE_DIGEST: &str = "1.2.840.113549.1.9.4";
const OID_CHALLENGE_PASSWORD: &str = "1.2.840.113549.1.9.7";
const OID_MESSAGE_TYPE: &str = "2.16.840.1.113733.1.9.2";
const OID_PKI_STATUS: &str = "2.16.840.1.113733.1.9.3";
const OID_FAIL_INFO: &str = "2.16.840.1.113733.1.9.4";
const OID_SENDER_NONCE: &str = "2.16.840.1.113733.1.9.5";
const OID_RECIPIENT_NONCE: &str = "2.16.840.1.113733.1.9.6";
const OID_TRANSACTION_ID: &str = "2.16.840.1.113733.1.9.7";

/// Message types.
pub const PKCS_REQ: &str = "19";
pub const RENEWAL_REQ: &str = "17";

/// What GetCACaps answers.
pub const CAPABILITIES: &str =
    "POSTPKIOperation\nSHA-256\nSHA-1\nAES\nDES3\nSCEPStandard\nRenewal\n";

/// Largest PKIOperation message accepted.
pub const MAX_MESSAGE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ScepError {
    #[error("malformed SCEP message: {0}")]
    Malformed(&'static str),
    #[error("the request's signature does not verify")]
    BadSignature,
    #[error("the request cannot be decrypted")]
    Undecryptable,
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
}

impl From<der::DerError> for ScepError {
    fn from(_: der::DerError) -> Self {
        Self::Malformed("DER")
    }
}

/// The registration authority.
pub struct Ra {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Ra {
    /// A new self-signed RA certificate valid for ten years from `now` (Unix seconds).
    pub fn generate(organization: &str, now: i64) -> Result<Self, ScepError> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, organization)?;
        name.append_entry_by_nid(Nid::COMMONNAME, &format!("{organization} SCEP RA"))?;
        let name = name.build();
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        let not_before = Asn1Time::from_unix(now - 3600)?;
        builder.set_not_before(&not_before)?;
        let not_after = Asn1Time::from_unix(now + 10 * 365 * 86_400)?;
        builder.set_not_after(&not_after)?;
        builder.append_extension(BasicConstraints::new().build()?)?;
        builder.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()?,
        )?;
        builder.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            cert: builder.build(),
            key,
        })
    }
}

/// GetCACert: the RA and CA certificates as a certs-only CMS message
/// (`application/x-x509-ca-ra-cert`).
pub fn ca_ra_certs(ra: &X509, ca: &X509) -> Result<Vec<u8>, ScepError> {
    certs_only(&[ra.to_der()?, ca.to_der()?])
}

fn certs_only(certs: &[Vec<u8>]) -> Result<Vec<u8>, ScepError> {
    let signed_data = der::sequence(&[
        &der::integer_u64(1),
        &der::set_of(&[]),
        &der::sequence(&[&der::oid(OID_DATA)]),
        &der::tlv(0xa0, &certs.concat()),
        &der::set_of(&[]),
    ]);
    Ok(der::sequence(&[
        &der::oid(OID_SIGNED_DATA),
        &der::context(0, &signed_data),
    ]))
}

/// A device's PKIOperation request, decrypted.
pub struct Request {
    pub message_type: String,
    pub transaction_id: String,
    pub sender_nonce: Vec<u8>,
    /// The certificate that signed the request (self-signed for a first request, the
    /// current identity for a renewal).
    pub signer: X509,
    pub csr: X509Req,
    pub csr_der: Vec<u8>,
    pub challenge: Option<String>,
}

/// Reads, verifies and decrypts a PKIOperation message.
pub fn parse_request(message: &[u8], ra: &Ra) -> Result<Request, ScepError> {
    if message.len() > MAX_MESSAGE {
        return Err(ScepError::Malformed("too large"));
    }
    let attributes = signed_attributes(message)?;
    let find = |oid: &str| {
        attributes
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, v)| v.clone())
    };
    let message_type = find(OID_MESSAGE_TYPE)
        .and_then(|v| printable(&v))
        .ok_or(ScepError::Malformed("messageType"))?;
    let transaction_id = find(OID_TRANSACTION_ID)
        .and_then(|v| printable(&v))
        .ok_or(ScepError::Malformed("transactionID"))?;
    let sender_nonce = find(OID_SENDER_NONCE)
        .and_then(|v| der::read(&v).ok().and_then(|(t, _)| der::octets(&t).ok()))
        .ok_or(ScepError::Malformed("senderNonce"))?;
    if transaction_id.len() > 256 || sender_nonce.len() > 64 {
        return Err(ScepError::Malformed("attribute size"));
    }
    // The signature over the content, with the signer's own certificate (a first
    // request's certificate is self-signed: who the device is comes from the challenge).
    let pkcs7 = Pkcs7::from_der(message).map_err(|_| ScepError::Malformed("CMS"))?;
    let none = Stack::new()?;
    let signer = pkcs7
        .signers(&none, Pkcs7Flags::empty())
        .map_err(|_| ScepError::Malformed("signer"))?
        .iter()
        .next()
        .map(|c| c.to_owned())
        .ok_or(ScepError::Malformed("signer"))?;
    let store = X509StoreBuilder::new()?.build();
    let mut envelope = Vec::new();
    pkcs7
        .verify(
            &none,
            &store,
            None,
            Some(&mut envelope),
            Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY,
        )
        .map_err(|_| ScepError::BadSignature)?;
    let envelope = Pkcs7::from_der(&envelope).map_err(|_| ScepError::Malformed("envelope"))?;
    let csr_der = envelope
        .decrypt(&ra.key, &ra.cert, Pkcs7Flags::BINARY)
        .map_err(|_| ScepError::Undecryptable)?;
    let csr = X509Req::from_der(&csr_der).map_err(|_| ScepError::Malformed("CSR"))?;
    let public = csr.public_key()?;
    if !csr.verify(&public)? {
        return Err(ScepError::BadSignature);
    }
    let challenge = challenge_password(&csr_der)?;
    Ok(Request {
        message_type,
        transaction_id,
        sender_nonce,
        signer,
        csr,
        csr_der,
        challenge,
    })
}

/// The signed attributes of the first signer: (OID dotted → first value's DER).
fn signed_attributes(message: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ScepError> {
    let (content_info, _) = der::read(message)?;
    let parts = content_info.children()?;
    if !parts
        .first()
        .is_some_and(|o| der::is_oid(o, OID_SIGNED_DATA))
    {
        return Err(ScepError::Malformed("not signed data"));
    }
    let signed_data = parts
        .get(1)
        .ok_or(ScepError::Malformed("content"))?
        .child(0)?;
    let fields = signed_data.children()?;
    let signer_infos = fields.last().ok_or(ScepError::Malformed("signerInfos"))?;
    let signer_info = signer_infos.child(0)?;
    let attrs = signer_info
        .children()?
        .into_iter()
        .find(|t| t.tag == 0xa0)
        .ok_or(ScepError::Malformed("signedAttrs"))?;
    let mut out = Vec::new();
    for attribute in attrs.children()? {
        let pieces = attribute.children()?;
        let (Some(oid), Some(values)) = (pieces.first(), pieces.get(1)) else {
            continue;
        };
        let Some(value) = values.children()?.first().copied() else {
            continue;
        };
        out.push((oid_text(oid), value.raw.to_vec()));
    }
    Ok(out)
}

fn oid_text(tlv: &Tlv<'_>) -> String {
    let mut arcs = Vec::new();
    let mut value = 0u64;
    for (i, byte) in tlv.value.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() && i < 4 {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn printable(raw: &[u8]) -> Option<String> {
    let (tlv, _) = der::read(raw).ok()?;
    matches!(tlv.tag, 0x13 | 0x0c | 0x16)
        .then(|| String::from_utf8(tlv.value.to_vec()).ok())
        .flatten()
}

/// The challengePassword attribute of a PKCS#10 request.
fn challenge_password(csr: &[u8]) -> Result<Option<String>, ScepError> {
    let (request, _) = der::read(csr)?;
    let info = request.child(0)?;
    let Some(attributes) = info.children()?.into_iter().find(|t| t.tag == 0xa0) else {
        return Ok(None);
    };
    for attribute in attributes.children()? {
        let pieces = attribute.children()?;
        if pieces
            .first()
            .is_some_and(|o| der::is_oid(o, OID_CHALLENGE_PASSWORD))
        {
            let value = pieces
                .get(1)
                .ok_or(ScepError::Malformed("challenge"))?
                .child(0)?;
            return Ok(printable(value.raw));
        }
    }
    Ok(None)
}

/// SCEP failInfo values.
#[derive(Debug, Clone, Copy)]
pub enum FailInfo {
    BadAlg = 0,
    BadMessageCheck = 1,
    BadRequest = 2,
}

/// A CertRep carrying the issued certificate, encrypted to the requester.
pub fn cert_rep_success(
    ra: &Ra,
    request: &Request,
    issued: &X509,
    ca: &X509,
) -> Result<Vec<u8>, ScepError> {
    let degenerate = certs_only(&[issued.to_der()?, ca.to_der()?])?;
    let mut recipients = Stack::new()?;
    recipients.push(request.signer.clone())?;
    let envelope = Pkcs7::encrypt(
        &recipients,
        &degenerate,
        Cipher::aes_256_cbc(),
        Pkcs7Flags::BINARY,
    )?
    .to_der()?;
    cert_rep(ra, request, "0", None, Some(&envelope))
}

/// A CertRep refusing the request.
pub fn cert_rep_failure(ra: &Ra, request: &Request, fail: FailInfo) -> Result<Vec<u8>, ScepError> {
    cert_rep(ra, request, "2", Some(fail), None)
}

fn attribute(oid: &str, value: &[u8]) -> Vec<u8> {
    der::sequence(&[&der::oid(oid), &der::set_of(&[value.to_vec()])])
}

fn cert_rep(
    ra: &Ra,
    request: &Request,
    status: &str,
    fail: Option<FailInfo>,
    content: Option<&[u8]>,
) -> Result<Vec<u8>, ScepError> {
    let content = content.unwrap_or_default();
    let digest = openssl::sha::sha256(content);
    let mut nonce = [0u8; 16];
    openssl::rand::rand_bytes(&mut nonce)?;
    let mut attributes = vec![
        attribute(OID_CONTENT_TYPE, &der::oid(OID_DATA)),
        attribute(OID_MESSAGE_DIGEST, &der::octet_string(&digest)),
        attribute(OID_MESSAGE_TYPE, &der::printable_string("3")),
        attribute(OID_PKI_STATUS, &der::printable_string(status)),
        attribute(
            OID_TRANSACTION_ID,
            &der::printable_string(&request.transaction_id),
        ),
        attribute(
            OID_RECIPIENT_NONCE,
            &der::octet_string(&request.sender_nonce),
        ),
        attribute(OID_SENDER_NONCE, &der::octet_string(&nonce)),
    ];
    if let Some(fail) = fail {
        attributes.push(attribute(
            OID_FAIL_INFO,
            &der::printable_string(&(fail as u8).to_string()),
        ));
    }
    let signed_set = der::set_of(&attributes);
    let mut signer = Signer::new(MessageDigest::sha256(), &ra.key)?;
    signer.update(&signed_set)?;
    let signature = signer.sign_to_vec()?;
    // In the SignerInfo the attributes are [0] IMPLICIT.
    let mut implicit = signed_set.clone();
    implicit[0] = 0xa0;
    let sha256 = der::sequence(&[&der::oid(OID_SHA256), &der::null()]);
    let issuer = ra.cert.issuer_name().to_der()?;
    let serial = ra.cert.serial_number().to_bn()?.to_vec();
    let signer_info = der::sequence(&[
        &der::integer_u64(1),
        &der::sequence(&[&issuer, &der::integer_bytes(&serial)]),
        &sha256,
        &implicit,
        &der::sequence(&[&der::oid(OID_RSA), &der::null()]),
        &der::octet_string(&signature),
    ]);
    let encap = if content.is_empty() {
        der::sequence(&[&der::oid(OID_DATA)])
    } else {
        der::sequence(&[
            &der::oid(OID_DATA),
            &der::context(0, &der::octet_string(content)),
        ])
    };
    let signed_data = der::sequence(&[
        &der::integer_u64(1),
        &der::set_of(std::slice::from_ref(&sha256)),
        &encap,
        &der::tlv(0xa0, &ra.cert.to_der()?),
        &der::set_of(&[signer_info]),
    ]);
    Ok(der::sequence(&[
        &der::oid(OID_SIGNED_DATA),
        &der::context(0, &signed_data),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_text_round_trips() {
        for dotted in [OID_SIGNED_DATA, OID_TRANSACTION_ID, OID_SHA256, "2.5.4.3"] {
            let encoded = der::oid(dotted);
            let (tlv, _) = der::read(&encoded).unwrap();
            assert_eq!(oid_text(&tlv), dotted);
        }
    }

    #[test]
    fn get_ca_cert_is_readable_by_openssl() {
        let ra = Ra::generate("Test", 1_767_225_600).unwrap();
        let body = ca_ra_certs(&ra.cert, &ra.cert).unwrap();
        let pkcs7 = Pkcs7::from_der(&body).unwrap();
        let certs = pkcs7.signed().unwrap().certificates().unwrap();
        assert_eq!(certs.len(), 2);
    }
}
