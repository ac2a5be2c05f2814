//! Certificate requests shaped like the real Windows client's: a PrintableString CN with
//! `!` and a trailing NUL, the OIW OID 1.3.14.3.2.29 for SHA-1 with RSA, and the DeviceID
//! in extension 1.3.6.1.4.1.311.66.1.0. Built byte by byte here (openssl would normalise
//! every one of these quirks away); signed with openssl.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

fn len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        vec![n as u8]
    } else if n < 0x100 {
        vec![0x81, n as u8]
    } else if n < 0x10000 {
        vec![0x82, (n >> 8) as u8, n as u8]
    } else {
        vec![0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]
    }
}

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(len(content.len()));
    out.extend_from_slice(content);
    out
}

pub fn oid(dotted: &str) -> Vec<u8> {
    let parts: Vec<u64> = dotted.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    let mut content = vec![(parts[0] * 40 + parts[1]) as u8];
    for &part in &parts[2..] {
        let mut bytes = vec![(part & 0x7f) as u8];
        let mut rest = part >> 7;
        while rest > 0 {
            bytes.push(((rest & 0x7f) as u8) | 0x80);
            rest >>= 7;
        }
        bytes.reverse();
        content.extend(bytes);
    }
    tlv(0x06, &content)
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// Which signature algorithm OID to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureOid {
    /// 1.3.14.3.2.29, as Windows does.
    OiwSha1Rsa,
    /// 1.2.840.113549.1.1.11.
    Sha256Rsa,
}

/// A PKCS#10 request of the Windows shape for `device_id`, signed by `key`.
pub fn windows_csr(
    key: &PKey<Private>,
    device_id: &str,
    algorithm: SignatureOid,
) -> anyhow::Result<Vec<u8>> {
    let mut cn = format!(
        "{}!{}",
        uuid::Uuid::new_v4().to_string().to_uppercase(),
        device_id
    )
    .into_bytes();
    cn.push(0);
    let subject = seq(&[tlv(0x31, &seq(&[oid("2.5.4.3"), tlv(0x13, &cn)]))]);
    let spki = key.public_key_to_der()?;
    let mut id = device_id.as_bytes().to_vec();
    id.push(0);
    let extension = seq(&[oid("1.3.6.1.4.1.311.66.1.0"), tlv(0x04, &id)]);
    let attribute = seq(&[oid("1.2.840.113549.1.9.14"), tlv(0x31, &seq(&[extension]))]);
    let info = seq(&[tlv(0x02, &[0]), subject, spki, tlv(0xa0, &attribute)]);
    let (digest, algorithm_oid) = match algorithm {
        SignatureOid::OiwSha1Rsa => (MessageDigest::sha1(), "1.3.14.3.2.29"),
        SignatureOid::Sha256Rsa => (MessageDigest::sha256(), "1.2.840.113549.1.1.11"),
    };
    let mut signer = Signer::new(digest, key)?;
    signer.update(&info)?;
    let signature = signer.sign_to_vec()?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    Ok(seq(&[
        info,
        seq(&[oid(algorithm_oid), vec![0x05, 0x00]]),
        tlv(0x03, &bits),
    ]))
}
