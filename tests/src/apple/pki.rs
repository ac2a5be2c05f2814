//! A test PKI: a CA that issues TLS server certificates (for the APNs mock), APNs push
//! certificates (with the topic in the subject's UID), and device identities from CSRs.
//! Validity times are explicit, so tests can follow a manual clock.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder, X509Req};

/// One day in seconds.
pub const DAY: i64 = 86_400;

/// A certificate authority for tests.
pub struct TestCa {
    pub cert: X509,
    pub key: PKey<Private>,
}

pub fn new_key() -> anyhow::Result<PKey<Private>> {
    Ok(PKey::from_rsa(Rsa::generate(2048)?)?)
}

fn name(entries: &[(Nid, &str)]) -> anyhow::Result<X509Name> {
    let mut builder = X509NameBuilder::new()?;
    for (nid, value) in entries {
        builder.append_entry_by_nid(*nid, value)?;
    }
    Ok(builder.build())
}

fn builder(
    subject: &openssl::x509::X509NameRef,
    issuer: &openssl::x509::X509NameRef,
    not_before: i64,
    not_after: i64,
) -> anyhow::Result<X509Builder> {
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(subject)?;
    builder.set_issuer_name(issuer)?;
    let not_before = Asn1Time::from_unix(not_before)?;
    let not_after = Asn1Time::from_unix(not_after)?;
    builder.set_not_before(&not_before)?;
    builder.set_not_after(&not_after)?;
    Ok(builder)
}

impl TestCa {
    /// A CA valid from `now` − 1 day for ten years.
    pub fn new(common_name: &str, now: i64) -> anyhow::Result<Self> {
        let key = new_key()?;
        let subject = name(&[(Nid::COMMONNAME, common_name)])?;
        let mut b = builder(&subject, &subject, now - DAY, now + 3650 * DAY)?;
        b.set_pubkey(&key)?;
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()?,
        )?;
        b.sign(&key, MessageDigest::sha256())?;
        Ok(Self {
            cert: b.build(),
            key,
        })
    }

    /// A TLS server certificate for 127.0.0.1 and localhost.
    pub fn server_cert(&self, now: i64) -> anyhow::Result<(X509, PKey<Private>)> {
        let key = new_key()?;
        let subject = name(&[(Nid::COMMONNAME, "localhost")])?;
        let mut b = builder(
            &subject,
            self.cert.subject_name(),
            now - DAY,
            now + 365 * DAY,
        )?;
        b.set_pubkey(&key)?;
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&b.x509v3_context(Some(&self.cert), None))?;
        b.append_extension(san)?;
        b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok((b.build(), key))
    }

    /// An APNs MDM push certificate for `topic` (subject UID), as Apple issues them.
    pub fn push_cert(
        &self,
        topic: &str,
        now: i64,
        days: i64,
    ) -> anyhow::Result<(X509, PKey<Private>)> {
        let key = new_key()?;
        let mut subject = X509NameBuilder::new()?;
        subject.append_entry_by_nid(Nid::USERID, topic)?;
        subject.append_entry_by_nid(
            Nid::COMMONNAME,
            &format!("APSP:{}", topic.rsplit('.').next().unwrap_or(topic)),
        )?;
        let subject = subject.build();
        let mut b = builder(
            &subject,
            self.cert.subject_name(),
            now - DAY,
            now + days * DAY,
        )?;
        b.set_pubkey(&key)?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok((b.build(), key))
    }

    /// Signs a CSR with the given subject common name (the CSR's own subject is ignored).
    pub fn sign_csr(
        &self,
        csr: &X509Req,
        common_name: &str,
        not_before: i64,
        not_after: i64,
    ) -> anyhow::Result<X509> {
        let public = csr.public_key()?;
        anyhow::ensure!(csr.verify(&public)?, "the CSR's signature does not verify");
        let subject = name(&[(Nid::COMMONNAME, common_name)])?;
        let mut b = builder(&subject, self.cert.subject_name(), not_before, not_after)?;
        b.set_pubkey(&public)?;
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()?,
        )?;
        b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
        b.sign(&self.key, MessageDigest::sha256())?;
        Ok(b.build())
    }

    /// A device identity issued directly (for tests that skip enrollment).
    pub fn issue(
        &self,
        common_name: &str,
        not_before: i64,
        not_after: i64,
    ) -> anyhow::Result<(X509, PKey<Private>)> {
        let key = new_key()?;
        let mut req = openssl::x509::X509ReqBuilder::new()?;
        req.set_pubkey(&key)?;
        req.sign(&key, MessageDigest::sha256())?;
        let cert = self.sign_csr(&req.build(), common_name, not_before, not_after)?;
        Ok((cert, key))
    }
}

/// A self-signed certificate (a SCEP client's temporary one, or a rogue device's).
pub fn self_signed(key: &PKey<Private>, common_name: &str, now: i64) -> anyhow::Result<X509> {
    let subject = name(&[(Nid::COMMONNAME, common_name)])?;
    let mut b = builder(&subject, &subject, now - DAY, now + 30 * DAY)?;
    b.set_pubkey(key)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// The UID (topic) of a push certificate.
pub fn topic_of(cert: &X509) -> Option<String> {
    cert.subject_name()
        .entries_by_nid(Nid::USERID)
        .next()
        .and_then(|e| String::from_utf8(e.data().as_slice().to_vec()).ok())
}
