//! Android: a mock of Google's side of Android Enterprise and simulated devices, written
//! from Google's discovery document and documentation, independently of the adapter.
//!
//! - [`MockGoogle`]: the Android Management API on every path of the discovery document
//!   (request bodies and query parameters checked against it: an unknown field is a 400,
//!   as at Google), the OAuth token server that issues access tokens only for a correctly
//!   signed service-account assertion, Pub/Sub push (shared-secret or OIDC
//!   authentication, redelivery until acknowledged), and fault injection (429, 503, 404,
//!   the "500 entity not found" quirk, stalls).
//! - [`SimulatedDevice`]: devices provisioned with an enrollment token in each management
//!   mode, which report status, carry out commands and report them as Android Device
//!   Policy does.

mod device;
pub mod discovery;
mod google;
pub mod jwt;

pub use device::{Hardware, Setup, SimulatedDevice, State as DeviceState};
pub use google::{
    Fault, FaultKind, MockGoogle, Now, OIDC_ISSUER, PushAuth, PushSubscription, Pushed, Recorded,
    SCOPE,
};
