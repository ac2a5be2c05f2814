//! The client certificate of a request, as forwarded by the TLS-terminating ingress.
//!
//! Accepted forms: URL-encoded PEM (nginx `$ssl_client_escaped_cert`, Envoy's `Cert=`),
//! PEM with its line breaks replaced by spaces (Traefik, Apache), and bare base64 DER.
//! Devices are recognised by the SHA-256 of the certificate's DER, compared with the hash
//! stored when our CA issued it: no parsing of the certificate is needed on the hot path.

use actix_web::HttpRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The longest header value accepted.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The DER of the client certificate forwarded in `header`, if any and readable.
pub fn from_request(req: &HttpRequest, header: Option<&str>) -> Option<Vec<u8>> {
    let value = req.headers().get(header?)?.as_bytes();
    parse_header(value)
}

/// Reads one header value.
pub fn parse_header(value: &[u8]) -> Option<Vec<u8>> {
    if value.is_empty() || value.len() > MAX_HEADER_BYTES {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let decoded;
    let text = if text.contains('%') {
        decoded = percent_decode(text)?;
        decoded.as_str()
    } else {
        text
    };
    let text = text.trim().trim_matches('"');
    let body = match text.find("-----BEGIN CERTIFICATE-----") {
        Some(start) => {
            let rest = &text[start + "-----BEGIN CERTIFICATE-----".len()..];
            let end = rest.find("-----END CERTIFICATE-----")?;
            &rest[..end]
        }
        None => text,
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(compact).ok()?;
    // A DER SEQUENCE, at least.
    (der.len() > 16 && der[0] == 0x30).then_some(der)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
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
    String::from_utf8(out).ok()
}

/// SHA-256 of a certificate's DER: how devices are recognised.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(der)
}

/// The SHA-1 thumbprint, upper-case hex (Windows certificate stores name certificates so).
pub fn thumbprint(der: &[u8]) -> String {
    hex::encode_upper(openssl::sha::sha1(der))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_der() -> Vec<u8> {
        let mut der = vec![0x30, 0x82, 0x01, 0x00];
        der.extend((0..=255u8).cycle().take(256));
        der
    }

    #[test]
    fn reads_every_forwarded_form() {
        let der = sample_der();
        let b64 = STANDARD.encode(&der);
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n{}\n-----END CERTIFICATE-----\n",
            &b64[..64],
            &b64[64..]
        );
        let escaped: String = pem
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        let spaced = pem.replace('\n', " ");
        for form in [b64.clone(), pem, escaped, spaced] {
            assert_eq!(parse_header(form.as_bytes()), Some(der.clone()), "{form}");
        }
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "%zz",
            "not base64!",
            "AAAA",
            "-----BEGIN CERTIFICATE-----abc",
        ] {
            assert_eq!(parse_header(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_header(&vec![b'A'; MAX_HEADER_BYTES + 4]), None);
    }
}
