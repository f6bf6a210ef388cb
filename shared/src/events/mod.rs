//! Events: the ones this service publishes (written to the transactional outbox, then
//! relayed to SQS) and the ones it consumes from other services.

pub mod inbound;
mod outbox;
mod relay;

pub use outbox::{insert_one_sql, message_group, record, record_one, Envelope, OutboxEvent};
pub use relay::{stop_before, Relay, RelayReport, AFTER_COMMIT_BUDGET, DEADLINE_MARGIN};

/// `source` of every event this service emits.
pub const SOURCE: &str = "customer-service";

/// Outbound event types of the contract.
pub mod types {
    pub const CUSTOMER_CREATED: &str = "customers.customer.created";
    pub const CUSTOMER_UPDATED: &str = "customers.customer.updated";
    pub const CUSTOMER_STATUS_CHANGED: &str = "customers.customer.status_changed";
    pub const CUSTOMER_ERASED: &str = "customers.customer.erased";
    /// `{customer_id, old_segment, new_segment, run_id}`: a run or a recalculation moved the
    /// customer to another segment (`old_segment` null for a first segment).
    pub const CUSTOMER_SEGMENT_CHANGED: &str = "customers.customer.segment_changed";
    pub const CREDIT_OPENED: &str = "customers.credit.opened";
    pub const CREDIT_APPROVED: &str = "customers.credit.approved";
    pub const CREDIT_LIMIT_CHANGED: &str = "customers.credit.limit_changed";
    pub const CREDIT_SUSPENDED: &str = "customers.credit.suspended";
    pub const CREDIT_REACTIVATED: &str = "customers.credit.reactivated";
    pub const CREDIT_CANCELLED: &str = "customers.credit.cancelled";
    pub const CREDIT_USED: &str = "customers.credit.used";
    pub const CREDIT_RELEASED: &str = "customers.credit.released";
    pub const CREDIT_PAYMENT_RECORDED: &str = "customers.credit.payment_recorded";
    pub const CREDIT_OVERDUE: &str = "customers.credit.overdue";
}
