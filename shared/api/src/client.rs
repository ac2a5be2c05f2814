//! A typed HTTP client for the internal APIs.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::internal::{BatchOutcome, IntrospectRequest, IntrospectResponse, MessageBatch};
use crate::problem::Problem;
use crate::service::Service;

/// Where each service's internal API answers.
#[derive(Clone, Debug, Default)]
pub struct ServiceUrls(HashMap<Service, String>);

impl ServiceUrls {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, service: Service, base_url: impl Into<String>) {
        self.0
            .insert(service, base_url.into().trim_end_matches('/').to_owned());
    }

    pub fn get(&self, service: Service) -> Option<&str> {
        self.0.get(&service).map(String::as_str)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no internal URL is configured for the {0} service")]
    NoUrl(Service),
    #[error("{service} could not be reached: {source}")]
    Transport {
        service: Service,
        #[source]
        source: reqwest::Error,
    },
    #[error("{service} answered {status}: {}", problem.as_ref().and_then(|p| p.detail.clone()).unwrap_or_default())]
    Status {
        service: Service,
        status: u16,
        problem: Option<Box<Problem>>,
    },
    #[error("{service} sent an answer that could not be read: {source}")]
    Decode {
        service: Service,
        #[source]
        source: reqwest::Error,
    },
}

impl ClientError {
    /// Trying again later may succeed: the service was unreachable, overloaded or failed
    /// internally. A 4xx other than 408 and 429 will fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::NoUrl(_) | Self::Decode { .. } => false,
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        }
    }

    /// The problem code the service answered, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status {
                problem: Some(problem),
                ..
            } => Some(&problem.code),
            _ => None,
        }
    }
}

/// Calls the internal APIs of the other services with the service credential. Cheap to
/// clone; connections are pooled.
#[derive(Clone)]
pub struct InternalClient {
    http: reqwest::Client,
    urls: ServiceUrls,
    credential: String,
}

impl InternalClient {
    pub fn new(
        urls: ServiceUrls,
        credential: String,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            // Below any server keep-alive (5 s by default), so that an idle connection is
            // never reused just as the server closes it.
            .pool_idle_timeout(Duration::from_millis(800))
            .build()?;
        Ok(Self {
            http,
            urls,
            credential,
        })
    }

    pub fn urls(&self) -> &ServiceUrls {
        &self.urls
    }

    /// `POST <service>/<path>` with a JSON body, answering the JSON reply.
    pub async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let url = self.url(service, path)?;
        let request = self.http.post(url).bearer_auth(&self.credential).json(body);
        self.send(service, request).await
    }

    /// `GET <service>/<path>`, answering the JSON reply.
    pub async fn get<R: DeserializeOwned>(
        &self,
        service: Service,
        path: &str,
    ) -> Result<R, ClientError> {
        let url = self.url(service, path)?;
        let request = self.http.get(url).bearer_auth(&self.credential);
        self.send(service, request).await
    }

    /// Delivers a batch of outbox messages to `destination`.
    pub async fn deliver(
        &self,
        destination: Service,
        batch: &MessageBatch,
    ) -> Result<BatchOutcome, ClientError> {
        self.post(destination, "/messages", batch).await
    }

    /// Asks the enrollment service what a bearer token grants.
    pub async fn introspect(&self, token: &str) -> Result<IntrospectResponse, ClientError> {
        let request = IntrospectRequest {
            token: token.to_owned(),
        };
        self.post(Service::Enrollment, "/tokens/introspect", &request)
            .await
    }

    fn url(&self, service: Service, path: &str) -> Result<String, ClientError> {
        let base = self.urls.get(service).ok_or(ClientError::NoUrl(service))?;
        Ok(format!("{base}{}{path}", service.internal_prefix()))
    }

    async fn send<R: DeserializeOwned>(
        &self,
        service: Service,
        request: reqwest::RequestBuilder,
    ) -> Result<R, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport { service, source })?;
        let status = response.status();
        if !status.is_success() {
            let problem = response.json::<Problem>().await.ok().map(Box::new);
            return Err(ClientError::Status {
                service,
                status: status.as_u16(),
                problem,
            });
        }
        response
            .json()
            .await
            .map_err(|source| ClientError::Decode { service, source })
    }
}
