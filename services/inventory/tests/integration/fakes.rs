//! Stand-ins for the services inventory talks to: enrollment (tokens, tenant policy,
//! users), dispatch (the action summary of a device, and the messages it receives) and
//! the three platform adapters (the messages they receive). Shared by the integration
//! tests and the benchmark.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use mdm_api::internal::adapter::DeviceRemoved;
use mdm_api::internal::dispatch::{
    AuditEvent, DeleteRequested, DeviceActionsSummary, DevicesRemoved,
};
use mdm_api::internal::enrollment::{TenantPolicy, UserState, UsersLookup, UsersLookupResponse};
use mdm_api::internal::{Grant, IntrospectRequest, IntrospectResponse, Message};
use mdm_api::{ErrorCode, Problem, Service};
use mdm_domain::{DeviceId, MdmAuthority, Role, TenantId, TokenId, UserId};
use mdm_runtime::Module;
use mdm_runtime::inbox::{AfterCommit, Delivery, HandlerError, Inbox};
use mdm_store::DbConnection;
use serde::Deserialize;
use serde_json::Value;

/// A message a fake received: who received it, its kind and its payload.
#[derive(Clone, Debug)]
pub struct Received {
    pub receiver: Service,
    pub kind: String,
    pub payload: Value,
}

#[derive(Clone, Default)]
pub struct Fakes {
    /// Bearer token → what it grants.
    pub tokens: Arc<Mutex<HashMap<String, Grant>>>,
    /// Tenant → MDM authority (unknown tenants answer 404).
    pub tenants: Arc<Mutex<HashMap<TenantId, MdmAuthority>>>,
    /// Users of each tenant.
    pub users: Arc<Mutex<HashMap<UserId, (TenantId, String)>>>,
    /// Dispatch's summary per device.
    pub summaries: Arc<Mutex<HashMap<DeviceId, DeviceActionsSummary>>>,
    /// While set, dispatch's summary endpoint fails.
    pub dispatch_down: Arc<Mutex<bool>>,
    /// Messages received by dispatch and the adapters.
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Fakes {
    pub fn modules(&self) -> Vec<Module> {
        vec![
            self.enrollment(),
            self.dispatch(),
            self.adapter(Service::Apple),
            self.adapter(Service::Android),
            self.adapter(Service::Windows),
        ]
    }

    pub fn tenant(&self, authority: MdmAuthority) -> TenantId {
        let tenant = TenantId::new();
        self.tenants.lock().unwrap().insert(tenant, authority);
        tenant
    }

    pub fn set_authority(&self, tenant: TenantId, authority: MdmAuthority) {
        self.tenants.lock().unwrap().insert(tenant, authority);
    }

    pub fn user(&self, tenant: TenantId, upn: &str) -> UserId {
        let user = UserId::new();
        self.users
            .lock()
            .unwrap()
            .insert(user, (tenant, upn.to_owned()));
        user
    }

    /// A bearer token with `role` (in `tenant`, acting for `user`).
    pub fn token(&self, role: Role, tenant: Option<TenantId>, user: Option<UserId>) -> String {
        let secret = format!("test-{}", uuid::Uuid::new_v4().simple());
        let grant = Grant {
            token_id: TokenId::new(),
            role,
            tenant_id: tenant,
            user_id: user,
        };
        self.tokens.lock().unwrap().insert(secret.clone(), grant);
        secret
    }

    pub fn messages(&self, receiver: Service, kind: &str) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.receiver == receiver && r.kind == kind)
            .map(|r| r.payload.clone())
            .collect()
    }

    /// Waits until `receiver` got a message of `kind` matching `wanted`.
    pub async fn wait_for(
        &self,
        receiver: Service,
        kind: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        for _ in 0..500 {
            if let Some(found) = self
                .messages(receiver, kind)
                .into_iter()
                .find(|v| wanted(v))
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{receiver} never received {kind}; received: {:?}",
            self.received.lock().unwrap()
        );
    }

    fn enrollment(&self) -> Module {
        let state = self.clone();
        Module::new(Service::Enrollment).internal(move |cfg| {
            cfg.app_data(web::Data::new(state.clone()))
                .service(web::resource("/tokens/introspect").post(introspect))
                .service(web::resource("/tenants/{id}/policy").get(policy))
                .service(web::resource("/users/lookup").post(users_lookup));
        })
    }

    fn dispatch(&self) -> Module {
        let state = self.clone();
        let received = self.received.clone();
        let inbox = Inbox::new(Service::Dispatch)
            .on::<DeleteRequested, _>(record(Service::Dispatch, received.clone()))
            .on::<DevicesRemoved, _>(record(Service::Dispatch, received.clone()))
            .on::<AuditEvent, _>(record(Service::Dispatch, received));
        Module::new(Service::Dispatch)
            .internal(move |cfg| {
                cfg.app_data(web::Data::new(state.clone()))
                    .service(web::resource("/devices/{id}/summary").get(summary));
            })
            .inbox(inbox)
    }

    fn adapter(&self, service: Service) -> Module {
        let inbox =
            Inbox::new(service).on::<DeviceRemoved, _>(record(service, self.received.clone()));
        Module::new(service).inbox(inbox)
    }
}

fn record<M: Message + 'static>(
    receiver: Service,
    into: Arc<Mutex<Vec<Received>>>,
) -> impl Fn(&mut DbConnection, &Delivery<'_>, M) -> Result<AfterCommit, HandlerError>
+ Send
+ Sync
+ 'static {
    move |_, _, message| {
        into.lock().unwrap().push(Received {
            receiver,
            kind: M::KIND.to_owned(),
            payload: serde_json::to_value(&message).unwrap(),
        });
        Ok(None)
    }
}

type State = web::Data<Fakes>;

async fn introspect(state: State, body: web::Json<IntrospectRequest>) -> HttpResponse {
    let grant = state.tokens.lock().unwrap().get(&body.token).cloned();
    HttpResponse::Ok().json(IntrospectResponse {
        active: grant.is_some(),
        grant,
    })
}

async fn policy(state: State, tenant: web::Path<TenantId>) -> HttpResponse {
    let tenant = tenant.into_inner();
    let Some(authority) = state.tenants.lock().unwrap().get(&tenant).copied() else {
        return HttpResponse::NotFound().json(Problem::new(ErrorCode::NotFound, None));
    };
    HttpResponse::Ok().json(TenantPolicy {
        tenant_id: tenant,
        authority,
        device_limit_per_user: 5,
        platforms: Vec::new(),
        apple_push_topic: None,
        android_enterprise: None,
        windows_enrollment_enabled: true,
    })
}

async fn users_lookup(state: State, body: web::Json<UsersLookup>) -> HttpResponse {
    let users = state.users.lock().unwrap();
    let found = body
        .user_ids
        .iter()
        .filter_map(|id| {
            users
                .get(id)
                .filter(|(tenant, _)| *tenant == body.tenant_id)
                .map(|(_, upn)| UserState {
                    user_id: *id,
                    user_principal_name: upn.clone(),
                    licensed: true,
                })
        })
        .collect();
    HttpResponse::Ok().json(UsersLookupResponse { users: found })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SummaryQuery {
    #[allow(dead_code)]
    tenant_id: TenantId,
}

async fn summary(
    state: State,
    id: web::Path<DeviceId>,
    _query: web::Query<SummaryQuery>,
) -> HttpResponse {
    if *state.dispatch_down.lock().unwrap() {
        return HttpResponse::ServiceUnavailable().json(Problem::new(ErrorCode::Unavailable, None));
    }
    let summary = state
        .summaries
        .lock()
        .unwrap()
        .get(&id.into_inner())
        .cloned()
        .unwrap_or(DeviceActionsSummary {
            device_action_results: Vec::new(),
            lock_pin: None,
        });
    HttpResponse::Ok().json(summary)
}
