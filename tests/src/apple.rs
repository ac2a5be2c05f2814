//! apple: the APNs mock, the simulated Apple device, and its SCEP client and test PKI.

pub mod der;
pub mod device;
pub mod mock_apns;
pub mod pki;
pub mod scep;

pub use device::{Answer, AuthMode, DeviceState, Model, SimulatedDevice};
pub use mock_apns::{MockApns, RecordedPush};
pub use pki::TestCa;
