//! Calls to the enrollment service (never on the hot path): the enrollment gate with
//! concurrent checks coalesced into one call, the device-identity CA, and the tenants'
//! push certificates, cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mdm_api::internal::enrollment::{
    GateCheck, GateDecision, GateRequest, GateResponse, PushCertificate, SignRequest,
    SignedCertificate,
};
use mdm_api::{ClientError, InternalClient, Service};
use mdm_domain::TenantId;
use openssl::x509::X509;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

/// `GET /internal/v1/enrollment/ca/certificate`.
#[derive(Debug, Clone, Deserialize)]
pub struct CaCertificate {
    /// DER, base64.
    pub certificate: String,
}

/// Checks waiting to be sent to the gate.
type GateJob = (GateCheck, oneshot::Sender<Result<GateDecision, String>>);

/// A push certificate (or its absence) and when it was fetched.
type CachedPushCertificate = (Instant, Option<Arc<PushCertificate>>);

/// The enrollment service as the adapter uses it.
#[derive(Clone)]
pub struct Upstream {
    client: InternalClient,
    gate: mpsc::Sender<GateJob>,
    push_certs: Arc<Mutex<HashMap<TenantId, CachedPushCertificate>>>,
}

/// How long a push certificate (or its absence) is cached.
const PUSH_CERT_TTL: Duration = Duration::from_secs(300);
/// Most checks in one gate call.
const GATE_BATCH: usize = 500;

impl Upstream {
    /// Starts the gate's batching task on the current runtime.
    pub fn start(client: InternalClient) -> Self {
        let (gate, receiver) = mpsc::channel(4096);
        tokio::spawn(run_gate(client.clone(), receiver));
        Self {
            client,
            gate,
            push_certs: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Asks the enrollment gate whether a device may enrol. Concurrent asks share calls.
    pub async fn gate(&self, check: GateCheck) -> Result<GateDecision, String> {
        let (tx, rx) = oneshot::channel();
        self.gate
            .send((check, tx))
            .await
            .map_err(|_| "the gate batcher stopped".to_owned())?;
        rx.await
            .map_err(|_| "the gate batcher dropped the check".to_owned())?
    }

    /// The device-identity CA's certificate.
    pub async fn ca_certificate(&self) -> anyhow::Result<X509> {
        let mut answer = self
            .client
            .get::<CaCertificate>(Service::Enrollment, "/ca/certificate")
            .await;
        if matches!(answer, Err(ClientError::Transport { .. })) {
            answer = self
                .client
                .get::<CaCertificate>(Service::Enrollment, "/ca/certificate")
                .await;
        }
        let answer = answer?;
        let der = STANDARD.decode(answer.certificate.trim())?;
        Ok(X509::from_der(&der)?)
    }

    /// Has the CA sign a CSR.
    pub async fn sign(&self, request: &SignRequest) -> Result<SignedCertificate, ClientError> {
        self.client
            .post(Service::Enrollment, "/ca/sign", request)
            .await
    }

    /// The tenant's push certificate, cached for a few minutes; `None` when none is
    /// uploaded.
    pub async fn push_certificate(
        &self,
        tenant: TenantId,
    ) -> Result<Option<Arc<PushCertificate>>, ClientError> {
        if let Some((at, cert)) = self
            .push_certs
            .lock()
            .ok()
            .and_then(|m| m.get(&tenant).cloned())
            && at.elapsed() < PUSH_CERT_TTL
        {
            return Ok(cert);
        }
        let path = format!("/tenants/{tenant}/apple/pushCertificate");
        let mut answer = self
            .client
            .get::<PushCertificate>(Service::Enrollment, &path)
            .await;
        // A pooled connection the server had closed fails before the request is read:
        // a GET is safe to send again at once.
        if matches!(answer, Err(ClientError::Transport { .. })) {
            answer = self
                .client
                .get::<PushCertificate>(Service::Enrollment, &path)
                .await;
        }
        let cert = match answer {
            Ok(cert) => Some(Arc::new(cert)),
            Err(ClientError::Status { status: 404, .. }) => None,
            Err(error) => return Err(error),
        };
        if let Ok(mut certs) = self.push_certs.lock() {
            certs.insert(tenant, (Instant::now(), cert.clone()));
        }
        Ok(cert)
    }

    /// Forgets a cached push certificate (after APNs refused it).
    pub fn forget_push_certificate(&self, tenant: TenantId) {
        if let Ok(mut certs) = self.push_certs.lock() {
            certs.remove(&tenant);
        }
    }
}

/// Sends the checks that wait, in batches, one call at a time: while a call runs, the
/// next batch gathers.
async fn run_gate(client: InternalClient, mut receiver: mpsc::Receiver<GateJob>) {
    while let Some(first) = receiver.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < GATE_BATCH {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (checks, waiters): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let count = checks.len();
        let request = GateRequest { checks };
        let mut answer: Result<GateResponse, ClientError> =
            client.post(Service::Enrollment, "/gate", &request).await;
        // The gate only reads: a request lost on a stale pooled connection is repeated.
        if matches!(answer, Err(ClientError::Transport { .. })) {
            answer = client.post(Service::Enrollment, "/gate", &request).await;
        }
        match answer {
            Ok(response) if response.decisions.len() == count => {
                for (waiter, decision) in waiters.into_iter().zip(response.decisions) {
                    let _ = waiter.send(Ok(decision));
                }
            }
            Ok(_) => {
                for waiter in waiters {
                    let _ =
                        waiter.send(Err("the gate answered the wrong number of decisions".into()));
                }
            }
            Err(error) => {
                let message = error.to_string();
                for waiter in waiters {
                    let _ = waiter.send(Err(message.clone()));
                }
            }
        }
    }
}
