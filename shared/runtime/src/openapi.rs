//! The admin API's OpenAPI document (`GET /api/v1/openapi.json`, `mdm openapi`).
//!
//! Each admin route is an actix-web handler annotated with `#[utoipa::path]` (its
//! parameters, body and specific answers) and registered through [`ApiRoutes`], which
//! takes nothing else: a route cannot be served without being documented. The document
//! then adds what every route shares: the bearer scheme, the `X-Mdm-Tenant` and
//! `Idempotency-Key` headers, and the problem+json answers any call can get.

use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{ALLOW, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, get, web};
use mdm_api::ErrorCode;
use mdm_api::problem::{PROBLEM_JSON, Problem};
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Paths,
    Ref, RefOr, Required,
};
use utoipa::{PartialSchema, ToSchema};
use utoipa_actix_web::OpenApiFactory;

use crate::ApiError;
use crate::auth::TENANT_HEADER;
use crate::idempotency;

/// Registers a module's admin routes: `fn api(routes: &mut ApiRoutes)`.
pub type ApiRoutesFn = fn(&mut ApiRoutes);

/// Where a module registers its admin routes, each with its OpenAPI operation.
pub struct ApiRoutes<'a> {
    /// `None` while only the document is being collected.
    config: Option<&'a mut web::ServiceConfig>,
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl ApiRoutes<'_> {
    /// Registers a handler made with an actix-web route macro and `#[utoipa::path]`.
    pub fn service<F>(&mut self, route: F) -> &mut Self
    where
        F: HttpServiceFactory + OpenApiFactory + 'static,
    {
        self.paths.merge(route.paths());
        route.schemas(&mut self.schemas);
        if let Some(config) = self.config.as_deref_mut() {
            config.service(route);
        }
        self
    }
}

/// Registers `routes` on a listener.
pub(crate) fn register(config: &mut web::ServiceConfig, routes: ApiRoutesFn) {
    routes(&mut ApiRoutes {
        config: Some(config),
        paths: Paths::new(),
        schemas: Vec::new(),
    });
}

/// The routes this module serves itself: the document.
pub(crate) fn routes(routes: &mut ApiRoutes) {
    routes.service(openapi_json);
}

/// The document, as the running process serves it.
#[utoipa::path(
    tag = "meta",
    operation_id = "getOpenApiDocument",
    security(()),
    responses((status = 200, description = "This document.", content_type = "application/json"))
)]
#[get("/api/v1/openapi.json")]
async fn openapi_json(document: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document.0.clone())
}

/// The document, rendered once at start.
pub(crate) struct ApiDocument(pub(crate) String);

/// The document of the admin routes that `modules` register.
pub fn document(modules: &[ApiRoutesFn]) -> OpenApi {
    let mut collected = ApiRoutes {
        config: None,
        paths: Paths::new(),
        schemas: Vec::new(),
    };
    routes(&mut collected);
    for module in modules {
        module(&mut collected);
    }
    let mut components = ComponentsBuilder::new()
        .schema(Problem::name(), Problem::schema())
        .security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        )
        .build();
    components.schemas.extend(collected.schemas);
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("mdm admin API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(DESCRIPTION)),
        )
        .paths(collected.paths)
        .components(Some(components))
        .security(Some([SecurityRequirement::new("bearer", [""; 0])]))
        .build();
    for item in document.paths.paths.values_mut() {
        for (method, operation) in operations(item) {
            complete(method, operation);
        }
    }
    document
}

const DESCRIPTION: &str = "Manage the devices of a tenant: the MDM authority, enrollment \
settings, users, the inventory, and the remote actions (lock, passcode reset, wipe, retire, \
delete). Shaped like Microsoft Graph's deviceManagement API. Every call takes a bearer \
token; the token fixes the role and, except for operators, the tenant. Errors are RFC 9457 \
problem details with a stable `code`.";

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = (HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|o| (method, o)))
}

/// Adds to one operation what every route shares.
fn complete(method: HttpMethod, operation: &mut Operation) {
    let anonymous = operation
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(is_empty_requirement));
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let has_path_parameters = parameters
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path)));
    if !anonymous {
        parameters.push(header(
            TENANT_HEADER,
            "The tenant an operator token acts on; other tokens carry their tenant.",
        ));
    }
    let mutating = !matches!(method, HttpMethod::Get);
    if mutating {
        parameters.push(header(
            idempotency::HEADER,
            "Makes the call safe to repeat: a repeat with the same key answers the first \
             answer (1 to 255 characters, kept 24 hours).",
        ));
    }

    let mut shared: Vec<(&str, &str)> = vec![
        ("400", "The request is malformed (`invalid_request`)."),
        ("500", "Internal server error (`internal_error`)."),
        (
            "503",
            "A service this call needs is unavailable for a while; `Retry-After` says when \
             to try again (`service_unavailable`).",
        ),
    ];
    if !anonymous {
        shared.push((
            "401",
            "The token is missing, unknown, malformed, revoked or expired (`unauthorized`).",
        ));
        shared.push((
            "403",
            "The token's role may not make this call (`forbidden`).",
        ));
    }
    if has_path_parameters {
        shared.push((
            "404",
            "No such object in the caller's tenant (`not_found`).",
        ));
    }
    if operation.request_body.is_some() {
        shared.push(("413", "The body is too large (`payload_too_large`)."));
        shared.push(("415", "The body is not JSON (`unsupported_media_type`)."));
        shared.push(("422", "A field has an invalid value (`validation_failed`)."));
    }
    if mutating {
        shared.push((
            "409",
            "A request with the same `Idempotency-Key` is still in progress \
             (`idempotency_key_in_use`).",
        ));
        shared.push((
            "422",
            "The `Idempotency-Key` was used before with another request \
             (`idempotency_key_reused`).",
        ));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in shared {
        match responses.get_mut(status) {
            None => {
                responses.insert(status.to_owned(), RefOr::T(problem(description)));
            }
            Some(RefOr::T(response)) if !response.description.contains(description) => {
                response.description = format!("{} {description}", response.description);
            }
            Some(_) => {}
        }
    }
    // An answer documented without a body, for an error, is a problem.
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response
            && status.as_str() >= "400"
            && response.content.is_empty()
        {
            *response = problem(&response.description);
        }
    }
}

fn is_empty_requirement(requirement: &SecurityRequirement) -> bool {
    requirement == &SecurityRequirement::default()
}

fn header(name: &str, description: &str) -> RefOr<Parameter> {
    let parameter = ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    RefOr::T(parameter)
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(Problem::name())))
                .build(),
        )
        .build()
}

/// The methods each documented path takes. A request for a documented path with another
/// method is answered 405 with `Allow`, as one resource with several methods would be
/// (each operation is a resource of its own, so actix-web alone would answer 404).
pub(crate) struct AllowedMethods(Vec<(Vec<Option<String>>, Vec<String>)>);

impl AllowedMethods {
    pub(crate) fn of(document: &OpenApi) -> Self {
        let templates = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path
                    .split('/')
                    .map(|s| (!s.starts_with('{')).then(|| s.to_owned()))
                    .collect();
                let mut item = item.clone();
                let methods = operations(&mut item)
                    .map(|(method, _)| method_name(&method).to_owned())
                    .collect();
                (segments, methods)
            })
            .collect();
        Self(templates)
    }

    /// Whether `method` on `path` is a documented operation.
    pub(crate) fn takes(&self, path: &str, method: &str) -> bool {
        self.allow(path)
            .is_some_and(|allow| allow.split(", ").any(|m| m == method))
    }

    /// What `Allow` says for `path`: the methods of the most specific documented paths
    /// it matches (a fixed segment beats a parameter), or `None` if it matches none.
    pub(crate) fn allow(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let matching: Vec<(usize, &Vec<String>)> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| match t {
                        Some(fixed) => fixed == s,
                        None => is_id(s),
                    })
            })
            .map(|(template, methods)| (template.iter().flatten().count(), methods))
            .collect();
        let fixed = matching.iter().map(|(fixed, _)| *fixed).max()?;
        let mut methods: Vec<&str> = matching
            .iter()
            .filter(|(f, _)| *f == fixed)
            .flat_map(|(_, methods)| methods.iter().map(String::as_str))
            .collect();
        methods.sort_unstable();
        methods.dedup();
        Some(methods.join(", "))
    }
}

/// Every path parameter of the admin API is an id, and its route matches only a UUID's
/// characters (so that `.../managedDevices/bulkAction` is not taken for a device).
fn is_id(segment: &str) -> bool {
    !segment.is_empty() && segment.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Put => "PUT",
        HttpMethod::Post => "POST",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Head => "HEAD",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Trace => "TRACE",
    }
}

/// The public listener's answer when no route matches: 405 with `Allow` for a documented
/// path, 404 otherwise.
pub(crate) async fn unmatched(
    request: HttpRequest,
    allowed: web::Data<AllowedMethods>,
) -> HttpResponse {
    let Some(allow) = allowed.allow(request.path()) else {
        return ApiError::new(ErrorCode::NotFound, "no such resource").error_response();
    };
    let detail = format!("{} takes {allow}", request.path());
    let mut response = ApiError::new(ErrorCode::MethodNotAllowed, detail).error_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}
