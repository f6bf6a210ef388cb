//! RFM segments: the codes customers are grouped under, and the purchases they are scored on.

pub mod purchases;

crate::text_enum! {
    /// The RFM segment of a customer (seed 002's `segment_code`).
    SegmentCode {
        Champions => "champions",
        Loyal => "loyal",
        PotentialLoyalist => "potential_loyalist",
        New => "new",
        AtRisk => "at_risk",
        Lost => "lost",
    }
}
