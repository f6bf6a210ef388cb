//! Customer addresses and their default rules: at most one default shipping and one default
//! billing address per customer, where `both` counts as both.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

use super::fields::{self, Phone};
use crate::db::TenantTx;
use crate::error::{ApiError, Validator};

crate::text_enum! {
    AddressType { Shipping => "shipping", Billing => "billing", Both => "both" }
}

impl AddressType {
    /// The kinds of default this type occupies.
    fn kinds(self) -> &'static [&'static str] {
        match self {
            Self::Shipping => &["shipping"],
            Self::Billing => &["billing"],
            Self::Both => &["shipping", "billing"],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Address {
    pub address_id: Uuid,
    pub customer_id: Uuid,
    pub address_type: AddressType,
    pub recipient_name: Option<String>,
    pub address_line1: String,
    pub address_line2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: String,
    pub phone: Option<String>,
    pub is_default: bool,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Body of `POST /customers/{id}/addresses`. A customer's first address is its default
/// unless `is_default` is `false`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAddressRequest {
    pub address_type: Option<AddressType>,
    #[schema(schema_with = fields::optional_text::<{ fields::REFERENCE_CHARS }>)]
    pub recipient_name: Option<String>,
    #[schema(schema_with = fields::text::<{ fields::REFERENCE_CHARS }>)]
    pub address_line1: String,
    #[schema(schema_with = fields::optional_text::<{ fields::REFERENCE_CHARS }>)]
    pub address_line2: Option<String>,
    #[schema(schema_with = fields::text::<{ fields::PLACE_CHARS }>)]
    pub city: String,
    #[schema(schema_with = fields::optional_text::<{ fields::PLACE_CHARS }>)]
    pub state: Option<String>,
    #[schema(schema_with = fields::optional_text::<{ fields::POSTAL_CODE_CHARS }>)]
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2; `PA` when absent.
    #[schema(schema_with = fields::optional_country)]
    pub country: Option<String>,
    pub phone: Option<String>,
    pub is_default: Option<bool>,
}

/// Body of `PATCH /customers/{id}/addresses/{address_id}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAddressRequest {
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(nullable = false)]
    pub address_type: Option<Option<AddressType>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::REFERENCE_CHARS }>)]
    pub recipient_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::text::<{ fields::REFERENCE_CHARS }>)]
    pub address_line1: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::REFERENCE_CHARS }>)]
    pub address_line2: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::text::<{ fields::PLACE_CHARS }>)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::PLACE_CHARS }>)]
    pub state: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::POSTAL_CODE_CHARS }>)]
    pub postal_code: Option<Option<String>>,
    /// ISO 3166-1 alpha-2; `null` sets `PA`.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_country)]
    pub country: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(nullable = false)]
    pub is_default: Option<Option<bool>>,
}

/// The writable fields of an address, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressFields {
    pub address_type: AddressType,
    pub recipient_name: Option<String>,
    pub address_line1: String,
    pub address_line2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: String,
    pub phone: Option<String>,
    /// `None` on create: decided by whether the customer has addresses yet.
    pub is_default: Option<bool>,
}

fn text(v: &mut Validator, field: &str, value: Option<String>, max: usize) -> Option<Option<String>> {
    v.check_opt(field, value, |t| fields::bounded_text(&t, max))
}

impl CreateAddressRequest {
    pub fn validate(self) -> Result<AddressFields, ApiError> {
        let mut v = Validator::default();
        let recipient_name = text(&mut v, "recipient_name", self.recipient_name, fields::REFERENCE_CHARS);
        let address_line1 =
            v.check("address_line1", fields::bounded_text(&self.address_line1, fields::REFERENCE_CHARS));
        let address_line2 = text(&mut v, "address_line2", self.address_line2, fields::REFERENCE_CHARS);
        let city = v.check("city", fields::bounded_text(&self.city, fields::PLACE_CHARS));
        let state = text(&mut v, "state", self.state, fields::PLACE_CHARS);
        let postal_code = text(&mut v, "postal_code", self.postal_code, fields::POSTAL_CODE_CHARS);
        let country = v.check_opt("country", self.country, |c| fields::country(&c));
        let phone = v.check_opt("phone", self.phone, |p| Phone::parse(&p).map(Phone::into_inner));
        let (
            Some(recipient_name),
            Some(address_line1),
            Some(address_line2),
            Some(city),
            Some(state),
            Some(postal_code),
            Some(country),
            Some(phone),
        ) = (recipient_name, address_line1, address_line2, city, state, postal_code, country, phone)
        else {
            return Err(v.into_error());
        };
        Ok(AddressFields {
            address_type: self.address_type.unwrap_or(AddressType::Shipping),
            recipient_name,
            address_line1,
            address_line2,
            city,
            state,
            postal_code,
            country: country.unwrap_or_else(|| "PA".into()),
            phone,
            is_default: self.is_default,
        })
    }
}

/// A validated address patch: `None` keeps a field, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct AddressPatch {
    pub address_type: Option<AddressType>,
    pub recipient_name: Option<Option<String>>,
    pub address_line1: Option<String>,
    pub address_line2: Option<Option<String>>,
    pub city: Option<String>,
    pub state: Option<Option<String>>,
    pub postal_code: Option<Option<String>>,
    pub country: Option<String>,
    pub phone: Option<Option<String>>,
    pub is_default: Option<bool>,
}

/// A patched field that cannot be cleared: absent keeps it, `null` is an error.
fn not_null<T>(v: &mut Validator, field: &str, value: Option<Option<T>>) -> Option<Option<T>> {
    match value {
        Some(None) => {
            v.reject(field, "cannot be null");
            None
        }
        other => Some(other.flatten()),
    }
}

/// A patched text field that cannot be cleared.
fn patched_text(v: &mut Validator, field: &str, value: Option<Option<String>>, max: usize) -> Option<Option<String>> {
    match not_null(v, field, value)? {
        None => Some(None),
        Some(text) => v.check(field, fields::bounded_text(&text, max)).map(Some),
    }
}

/// A patched text field that `null` clears.
fn clearable_text(
    v: &mut Validator,
    field: &str,
    value: Option<Option<String>>,
    max: usize,
) -> Option<Option<Option<String>>> {
    match value {
        None => Some(None),
        Some(None) => Some(Some(None)),
        Some(Some(text)) => v.check(field, fields::bounded_text(&text, max)).map(|text| Some(Some(text))),
    }
}

impl PatchAddressRequest {
    pub fn validate(self) -> Result<AddressPatch, ApiError> {
        let mut v = Validator::default();
        let address_line1 = patched_text(&mut v, "address_line1", self.address_line1, fields::REFERENCE_CHARS);
        let city = patched_text(&mut v, "city", self.city, fields::PLACE_CHARS);
        let country = match self.country {
            None => Some(None),
            Some(None) => Some(Some("PA".to_string())),
            Some(Some(code)) => v.check("country", fields::country(&code)).map(Some),
        };
        let recipient_name = clearable_text(&mut v, "recipient_name", self.recipient_name, fields::REFERENCE_CHARS);
        let address_line2 = clearable_text(&mut v, "address_line2", self.address_line2, fields::REFERENCE_CHARS);
        let state = clearable_text(&mut v, "state", self.state, fields::PLACE_CHARS);
        let postal_code = clearable_text(&mut v, "postal_code", self.postal_code, fields::POSTAL_CODE_CHARS);
        let phone = match self.phone {
            None => Some(None),
            Some(None) => Some(Some(None)),
            Some(Some(phone)) => v.check("phone", Phone::parse(&phone).map(Phone::into_inner)).map(|p| Some(Some(p))),
        };
        let address_type = not_null(&mut v, "address_type", self.address_type);
        let is_default = not_null(&mut v, "is_default", self.is_default);
        let (
            Some(address_type),
            Some(recipient_name),
            Some(address_line1),
            Some(address_line2),
            Some(city),
            Some(state),
            Some(postal_code),
            Some(country),
            Some(phone),
            Some(is_default),
        ) = (
            address_type,
            recipient_name,
            address_line1,
            address_line2,
            city,
            state,
            postal_code,
            country,
            phone,
            is_default,
        )
        else {
            return Err(v.into_error());
        };
        v.finish()?;
        Ok(AddressPatch {
            address_type,
            recipient_name,
            address_line1,
            address_line2,
            city,
            state,
            postal_code,
            country,
            phone,
            is_default,
        })
    }
}

impl AddressPatch {
    /// The address as it will be after this patch.
    pub fn apply_to(self, current: &Address) -> AddressFields {
        AddressFields {
            address_type: self.address_type.unwrap_or(current.address_type),
            recipient_name: self.recipient_name.unwrap_or_else(|| current.recipient_name.clone()),
            address_line1: self.address_line1.unwrap_or_else(|| current.address_line1.clone()),
            address_line2: self.address_line2.unwrap_or_else(|| current.address_line2.clone()),
            city: self.city.unwrap_or_else(|| current.city.clone()),
            state: self.state.unwrap_or_else(|| current.state.clone()),
            postal_code: self.postal_code.unwrap_or_else(|| current.postal_code.clone()),
            country: self.country.unwrap_or_else(|| current.country.clone()),
            phone: self.phone.unwrap_or_else(|| current.phone.clone()),
            is_default: Some(self.is_default.unwrap_or(current.is_default)),
        }
    }
}

const COLUMNS: &str = "address_id, customer_id, address_type, recipient_name, address_line1, \
    address_line2, city, state, postal_code, country, phone, is_default, version, created_at, updated_at";

fn from_row(row: &Row) -> Address {
    Address {
        address_id: row.get("address_id"),
        customer_id: row.get("customer_id"),
        address_type: row.get("address_type"),
        recipient_name: row.get("recipient_name"),
        address_line1: row.get("address_line1"),
        address_line2: row.get("address_line2"),
        city: row.get("city"),
        state: row.get("state"),
        postal_code: row.get("postal_code"),
        country: row.get("country"),
        phone: row.get("phone"),
        is_default: row.get("is_default"),
        version: row.get("version"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

pub async fn list(tx: &TenantTx<'_>, customer_id: Uuid) -> Result<Vec<Address>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM addresses WHERE customer_id = $1 ORDER BY address_id");
    let rows = tx.query(&sql, &[&customer_id]).await.context("listing addresses")?;
    Ok(rows.iter().map(from_row).collect())
}

/// Reads and locks one address of one customer; 404 when it is not that customer's.
pub async fn lock(tx: &TenantTx<'_>, customer_id: Uuid, address_id: Uuid) -> Result<Address, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM addresses WHERE customer_id = $1 AND address_id = $2 FOR UPDATE");
    let row = tx.query_opt(&sql, &[&customer_id, &address_id]).await.context("reading an address")?;
    row.as_ref().map(from_row).ok_or(ApiError::NotFound)
}

/// Clears the default flag of the customer's other addresses that share a kind with `kind_of`.
async fn clear_defaults(
    tx: &TenantTx<'_>,
    customer_id: Uuid,
    keep: Uuid,
    kind_of: AddressType,
) -> Result<(), ApiError> {
    let kinds: Vec<&str> = kind_of.kinds().to_vec();
    tx.execute(
        "UPDATE addresses SET is_default = false, version = version + 1, updated_at = now() \
         WHERE customer_id = $1 AND address_id <> $2 AND is_default \
           AND (address_type = 'both' OR address_type = ANY($3))",
        &[&customer_id, &keep, &kinds],
    )
    .await
    .context("clearing previous default addresses")?;
    Ok(())
}

/// Adds an address. The caller holds the customer's row lock, which serializes default changes.
pub async fn insert(tx: &TenantTx<'_>, customer_id: Uuid, fields: AddressFields) -> Result<Address, ApiError> {
    let address_id = Uuid::now_v7();
    let is_default = match fields.is_default {
        Some(is_default) => is_default,
        None => tx
            .query_one("SELECT NOT EXISTS (SELECT 1 FROM addresses WHERE customer_id = $1)", &[&customer_id])
            .await
            .context("checking for existing addresses")?
            .get(0),
    };
    if is_default {
        clear_defaults(tx, customer_id, address_id, fields.address_type).await?;
    }
    let sql = format!(
        "INSERT INTO addresses (address_id, organization_id, customer_id, address_type, recipient_name, \
             address_line1, address_line2, city, state, postal_code, country, phone, is_default) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING {COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &address_id,
                &tx.organization_id(),
                &customer_id,
                &fields.address_type,
                &fields.recipient_name,
                &fields.address_line1,
                &fields.address_line2,
                &fields.city,
                &fields.state,
                &fields.postal_code,
                &fields.country,
                &fields.phone,
                &is_default,
            ],
        )
        .await
        .context("inserting an address")?;
    Ok(from_row(&row))
}

/// Rewrites an address. The caller holds the customer's row lock.
pub async fn update(tx: &TenantTx<'_>, address: &Address, fields: AddressFields) -> Result<Address, ApiError> {
    let is_default = fields.is_default.unwrap_or(address.is_default);
    if is_default {
        clear_defaults(tx, address.customer_id, address.address_id, fields.address_type).await?;
    }
    let sql = format!(
        "UPDATE addresses SET address_type = $2, recipient_name = $3, address_line1 = $4, \
             address_line2 = $5, city = $6, state = $7, postal_code = $8, country = $9, phone = $10, \
             is_default = $11, version = version + 1, updated_at = now() \
         WHERE address_id = $1 RETURNING {COLUMNS}"
    );
    let row = tx
        .query_one(
            &sql,
            &[
                &address.address_id,
                &fields.address_type,
                &fields.recipient_name,
                &fields.address_line1,
                &fields.address_line2,
                &fields.city,
                &fields.state,
                &fields.postal_code,
                &fields.country,
                &fields.phone,
                &is_default,
            ],
        )
        .await
        .context("updating an address")?;
    Ok(from_row(&row))
}

pub async fn delete(tx: &TenantTx<'_>, address_id: Uuid) -> Result<(), ApiError> {
    tx.execute("DELETE FROM addresses WHERE address_id = $1", &[&address_id]).await.context("deleting an address")?;
    Ok(())
}
