//! Keyset pagination: `limit` (default 50, at most 200) and an opaque `cursor`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// A page size as a query gives it; its schema states the range [`PageRequest::parse`] allows.
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(transparent)]
pub struct Limit(pub u32);

impl utoipa::PartialSchema for Limit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()))
            .description(Some("Page size."))
            .into()
    }
}

impl utoipa::ToSchema for Limit {}

/// A page of a list, in the contract's shape.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A validated page request. The cursor is the key of the last row of the previous page: an
/// id or a sequence number, encoded opaquely.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: u32,
    after: Option<Vec<u8>>,
}

/// The cursor that carries `key`, as [`PageRequest::parse`] reads it back.
fn cursor(key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

fn invalid_cursor() -> ApiError {
    ApiError::invalid("cursor", "is not a cursor this service issued for this list")
}

impl PageRequest {
    pub fn parse(limit: Option<Limit>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = limit.map_or(DEFAULT_LIMIT, |Limit(limit)| limit);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        let after = cursor.map(|text| URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid_cursor())).transpose()?;
        Ok(Self { limit, after })
    }

    /// The id after which the page starts, for lists ordered by id.
    pub fn after_id(&self) -> Result<Option<Uuid>, ApiError> {
        self.after.as_deref().map(|bytes| Uuid::from_slice(bytes).map_err(|_| invalid_cursor())).transpose()
    }

    /// The sequence number after which the page starts, for lists ordered by sequence.
    pub fn after_seq(&self) -> Result<Option<i64>, ApiError> {
        self.after
            .as_deref()
            .map(|bytes| <[u8; 8]>::try_from(bytes).map(i64::from_be_bytes).map_err(|_| invalid_cursor()))
            .transpose()
    }

    /// The (score, id) after which a ranked page starts.
    pub fn after_score(&self) -> Result<Option<(f64, Uuid)>, ApiError> {
        self.after
            .as_deref()
            .map(|bytes| match bytes.split_at_checked(8) {
                Some((score, id)) if id.len() == 16 => Ok((
                    f64::from_be_bytes(score.try_into().expect("eight bytes")),
                    Uuid::from_slice(id).expect("sixteen bytes"),
                )),
                _ => Err(invalid_cursor()),
            })
            .transpose()
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the extra row off and points the cursor at the last row kept.
    pub fn page<T>(&self, rows: Vec<T>, id_of: impl Fn(&T) -> Uuid) -> ListResponse<T> {
        self.page_with(rows, |row| id_of(row).as_bytes().to_vec())
    }

    /// `page` for a list read in bounded steps: when no row follows the page but the read
    /// stopped before the end, the cursor points at `read_through`, the last id read.
    pub fn page_read_through<T>(
        &self,
        rows: Vec<T>,
        id_of: impl Fn(&T) -> Uuid,
        read_through: Option<Uuid>,
    ) -> ListResponse<T> {
        let mut page = self.page(rows, id_of);
        if page.next_cursor.is_none() {
            page.next_cursor = read_through.map(|id| cursor(id.as_bytes()));
        }
        page
    }

    /// `page` for lists ordered by a sequence number.
    pub fn page_by_seq<T>(&self, rows: Vec<T>, seq_of: impl Fn(&T) -> i64) -> ListResponse<T> {
        self.page_with(rows, |row| seq_of(row).to_be_bytes().to_vec())
    }

    /// `page` for lists ordered by any key; `key_of` gives the bytes the cursor carries.
    pub fn page_with<T>(&self, mut rows: Vec<T>, key_of: impl Fn(&T) -> Vec<u8>) -> ListResponse<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = more.then(|| rows.last().map(|row| cursor(&key_of(row)))).flatten();
        ListResponse { items: rows, next_cursor }
    }
}
