//! Customer search: one query string matched against names (any order, partial, accents and
//! case ignored, small typos tolerated), email, phone digits and document numbers, ranked.

pub mod query;
pub mod routes;
pub mod store;

use serde::Serialize;

use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::customers::model::{Customer, CustomerStatus, CustomerType};
use crate::error::ApiError;
use crate::loyalty::LoyaltyTier;
use crate::paging::{ListResponse, PageRequest};
use crate::segments::SegmentCode;
use query::SearchQuery;

/// Filters applied to every kind of match.
#[derive(Debug, Default, Clone)]
pub struct SearchFilter {
    pub status: Option<CustomerStatus>,
    pub customer_type: Option<CustomerType>,
    pub loyalty_tier: Option<LoyaltyTier>,
    pub segment: Option<SegmentCode>,
}

/// A matching customer, its score (higher is better) and what matched best.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// 4 document, 3.5 document without separators, 3 exact phone or email, 2.5 email or name
    /// prefix, 1.5-2 similar name.
    pub score: f64,
    /// `document`, `phone`, `email` or `name`.
    pub matched_on: String,
    #[serde(flatten)]
    pub customer: Customer,
}

#[tracing::instrument(name = "search.search", skip_all, fields(organization_id = %caller.organization_id))]
pub async fn search(
    app: &App,
    caller: &Caller,
    query: &SearchQuery,
    filter: &SearchFilter,
    page: PageRequest,
) -> Result<ListResponse<SearchHit>, ApiError> {
    caller.require(Scope::CustomersRead)?;
    let after = page.after_score()?;
    let mut conn = app.db.connection().await?;
    let tx = conn.begin(caller.organization_id).await?;
    let hits = store::search(&tx, query, filter, after, page.fetch_limit()).await?;
    tx.commit().await?;
    Ok(page.page_with(hits, |hit| {
        let mut key = hit.score.to_be_bytes().to_vec();
        key.extend_from_slice(hit.customer.customer_id.as_bytes());
        key
    }))
}
