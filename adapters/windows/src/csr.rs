//! PKCS#10 certificate requests as Windows sends them, read with a small DER reader.
//!
//! openssl's own CSR code is not used for reading because the Windows request is unusual:
//! its subject CN is a PrintableString holding `!` and a trailing NUL, it is signed with
//! the old OIW OID for SHA-1 with RSA (1.3.14.3.2.29), and the DeviceID sits in the
//! Microsoft extension 1.3.6.1.4.1.311.66.1.0 as NUL-terminated text. The structure is
//! walked here and the signature checked with openssl over the exact bytes signed.
//!
//! A SHA-1 signature is accepted: it only proves that the client holds the private key
//! of the request; the certificate our CA issues is signed with its own algorithm.

use openssl::hash::MessageDigest;
use openssl::pkey::{Id, PKey, Public};
use openssl::sign::Verifier;

/// The largest request accepted.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("the certificate request is not valid DER: {0}")]
    Der(&'static str),
    #[error("the certificate request is larger than {MAX_CSR_BYTES} bytes")]
    TooLarge,
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("the public key cannot be used: {0}")]
    BadKey(String),
    #[error("the key is {0} bits; at least {1} are required")]
    KeyTooShort(u32, u32),
    #[error("the signature of the certificate request does not verify")]
    BadSignature,
}

/// A verified certificate request.
#[derive(Debug, Clone)]
pub struct Csr {
    /// The whole request, DER.
    pub der: Vec<u8>,
    /// The subject common name as sent (NULs removed), for logs only: it is not trusted.
    pub subject_common_name: Option<String>,
    /// The DeviceID of extension 1.3.6.1.4.1.311.66.1.0 (trailing NULs removed).
    pub device_id: Option<String>,
    /// The dotted OID of the signature algorithm.
    pub signature_algorithm: String,
    pub key_bits: u32,
    pub public_key: PKey<Public>,
}

const OID_COMMON_NAME: &str = "2.5.4.3";
const OID_EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";
/// Microsoft's DeviceID extension in Windows enrollment requests.
pub const OID_DEVICE_ID: &str = "1.3.6.1.4.1.311.66.1.0";

/// A DER element: its tag, its content, and all of its bytes.
#[derive(Debug, Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads DER elements one after another.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn next(&mut self) -> Result<Tlv<'a>, CsrError> {
        let data = self.rest;
        let (&tag, after_tag) = data.split_first().ok_or(CsrError::Der("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(CsrError::Der("multi-byte tags are not used here"));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(CsrError::Der("truncated"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(CsrError::Der("unsupported length"));
            }
            if after_len.len() < count {
                return Err(CsrError::Der("truncated"));
            }
            let (bytes, rest) = after_len.split_at(count);
            after_len = rest;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return Err(CsrError::Der("truncated"));
        }
        let header = data.len() - after_len.len();
        let whole = &data[..header + len];
        let content = &after_len[..len];
        self.rest = &after_len[len..];
        Ok(Tlv {
            tag,
            content,
            whole,
        })
    }

    fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, CsrError> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(CsrError::Der("unexpected element"));
        }
        Ok(tlv)
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const CONTEXT_0: u8 = 0xa0;

/// Dotted text of an OID's content bytes.
fn oid_text(content: &[u8]) -> Result<String, CsrError> {
    let (&first, rest) = content.split_first().ok_or(CsrError::Der("empty OID"))?;
    let mut parts = vec![u64::from(first / 40).min(2), 0];
    parts[1] = u64::from(first) - parts[0] * 40;
    let mut value: u64 = 0;
    for &b in rest {
        if value > (u64::MAX >> 8) {
            return Err(CsrError::Der("OID component too large"));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            parts.push(value);
            value = 0;
        }
    }
    Ok(parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// Text of a string value (Printable, UTF8, IA5, BMP...), lossy, NULs removed.
fn string_value(tlv: &Tlv<'_>) -> String {
    let text = if tlv.tag == 0x1e {
        // BMPString: UTF-16BE.
        let units: Vec<u16> = tlv
            .content
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(tlv.content).into_owned()
    };
    text.replace('\0', "")
}

impl Csr {
    /// Parses and verifies a DER request; RSA keys must have at least `min_rsa_bits`.
    pub fn parse_and_verify(der: &[u8], min_rsa_bits: u32) -> Result<Self, CsrError> {
        if der.len() > MAX_CSR_BYTES {
            return Err(CsrError::TooLarge);
        }
        let mut outer = Reader::new(der);
        let request = outer.expect(SEQUENCE)?;
        if !outer.is_empty() {
            return Err(CsrError::Der("bytes after the request"));
        }
        let mut parts = Reader::new(request.content);
        let info = parts.expect(SEQUENCE)?;
        let algorithm = parts.expect(SEQUENCE)?;
        let signature = parts.expect(BIT_STRING)?;
        if !parts.is_empty() {
            return Err(CsrError::Der("unexpected element after the signature"));
        }

        let mut fields = Reader::new(info.content);
        let version = fields.expect(INTEGER)?;
        if version.content != [0] {
            return Err(CsrError::Der("unsupported request version"));
        }
        let subject = fields.expect(SEQUENCE)?;
        let spki = fields.expect(SEQUENCE)?;
        let attributes = if fields.is_empty() {
            None
        } else {
            Some(fields.expect(CONTEXT_0)?)
        };

        let subject_common_name = common_name(subject.content)?;
        let device_id = match attributes {
            Some(attributes) => device_id(attributes.content)?,
            None => None,
        };

        let algorithm_oid = {
            let mut a = Reader::new(algorithm.content);
            oid_text(a.expect(OID)?.content)?
        };
        let digest = match algorithm_oid.as_str() {
            // sha1WithRSAEncryption, and the OIW sha1WithRSASignature Windows uses.
            "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => MessageDigest::sha1(),
            "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" => MessageDigest::sha256(),
            "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => MessageDigest::sha384(),
            "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => MessageDigest::sha512(),
            other => return Err(CsrError::UnsupportedAlgorithm(other.to_owned())),
        };
        let public_key =
            PKey::public_key_from_der(spki.whole).map_err(|e| CsrError::BadKey(e.to_string()))?;
        let key_bits = public_key.bits();
        let is_ec_algorithm = algorithm_oid.starts_with("1.2.840.10045.");
        match public_key.id() {
            Id::RSA if !is_ec_algorithm => {
                if key_bits < min_rsa_bits {
                    return Err(CsrError::KeyTooShort(key_bits, min_rsa_bits));
                }
            }
            Id::EC if is_ec_algorithm => {
                if key_bits < 256 {
                    return Err(CsrError::KeyTooShort(key_bits, 256));
                }
            }
            _ => {
                return Err(CsrError::BadKey(
                    "the key type does not match the signature algorithm".into(),
                ));
            }
        }
        let (&unused_bits, signature_bytes) = signature
            .content
            .split_first()
            .ok_or(CsrError::Der("empty signature"))?;
        if unused_bits != 0 {
            return Err(CsrError::Der("signature with unused bits"));
        }
        let verified = Verifier::new(digest, &public_key)
            .and_then(|mut verifier| {
                verifier.update(info.whole)?;
                verifier.verify(signature_bytes)
            })
            .unwrap_or(false);
        if !verified {
            return Err(CsrError::BadSignature);
        }
        Ok(Self {
            der: der.to_vec(),
            subject_common_name,
            device_id,
            signature_algorithm: algorithm_oid,
            key_bits,
            public_key,
        })
    }
}

fn common_name(name: &[u8]) -> Result<Option<String>, CsrError> {
    let mut rdns = Reader::new(name);
    while !rdns.is_empty() {
        let rdn = rdns.expect(SET)?;
        let mut attributes = Reader::new(rdn.content);
        while !attributes.is_empty() {
            let pair = attributes.expect(SEQUENCE)?;
            let mut pair = Reader::new(pair.content);
            let oid = oid_text(pair.expect(OID)?.content)?;
            let value = pair.next()?;
            if oid == OID_COMMON_NAME {
                return Ok(Some(string_value(&value)));
            }
        }
    }
    Ok(None)
}

fn device_id(attributes: &[u8]) -> Result<Option<String>, CsrError> {
    let mut attributes = Reader::new(attributes);
    while !attributes.is_empty() {
        let attribute = attributes.expect(SEQUENCE)?;
        let mut attribute = Reader::new(attribute.content);
        let oid = oid_text(attribute.expect(OID)?.content)?;
        let values = attribute.expect(SET)?;
        if oid != OID_EXTENSION_REQUEST {
            continue;
        }
        let mut values = Reader::new(values.content);
        while !values.is_empty() {
            let extensions = values.expect(SEQUENCE)?;
            let mut extensions = Reader::new(extensions.content);
            while !extensions.is_empty() {
                let extension = extensions.expect(SEQUENCE)?;
                let mut extension = Reader::new(extension.content);
                let id = oid_text(extension.expect(OID)?.content)?;
                let mut value = extension.next()?;
                if value.tag == BOOLEAN {
                    value = extension.next()?;
                }
                if value.tag != OCTET_STRING {
                    return Err(CsrError::Der("extension value is not an OCTET STRING"));
                }
                if id == OID_DEVICE_ID {
                    return Ok(Some(extension_text(value.content)));
                }
            }
        }
    }
    Ok(None)
}

/// The DeviceID extension holds the text itself (Windows) or a DER string around it.
fn extension_text(content: &[u8]) -> String {
    let mut inner = Reader::new(content);
    if let Ok(tlv) = inner.next()
        && inner.is_empty()
        && matches!(tlv.tag, 0x0c | 0x13 | 0x16 | 0x1e | OCTET_STRING)
    {
        return string_value(&tlv).trim().to_owned();
    }
    String::from_utf8_lossy(content)
        .trim_end_matches('\0')
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    /// The CSR a real Windows 10 client sent (real-client-capture/03-enrollment-request.xml).
    pub(crate) fn real_csr() -> Vec<u8> {
        let xml = include_str!("../tests/data/03-enrollment-request.xml");
        let start = xml.find("#base64binary\">").unwrap() + "#base64binary\">".len();
        let end = start + xml[start..].find('<').unwrap();
        STANDARD.decode(xml[start..end].trim()).unwrap()
    }

    #[test]
    fn reads_and_verifies_the_real_windows_request() {
        let csr = Csr::parse_and_verify(&real_csr(), 2048).unwrap();
        assert_eq!(csr.signature_algorithm, "1.3.14.3.2.29");
        assert_eq!(
            csr.device_id.as_deref(),
            Some("B5B954E81FBCB94EB79BD08BE625F4EE")
        );
        let cn = csr.subject_common_name.unwrap();
        assert!(cn.contains('!'), "{cn}");
        assert!(cn.ends_with("B5B954E81FBCB94EB79BD08BE625F4EE"), "{cn:?}");
        assert_eq!(csr.key_bits, 2048);
    }

    #[test]
    fn the_real_request_has_a_nul_in_its_printable_common_name() {
        let der = real_csr();
        // PrintableString (0x13) of 0x40 bytes whose last byte is NUL.
        let at = der.windows(2).position(|w| w == [0x13, 0x40]).unwrap();
        assert_eq!(der[at + 2 + 0x40 - 1], 0);
    }

    #[test]
    fn a_changed_byte_breaks_the_signature() {
        let mut der = real_csr();
        // A byte inside the subject CN.
        let at = der.windows(2).position(|w| w == [0x13, 0x40]).unwrap() + 5;
        der[at] ^= 0x01;
        assert_eq!(
            Csr::parse_and_verify(&der, 2048).unwrap_err(),
            CsrError::BadSignature
        );
    }

    #[test]
    fn short_keys_and_garbage_are_refused() {
        assert!(matches!(
            Csr::parse_and_verify(&real_csr(), 4096).unwrap_err(),
            CsrError::KeyTooShort(2048, 4096)
        ));
        for bad in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x02, 0x01, 0x00],
        ] {
            assert!(Csr::parse_and_verify(bad, 2048).is_err());
        }
        let mut truncated = real_csr();
        truncated.truncate(200);
        assert!(Csr::parse_and_verify(&truncated, 2048).is_err());
        assert_eq!(
            Csr::parse_and_verify(&vec![0u8; MAX_CSR_BYTES + 1], 2048).unwrap_err(),
            CsrError::TooLarge
        );
    }

    #[test]
    fn oids_are_decoded() {
        assert_eq!(
            oid_text(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x42, 0x01, 0x00]).unwrap(),
            OID_DEVICE_ID
        );
        assert_eq!(
            oid_text(&[0x2b, 0x0e, 0x03, 0x02, 0x1d]).unwrap(),
            "1.3.14.3.2.29"
        );
    }
}
