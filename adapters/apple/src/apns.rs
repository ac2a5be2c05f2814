//! A small APNs provider client: HTTP/2 over TLS (openssl) with the tenant's push
//! certificate as the client certificate, a few connections per certificate with many
//! pushes multiplexed on each, and the base URL from configuration.
//!
//! Apple's vocabulary of answers is kept (the reasons a2 knows); [`Outcome`] sorts them
//! into delivered, permanent (the token or the certificate is wrong: retrying cannot
//! help) and transient (429, 5xx, GOAWAY, resets, timeouts: retry later).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use openssl::pkey::PKey;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// One push.
#[derive(Clone)]
pub struct Push {
    pub token: Vec<u8>,
    pub topic: String,
    pub magic: String,
    /// Unix seconds after which APNs may drop it; 0: deliver now or never.
    pub expiration: i64,
}

/// What APNs made of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The device token (or the certificate, or the topic) is wrong; retrying cannot help.
    Permanent {
        status: u16,
        reason: String,
    },
    /// Try again later.
    Transient(String),
}

impl Outcome {
    /// Whether a permanent failure concerns the certificate rather than one device.
    pub fn is_certificate_problem(&self) -> bool {
        matches!(self, Self::Permanent { reason, .. } if matches!(reason.as_str(),
            "BadCertificate" | "BadCertificateEnvironment" | "Forbidden" | "TopicDisallowed"
                | "BadTopic" | "MissingTopic" | "MissingProviderToken" | "InvalidProviderToken"
                | "ExpiredProviderToken"))
    }

    /// `410 Unregistered` (or `ExpiredToken`): the device no longer takes pushes for this
    /// topic.
    pub fn is_unregistered(&self) -> bool {
        matches!(self, Self::Permanent { status: 410, .. })
            || matches!(self, Self::Permanent { reason, .. } if reason == "ExpiredToken")
    }
}

/// Classifies an APNs answer by status and reason (the JSON body's `reason`).
pub fn classify(status: u16, reason: &str) -> Outcome {
    match status {
        200 => Outcome::Delivered,
        429 | 500 | 502 | 503 | 504 => Outcome::Transient(format!("{status} {reason}")),
        400 if matches!(reason, "IdleTimeout" | "Shutdown" | "InternalServerError") => {
            Outcome::Transient(format!("{status} {reason}"))
        }
        400 | 403 | 404 | 405 | 410 | 413 => Outcome::Permanent {
            status,
            reason: reason.to_owned(),
        },
        s if s >= 500 => Outcome::Transient(format!("{status} {reason}")),
        _ => Outcome::Permanent {
            status,
            reason: reason.to_owned(),
        },
    }
}

/// A push certificate and key, PEM.
#[derive(Clone)]
pub struct Identity {
    pub certificate_pem: String,
    pub private_key_pem: String,
}

struct Pool {
    connector: SslConnector,
    connections: Vec<Mutex<Option<SendRequest<Bytes>>>>,
    next: AtomicUsize,
}

/// The APNs client.
pub struct ApnsClient {
    host: String,
    port: u16,
    authority: String,
    extra_roots: Vec<X509>,
    connections: usize,
    timeout: Duration,
    pools: std::sync::Mutex<HashMap<String, Arc<Pool>>>,
}

impl ApnsClient {
    /// `base_url`: `https://host[:port]`.
    pub fn new(
        base_url: &str,
        extra_roots: Vec<X509>,
        connections: usize,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let rest = base_url
            .strip_prefix("https://")
            .ok_or_else(|| anyhow::anyhow!("the APNs URL must start with https://"))?
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(']') || host.ends_with(']') => {
                (host.to_owned(), port.parse::<u16>()?)
            }
            _ => (rest.to_owned(), 443),
        };
        let authority = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            host,
            port,
            authority,
            extra_roots,
            connections: connections.max(1),
            timeout,
            pools: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn pool(&self, identity: &Identity) -> Result<Arc<Pool>, String> {
        let key = hex::encode(openssl::sha::sha256(identity.certificate_pem.as_bytes()));
        let mut pools = self.pools.lock().map_err(|_| "poisoned".to_owned())?;
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let connector = self
            .connector(identity)
            .map_err(|e| format!("the push certificate cannot be used: {e}"))?;
        let pool = Arc::new(Pool {
            connector,
            connections: (0..self.connections).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        });
        pools.insert(key, pool.clone());
        Ok(pool)
    }

    fn connector(&self, identity: &Identity) -> anyhow::Result<SslConnector> {
        let mut builder = SslConnector::builder(SslMethod::tls_client())?;
        let mut chain = X509::stack_from_pem(identity.certificate_pem.as_bytes())?.into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| anyhow::anyhow!("no certificate in the PEM"))?;
        builder.set_certificate(&leaf)?;
        for extra in chain {
            builder.add_extra_chain_cert(extra)?;
        }
        let key = PKey::private_key_from_pem(identity.private_key_pem.as_bytes())?;
        builder.set_private_key(&key)?;
        builder.check_private_key()?;
        for root in &self.extra_roots {
            builder.cert_store_mut().add_cert(root.clone())?;
        }
        builder.set_verify(SslVerifyMode::PEER);
        builder.set_alpn_protos(b"\x02h2")?;
        Ok(builder.build())
    }

    async fn connect(&self, pool: &Pool) -> Result<SendRequest<Bytes>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let ssl = pool
            .connector
            .configure()
            .and_then(|c| c.into_ssl(self.host.trim_start_matches('[').trim_end_matches(']')))
            .map_err(|e| format!("tls: {e}"))?;
        let mut stream =
            tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| format!("tls: {e}"))?;
        std::pin::Pin::new(&mut stream)
            .connect()
            .await
            .map_err(|e| format!("tls handshake: {e}"))?;
        let (send, connection) = h2::client::handshake(stream)
            .await
            .map_err(|e| format!("http/2 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "APNs connection closed");
            }
        });
        Ok(send)
    }

    /// Sends one push; never panics, always classifies.
    pub async fn send(&self, identity: &Identity, push: &Push) -> Outcome {
        match tokio::time::timeout(self.timeout, self.send_inner(identity, push)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Transient("timed out".into()),
        }
    }

    async fn send_inner(&self, identity: &Identity, push: &Push) -> Outcome {
        let pool = match self.pool(identity) {
            Ok(pool) => pool,
            Err(error) => {
                return Outcome::Permanent {
                    status: 0,
                    reason: error,
                };
            }
        };
        let index = pool.next.fetch_add(1, Ordering::Relaxed) % pool.connections.len();
        let mut slot = pool.connections[index].lock().await;
        let sender = match slot.as_ref() {
            Some(sender) => sender.clone(),
            None => match self.connect(&pool).await {
                Ok(sender) => {
                    *slot = Some(sender.clone());
                    sender
                }
                Err(error) => return Outcome::Transient(error),
            },
        };
        drop(slot);
        let outcome = self.exchange(sender, push).await;
        if let Err(error) = &outcome {
            // The connection is broken (GOAWAY, reset): the next push reconnects.
            *pool.connections[index].lock().await = None;
            return Outcome::Transient(error.clone());
        }
        outcome.unwrap_or_else(Outcome::Transient)
    }

    async fn exchange(&self, sender: SendRequest<Bytes>, push: &Push) -> Result<Outcome, String> {
        let mut sender = sender.ready().await.map_err(describe)?;
        let request = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!(
                "https://{}/3/device/{}",
                self.authority,
                hex::encode(&push.token)
            ))
            .header("apns-topic", &push.topic)
            .header("apns-push-type", "mdm")
            .header("apns-priority", "10")
            .header("apns-expiration", push.expiration.to_string())
            .header("content-type", "application/json")
            .body(())
            .map_err(|e| e.to_string())?;
        let body = serde_json::to_vec(&serde_json::json!({ "mdm": push.magic }))
            .map_err(|e| e.to_string())?;
        let (response, mut stream) = sender.send_request(request, false).map_err(describe)?;
        stream
            .send_data(Bytes::from(body), true)
            .map_err(describe)?;
        let response = response.await.map_err(describe)?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        let mut bytes = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(describe)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if bytes.len() + chunk.len() > 8192 {
                break;
            }
            bytes.extend_from_slice(&chunk);
        }
        let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
            .unwrap_or_default();
        Ok(classify(status, &reason))
    }
}

fn describe(error: h2::Error) -> String {
    if error.is_go_away() {
        format!("GOAWAY: {error}")
    } else {
        error.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_apples_answers() {
        assert_eq!(classify(200, ""), Outcome::Delivered);
        assert!(classify(410, "Unregistered").is_unregistered());
        assert!(matches!(
            classify(400, "BadDeviceToken"),
            Outcome::Permanent { .. }
        ));
        assert!(matches!(
            classify(400, "DeviceTokenNotForTopic"),
            Outcome::Permanent { .. }
        ));
        assert!(classify(403, "BadCertificate").is_certificate_problem());
        assert!(classify(400, "TopicDisallowed").is_certificate_problem());
        assert!(matches!(
            classify(429, "TooManyRequests"),
            Outcome::Transient(_)
        ));
        assert!(matches!(
            classify(503, "ServiceUnavailable"),
            Outcome::Transient(_)
        ));
        assert!(matches!(
            classify(500, "InternalServerError"),
            Outcome::Transient(_)
        ));
        assert!(!classify(400, "BadDeviceToken").is_certificate_problem());
    }

    #[test]
    fn parses_base_urls() {
        let client = ApnsClient::new(
            "https://api.push.apple.com",
            vec![],
            1,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            (client.host.as_str(), client.port),
            ("api.push.apple.com", 443)
        );
        let client =
            ApnsClient::new("https://127.0.0.1:8443/", vec![], 1, Duration::from_secs(1)).unwrap();
        assert_eq!((client.host.as_str(), client.port), ("127.0.0.1", 8443));
        assert_eq!(client.authority, "127.0.0.1:8443");
        assert!(ApnsClient::new("http://x", vec![], 1, Duration::from_secs(1)).is_err());
    }
}
