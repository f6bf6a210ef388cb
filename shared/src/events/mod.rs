//! Events this service publishes, written to the transactional outbox.

mod outbox;

pub use outbox::{record, Envelope};

/// `source` of every event this service emits.
pub const SOURCE: &str = "customer-service";

/// Outbound event types of the contract.
pub mod types {
    pub const CUSTOMER_CREATED: &str = "customers.customer.created";
    pub const CUSTOMER_UPDATED: &str = "customers.customer.updated";
    pub const CUSTOMER_STATUS_CHANGED: &str = "customers.customer.status_changed";
    pub const CUSTOMER_ERASED: &str = "customers.customer.erased";
}
