//! A mock of Apple's push service (APNs provider API): HTTP/2 over TLS with a test CA,
//! a client certificate required and its topic (the subject UID) checked against
//! `apns-topic`, the headers and body checked as Apple does, pushes recorded, and errors
//! injected on demand (a status and reason, or a GOAWAY).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::pki::{TestCa, topic_of};

/// A push the mock accepted (or refused, with the answer it gave).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPush {
    pub token: String,
    pub topic: String,
    pub magic: String,
    pub push_type: String,
    pub priority: String,
    pub expiration: String,
    /// 200, or the injected error's status.
    pub status: u16,
}

/// An error to answer.
#[derive(Debug, Clone)]
pub struct Injected {
    pub status: u16,
    pub reason: String,
}

#[derive(Default)]
struct State {
    pushes: Mutex<Vec<RecordedPush>>,
    next: Mutex<VecDeque<Injected>>,
    per_token: Mutex<HashMap<String, Injected>>,
    goaway: AtomicBool,
    connections: AtomicUsize,
}

/// The running mock.
#[derive(Clone)]
pub struct MockApns {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// PEM of the CA that signed the mock's TLS certificate (for the client to trust).
    pub tls_ca_pem: String,
    state: Arc<State>,
    events: broadcast::Sender<RecordedPush>,
}

impl MockApns {
    /// Listens on a free port of 127.0.0.1. `push_ca` issued the push certificates that
    /// clients must present.
    pub async fn start(push_ca: &X509, now: i64) -> anyhow::Result<Self> {
        let tls_ca = TestCa::new("APNs mock TLS CA", now)?;
        let (cert, key) = tls_ca.server_cert(now)?;
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
        acceptor.set_certificate(&cert)?;
        acceptor.set_private_key(&key)?;
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(push_ca.clone())?;
        acceptor.set_verify_cert_store(store.build())?;
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        acceptor.set_alpn_select_callback(|_, client| {
            openssl::ssl::select_next_proto(b"\x02h2", client).ok_or(AlpnError::NOACK)
        });
        let acceptor = Arc::new(acceptor.build());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://{}", listener.local_addr()?);
        let state = Arc::new(State::default());
        let (events, _) = broadcast::channel(65_536);
        let mock = Self {
            url,
            tls_ca_pem: String::from_utf8(tls_ca.cert.to_pem()?)?,
            state,
            events,
        };
        let server = mock.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let server = server.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Err(error) = server.serve(acceptor, tcp).await {
                        tracing::debug!(%error, "mock APNs connection ended");
                    }
                });
            }
        });
        Ok(mock)
    }

    async fn serve(
        &self,
        acceptor: Arc<SslAcceptor>,
        tcp: tokio::net::TcpStream,
    ) -> anyhow::Result<()> {
        let _ = tcp.set_nodelay(true);
        let ssl = openssl::ssl::Ssl::new(acceptor.context())?;
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp)?;
        std::pin::Pin::new(&mut stream).accept().await?;
        let topic = stream
            .ssl()
            .peer_certificate()
            .and_then(|c| topic_of(&c))
            .unwrap_or_default();
        self.state.connections.fetch_add(1, Ordering::SeqCst);
        let mut connection = h2::server::handshake(stream).await?;
        while let Some(request) = connection.accept().await {
            let (request, respond) = request?;
            if self.state.goaway.swap(false, Ordering::SeqCst) {
                connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                drop((request, respond));
                continue;
            }
            let server = self.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                let _ = server.handle(request, respond, &topic).await;
            });
        }
        Ok(())
    }

    async fn handle(
        &self,
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
        cert_topic: &str,
    ) -> anyhow::Result<()> {
        let (parts, mut body) = request.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let token = parts
            .uri
            .path()
            .strip_prefix("/3/device/")
            .unwrap_or("")
            .to_owned();
        let magic = serde_json::from_slice::<serde_json::Value>(&data)
            .ok()
            .and_then(|v| {
                let object = v.as_object()?;
                (object.len() == 1).then(|| object.get("mdm")?.as_str().map(str::to_owned))?
            });
        let mut push = RecordedPush {
            token: token.clone(),
            topic: header("apns-topic"),
            magic: magic.clone().unwrap_or_default(),
            push_type: header("apns-push-type"),
            priority: header("apns-priority"),
            expiration: header("apns-expiration"),
            status: 200,
        };
        // Apple's own checks, in its order of precedence.
        let refusal: Option<(u16, &str)> = if parts.method != http::Method::POST {
            Some((405, "MethodNotAllowed"))
        } else if token.is_empty()
            || token.len() % 2 != 0
            || !token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            Some((400, "BadDeviceToken"))
        } else if push.topic.is_empty() {
            Some((400, "MissingTopic"))
        } else if push.topic != cert_topic {
            Some((400, "DeviceTokenNotForTopic"))
        } else if push.push_type != "mdm" {
            Some((400, "InvalidPushType"))
        } else if !matches!(push.priority.as_str(), "" | "5" | "10") {
            Some((400, "BadPriority"))
        } else if !push.expiration.is_empty() && push.expiration.parse::<i64>().is_err() {
            Some((400, "BadExpirationDate"))
        } else if magic.is_none() {
            Some((400, "BadMessage"))
        } else {
            None
        };
        let injected = self
            .state
            .per_token
            .lock()
            .ok()
            .and_then(|m| m.get(&token).cloned())
            .or_else(|| self.state.next.lock().ok().and_then(|mut q| q.pop_front()));
        let (status, reason) = match (refusal, injected) {
            (Some((status, reason)), _) => (status, reason.to_owned()),
            (None, Some(injected)) => (injected.status, injected.reason),
            (None, None) => (200, String::new()),
        };
        push.status = status;
        if let Ok(mut pushes) = self.state.pushes.lock() {
            pushes.push(push.clone());
        }
        let _ = self.events.send(push);
        let response = http::Response::builder()
            .status(status)
            .header("apns-id", uuid::Uuid::new_v4().to_string())
            .body(())?;
        if status == 200 {
            respond.send_response(response, true)?;
        } else {
            let mut body = serde_json::json!({ "reason": reason });
            if status == 410 {
                body["timestamp"] = serde_json::json!(1_767_225_600_000i64);
            }
            let mut stream = respond.send_response(response, false)?;
            stream.send_data(Bytes::from(serde_json::to_vec(&body)?), true)?;
        }
        Ok(())
    }

    /// Every push received so far.
    pub fn pushes(&self) -> Vec<RecordedPush> {
        self.state
            .pushes
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Pushes received for a token (hex).
    pub fn pushes_to(&self, token: &str) -> Vec<RecordedPush> {
        self.pushes()
            .into_iter()
            .filter(|p| p.token == token)
            .collect()
    }

    /// Answers the next push (whatever its token) with this error.
    pub fn fail_next(&self, status: u16, reason: &str) {
        if let Ok(mut next) = self.state.next.lock() {
            next.push_back(Injected {
                status,
                reason: reason.to_owned(),
            });
        }
    }

    /// Answers every push to `token` with this error.
    pub fn fail_token(&self, token: &str, status: u16, reason: &str) {
        if let Ok(mut per_token) = self.state.per_token.lock() {
            per_token.insert(
                token.to_owned(),
                Injected {
                    status,
                    reason: reason.to_owned(),
                },
            );
        }
    }

    pub fn heal_token(&self, token: &str) {
        if let Ok(mut per_token) = self.state.per_token.lock() {
            per_token.remove(token);
        }
    }

    /// Closes the connection that carries the next push with a GOAWAY.
    pub fn goaway_next(&self) {
        self.state.goaway.store(true, Ordering::SeqCst);
    }

    /// TLS connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// A feed of pushes as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<RecordedPush> {
        self.events.subscribe()
    }

    /// Waits until `count` pushes to `token` were accepted (200), at most `timeout`.
    pub async fn wait_for(&self, token: &str, count: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let delivered = self
                .pushes_to(token)
                .iter()
                .filter(|p| p.status == 200)
                .count();
            if delivered >= count {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
