//! The device side of SCEP (RFC 8894), as an Apple device's SCEP payload runs it:
//! GetCACaps, GetCACert, then a PKCSReq with the profile's challenge, encrypted to the RA
//! and signed with a temporary self-signed certificate of the device's new key.

use openssl::hash::MessageDigest;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509NameBuilder};

use super::der;

const SIGNED_DATA: &str = "1.2.840.113549.1.7.2";
const DATA: &str = "1.2.840.113549.1.7.1";
const SHA256: &str = "2.16.840.1.101.3.4.2.1";

/// A SCEP failure the server reported.
#[derive(Debug, thiserror::Error)]
#[error("the SCEP server refused the request (pkiStatus {status}, failInfo {fail_info:?})")]
pub struct Refused {
    pub status: String,
    pub fail_info: Option<String>,
}

/// The certificate the CA issued and the CA.
pub struct Issued {
    pub cert: X509,
    pub ca: X509,
}

/// Runs a SCEP enrollment against `url` with `challenge`; the key stays here.
pub async fn enroll(
    http: &reqwest::Client,
    url: &str,
    challenge: &str,
    subject_cn: &str,
    key: &PKey<Private>,
    now: i64,
) -> anyhow::Result<Issued> {
    let caps = http
        .get(format!("{url}?operation=GetCACaps"))
        .send()
        .await?
        .text()
        .await?;
    anyhow::ensure!(
        caps.contains("POSTPKIOperation"),
        "the server cannot take POST: {caps}"
    );
    let ca_certs = http
        .get(format!("{url}?operation=GetCACert"))
        .send()
        .await?;
    anyhow::ensure!(
        ca_certs.status().is_success(),
        "GetCACert answered {}",
        ca_certs.status()
    );
    let ca_certs = ca_certs.bytes().await?;
    let certs = Pkcs7::from_der(&ca_certs)?
        .signed()
        .and_then(|s| s.certificates())
        .map(|c| c.iter().map(|c| c.to_owned()).collect::<Vec<_>>())
        .unwrap_or_default();
    let ra = certs
        .iter()
        .find(|c| key_encipherment(c))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no RA certificate for encryption in GetCACert"))?;

    let csr = csr_with_challenge(key, subject_cn, challenge)?;
    let temporary = super::pki::self_signed(key, subject_cn, now)?;
    let mut recipients = Stack::new()?;
    recipients.push(ra.clone())?;
    let envelope =
        Pkcs7::encrypt(&recipients, &csr, Cipher::aes_256_cbc(), Pkcs7Flags::BINARY)?.to_der()?;
    let mut nonce = [0u8; 16];
    openssl::rand::rand_bytes(&mut nonce)?;
    let transaction = hex::encode(openssl::sha::sha256(&key.public_key_to_der()?));
    let message = signed_message(key, &temporary, &envelope, &transaction, &nonce)?;

    let answer = http
        .post(format!("{url}?operation=PKIOperation"))
        .header("content-type", "application/x-pki-message")
        .body(message)
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_success(),
        "PKIOperation answered {}",
        answer.status()
    );
    let answer = answer.bytes().await?;

    // The answer must be a CertRep echoing our transaction and nonce, signed by the RA.
    let attributes =
        signed_attributes(&answer).ok_or_else(|| anyhow::anyhow!("no signed attributes"))?;
    let get = |oid: &str| {
        attributes
            .iter()
            .find(|(o, _)| *o == der::oid(oid))
            .map(|(_, v)| v.clone())
    };
    let printable =
        |raw: Vec<u8>| der::parse(&raw).map(|(_, v, _)| String::from_utf8_lossy(v).into_owned());
    let status = get("2.16.840.1.113733.1.9.3")
        .and_then(printable)
        .unwrap_or_default();
    let message_type = get("2.16.840.1.113733.1.9.2")
        .and_then(printable)
        .unwrap_or_default();
    anyhow::ensure!(
        message_type == "3",
        "expected a CertRep, got messageType {message_type}"
    );
    let echoed = get("2.16.840.1.113733.1.9.7")
        .and_then(printable)
        .unwrap_or_default();
    anyhow::ensure!(echoed == transaction, "transactionID not echoed");
    let recipient_nonce =
        get("2.16.840.1.113733.1.9.6").and_then(|raw| der::parse(&raw).map(|(_, v, _)| v.to_vec()));
    anyhow::ensure!(
        recipient_nonce.as_deref() == Some(&nonce[..]),
        "recipientNonce differs from our senderNonce"
    );
    if status != "0" {
        let fail_info = get("2.16.840.1.113733.1.9.4").and_then(printable);
        return Err(Refused { status, fail_info }.into());
    }
    let pkcs7 = Pkcs7::from_der(&answer)?;
    let mut ra_stack = Stack::new()?;
    ra_stack.push(ra.clone())?;
    let mut content = Vec::new();
    let store = X509StoreBuilder::new()?.build();
    pkcs7.verify(
        &ra_stack,
        &store,
        None,
        Some(&mut content),
        Pkcs7Flags::NOVERIFY | Pkcs7Flags::NOINTERN | Pkcs7Flags::BINARY,
    )?;
    let degenerate = Pkcs7::from_der(&content)?.decrypt(key, &temporary, Pkcs7Flags::BINARY)?;
    let issued: Vec<X509> = Pkcs7::from_der(&degenerate)?
        .signed()
        .and_then(|s| s.certificates())
        .map(|c| c.iter().map(|c| c.to_owned()).collect())
        .unwrap_or_default();
    let own = key.public_key_to_der()?;
    let cert = issued
        .iter()
        .find(|c| {
            c.public_key()
                .and_then(|k| k.public_key_to_der())
                .is_ok_and(|k| k == own)
        })
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the CertRep holds no certificate for our key"))?;
    let ca = issued
        .iter()
        .find(|c| c.to_der().ok() != cert.to_der().ok())
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the CertRep holds no CA certificate"))?;
    Ok(Issued { cert, ca })
}

/// Whether a certificate's key usage allows key encipherment.
fn key_encipherment(cert: &X509) -> bool {
    let Ok(raw) = cert.to_der() else { return false };
    let Some((_, cert_body, _)) = der::parse(&raw) else {
        return false;
    };
    let Some(parts) = der::items(cert_body) else {
        return false;
    };
    let Some((_, tbs)) = parts.first() else {
        return false;
    };
    let Some(fields) = der::items(tbs) else {
        return false;
    };
    let Some((_, extensions)) = fields.iter().find(|(tag, _)| *tag == 0xa3) else {
        return false;
    };
    let Some((_, list, _)) = der::parse(extensions) else {
        return false;
    };
    let key_usage = der::oid("2.5.29.15");
    for (_, extension) in der::items(list).unwrap_or_default() {
        let inner = der::items(extension).unwrap_or_default();
        if inner.first().map(|(t, v)| der::encode(*t, v)) == Some(key_usage.clone()) {
            let Some((_, octets)) = inner.last() else {
                return false;
            };
            let Some((_, bits, _)) = der::parse(octets) else {
                return false;
            };
            return bits.get(1).is_some_and(|b| b & 0x20 != 0);
        }
    }
    false
}

/// A PKCS#10 request carrying the challenge password.
fn csr_with_challenge(key: &PKey<Private>, cn: &str, challenge: &str) -> anyhow::Result<Vec<u8>> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", cn)?;
    let name = name.build().to_der()?;
    let attribute = der::seq(&[
        der::oid("1.2.840.113549.1.9.7"),
        der::set(&[der::encode(0x0c, challenge.as_bytes())]),
    ]);
    let info = der::seq(&[
        der::int(&[0]),
        name,
        key.public_key_to_der()?,
        der::encode(0xa0, &attribute),
    ]);
    let mut signer = Signer::new(MessageDigest::sha256(), key)?;
    signer.update(&info)?;
    let signature = signer.sign_to_vec()?;
    let mut bits = vec![0u8];
    bits.extend(signature);
    Ok(der::seq(&[
        info,
        der::seq(&[der::oid("1.2.840.113549.1.1.11"), vec![0x05, 0x00]]),
        der::encode(0x03, &bits),
    ]))
}

fn attribute(oid: &str, value: Vec<u8>) -> Vec<u8> {
    der::seq(&[der::oid(oid), der::set(&[value])])
}

/// The PKCSReq: SignedData over the envelope with SCEP's signed attributes.
fn signed_message(
    key: &PKey<Private>,
    cert: &X509,
    envelope: &[u8],
    transaction: &str,
    nonce: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let attributes = vec![
        attribute("1.2.840.113549.1.9.3", der::oid(DATA)),
        attribute(
            "1.2.840.113549.1.9.4",
            der::encode(0x04, &openssl::sha::sha256(envelope)),
        ),
        attribute("2.16.840.1.113733.1.9.2", der::encode(0x13, b"19")),
        attribute(
            "2.16.840.1.113733.1.9.7",
            der::encode(0x13, transaction.as_bytes()),
        ),
        attribute("2.16.840.1.113733.1.9.5", der::encode(0x04, nonce)),
    ];
    let signed = der::set(&attributes);
    let mut signer = Signer::new(MessageDigest::sha256(), key)?;
    signer.update(&signed)?;
    let signature = signer.sign_to_vec()?;
    let mut implicit = signed.clone();
    implicit[0] = 0xa0;
    let algorithm = der::seq(&[der::oid(SHA256), vec![0x05, 0x00]]);
    let serial = cert.serial_number().to_bn()?.to_vec();
    let signer_info = der::seq(&[
        der::int(&[1]),
        der::seq(&[cert.issuer_name().to_der()?, der::int(&serial)]),
        algorithm.clone(),
        implicit,
        der::seq(&[der::oid("1.2.840.113549.1.1.1"), vec![0x05, 0x00]]),
        der::encode(0x04, &signature),
    ]);
    let content = der::seq(&[
        der::oid(DATA),
        der::encode(0xa0, &der::encode(0x04, envelope)),
    ]);
    let signed_data = der::seq(&[
        der::int(&[1]),
        der::set(&[algorithm]),
        content,
        der::encode(0xa0, &cert.to_der()?),
        der::set(&[signer_info]),
    ]);
    Ok(der::seq(&[
        der::oid(SIGNED_DATA),
        der::encode(0xa0, &signed_data),
    ]))
}

/// (attribute OID encoding, first value encoding) of the first signer.
fn signed_attributes(message: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let (_, content_info, _) = der::parse(message)?;
    let parts = der::items(content_info)?;
    let (_, explicit) = parts.get(1)?;
    let (_, signed_data, _) = der::parse(explicit)?;
    let fields = der::items(signed_data)?;
    let (_, signer_infos) = fields.last()?;
    let (_, signer_info, _) = der::parse(signer_infos)?;
    let (_, attrs) = der::items(signer_info)?
        .into_iter()
        .find(|(t, _)| *t == 0xa0)?;
    let mut out = Vec::new();
    for (_, attribute) in der::items(attrs)? {
        let inner = der::items(attribute)?;
        let (oid_tag, oid) = inner.first()?;
        let (_, values) = inner.get(1)?;
        let (tag, value, _) = der::parse(values)?;
        out.push((der::encode(*oid_tag, oid), der::encode(tag, value)));
    }
    Some(out)
}
