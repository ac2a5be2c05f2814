//! Windows: a mock of the Windows Push Notification Services and a simulated Windows 10
//! device (desktop or mobile). Both are written from Microsoft's specifications and the
//! requests recorded from a real client (`windows/data/`), independently of the server's
//! Windows adapter: the simulator has its own XML reading, its own CSR writer and its own
//! idea of how a device answers.

mod der;
mod device;
pub mod tree;
mod wns;

pub use der::{SignatureOid, windows_csr};
pub use device::{
    CAPTURE_DISCOVERY, CAPTURE_ENROLLMENT, CAPTURE_POLICY, CAPTURE_SESSION, CAPTURE_UNENROLL,
    CAPTURED_DEVICE_ID, Discovery, Edition, EnrollError, Enrollment, Executed, Fault, Lifecycle,
    SessionReport, WindowsDevice,
};
pub use wns::MockWns;
