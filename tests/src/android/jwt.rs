//! RS256 JSON Web Tokens and keys, as Google's OAuth server and Pub/Sub use them: the
//! service-account assertion the token server checks, and the OIDC tokens Pub/Sub signs
//! for authenticated push.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use serde_json::{Value, json};

/// An RSA key pair with a key id.
#[derive(Clone)]
pub struct KeyPair {
    pub kid: String,
    pub private: PKey<Private>,
}

impl KeyPair {
    pub fn generate(kid: &str) -> anyhow::Result<Self> {
        let rsa = Rsa::generate(2048)?;
        Ok(Self {
            kid: kid.to_owned(),
            private: PKey::from_rsa(rsa)?,
        })
    }

    /// PKCS#8 PEM, as in a service-account key file.
    pub fn private_pem(&self) -> anyhow::Result<String> {
        Ok(String::from_utf8(self.private.private_key_to_pem_pkcs8()?)?)
    }

    pub fn public(&self) -> anyhow::Result<PKey<Public>> {
        Ok(PKey::public_key_from_pem(
            &self.private.public_key_to_pem()?,
        )?)
    }

    /// The public key as a JWK (for a JWKS document).
    pub fn jwk(&self) -> anyhow::Result<Value> {
        let rsa = self.private.rsa()?;
        Ok(json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(rsa.n().to_vec()),
            "e": URL_SAFE_NO_PAD.encode(rsa.e().to_vec()),
        }))
    }

    /// Signs `claims` as a compact RS256 JWT.
    pub fn sign(&self, claims: &Value) -> anyhow::Result<String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let mut token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?)
        );
        let mut signer = Signer::new(MessageDigest::sha256(), &self.private)?;
        signer.update(token.as_bytes())?;
        let signature = signer.sign_to_vec()?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

/// A decoded JWT whose signature has not been checked yet.
pub struct Unverified {
    pub header: Value,
    pub claims: Value,
    signed: String,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWT. Padded base64url (as yup-oauth2 writes it) is
/// accepted as well as unpadded.
pub fn decode(token: &str) -> Result<Unverified, String> {
    if token.len() > 16 * 1024 {
        return Err("assertion too long".into());
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let part = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| "bad base64url in JWT".to_owned())
    };
    let header: Value =
        serde_json::from_slice(&part(h)?).map_err(|_| "bad JWT header".to_owned())?;
    let claims: Value =
        serde_json::from_slice(&part(c)?).map_err(|_| "bad JWT claims".to_owned())?;
    Ok(Unverified {
        header,
        claims,
        signed: format!("{h}.{c}"),
        signature: part(s)?,
    })
}

impl Unverified {
    /// Checks the RS256 signature with `key`.
    pub fn verify(&self, key: &PKey<Public>) -> Result<(), String> {
        if self.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err("alg must be RS256".into());
        }
        let ok = Verifier::new(MessageDigest::sha256(), key)
            .and_then(|mut v| {
                v.update(self.signed.as_bytes())?;
                v.verify(&self.signature)
            })
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err("invalid JWT signature".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let key = KeyPair::generate("k1").unwrap();
        let other = KeyPair::generate("k2").unwrap();
        let token = key.sign(&json!({"iss": "me"})).unwrap();
        let decoded = decode(&token).unwrap();
        assert_eq!(decoded.claims["iss"], "me");
        decoded.verify(&key.public().unwrap()).unwrap();
        assert!(decoded.verify(&other.public().unwrap()).is_err());
        assert!(decode("a.b").is_err());
    }
}
