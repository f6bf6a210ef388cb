//! The customer: its row, what may be asked to create or change it, and how a change applies.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::fields::{self, DocumentNumber, Email, PersonName, Phone};
use crate::error::{ApiError, Validator};
use crate::loyalty::LoyaltyTier;

crate::text_enum! {
    CustomerType { B2c => "b2c", B2b => "b2b" }
}

crate::text_enum! {
    CustomerStatus { Active => "active", Inactive => "inactive", Blocked => "blocked" }
}

crate::text_enum! {
    /// Panamanian identity documents: cédula, RUC (companies), passport.
    DocumentType { Cedula => "cedula", Ruc => "ruc", Passport => "passport", Other => "other" }
}

/// A customer as stored. Personal fields are `None` once the customer is erased.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Customer {
    pub customer_id: Uuid,
    pub organization_id: Uuid,
    pub customer_type: CustomerType,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub document_type: Option<DocumentType>,
    pub document_number: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub status: CustomerStatus,
    pub loyalty_tier: LoyaltyTier,
    pub tier_updated_at: Option<DateTime<Utc>>,
    pub preferred_language: String,
    pub marketing_consent: bool,
    pub tags: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub notes: Option<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_purchase_at: Option<DateTime<Utc>>,
    pub erased_at: Option<DateTime<Utc>>,
}

/// Body of `POST /customers`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomerRequest {
    pub customer_type: Option<CustomerType>,
    #[schema(schema_with = fields::text::<{ fields::NAME_CHARS }>)]
    pub first_name: String,
    #[schema(schema_with = fields::text::<{ fields::NAME_CHARS }>)]
    pub last_name: String,
    pub email: Option<String>,
    /// Any common format; numbers without a country code are taken as Panamanian.
    pub phone: Option<String>,
    /// Given with `document_number`, or neither.
    pub document_type: Option<DocumentType>,
    /// Given with `document_type`, or neither.
    #[schema(schema_with = fields::optional_document_number)]
    pub document_number: Option<String>,
    pub birth_date: Option<NaiveDate>,
    #[schema(schema_with = fields::optional_text::<{ fields::GENDER_CHARS }>)]
    pub gender: Option<String>,
    pub status: Option<CustomerStatus>,
    #[schema(schema_with = fields::optional_language_tag)]
    pub preferred_language: Option<String>,
    pub marketing_consent: Option<bool>,
    #[schema(schema_with = fields::optional_tag_list)]
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    #[schema(schema_with = fields::optional_text::<{ fields::NOTES_CHARS }>)]
    pub notes: Option<String>,
}

/// A document: its type and normalized number always travel together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub document_type: DocumentType,
    pub number: DocumentNumber,
}

/// A validated new customer.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// A fresh time-ordered id; local tools may fix it (the demo data's example events).
    pub customer_id: Uuid,
    pub customer_type: CustomerType,
    pub first_name: PersonName,
    pub last_name: PersonName,
    pub email: Option<Email>,
    pub phone: Option<Phone>,
    pub document: Option<Document>,
    pub birth_date: Option<NaiveDate>,
    pub gender: Option<String>,
    pub status: CustomerStatus,
    pub preferred_language: String,
    pub marketing_consent: bool,
    pub tags: Vec<String>,
    pub metadata: Option<Value>,
    pub notes: Option<String>,
}

impl CreateCustomerRequest {
    pub fn validate(self) -> Result<NewCustomer, ApiError> {
        let mut v = Validator::default();
        let first_name = v.check("first_name", PersonName::parse(&self.first_name));
        let last_name = v.check("last_name", PersonName::parse(&self.last_name));
        let email = v.check_opt("email", self.email, |e| Email::parse(&e));
        let phone = v.check_opt("phone", self.phone, |p| Phone::parse(&p));
        let document = document(&mut v, Some(self.document_type), Some(self.document_number));
        let birth_date = v.check_opt("birth_date", self.birth_date, fields::birth_date);
        let gender = v.check_opt("gender", self.gender, |g| fields::bounded_text(&g, fields::GENDER_CHARS));
        let language = v.check_opt("preferred_language", self.preferred_language, |l| fields::language(&l));
        let tags = v.check_opt("tags", self.tags, fields::tags);
        let metadata = v.check_opt("metadata", self.metadata, fields::metadata);
        let notes = v.check_opt("notes", self.notes, |n| fields::bounded_text(&n, fields::NOTES_CHARS));
        let (
            Some(first_name),
            Some(last_name),
            Some(email),
            Some(phone),
            Some(document),
            Some(birth_date),
            Some(gender),
            Some(language),
            Some(tags),
            Some(metadata),
            Some(notes),
        ) = (first_name, last_name, email, phone, document, birth_date, gender, language, tags, metadata, notes)
        else {
            return Err(v.into_error());
        };
        v.finish()?;
        Ok(NewCustomer {
            customer_id: Uuid::now_v7(),
            customer_type: self.customer_type.unwrap_or(CustomerType::B2c),
            first_name,
            last_name,
            email,
            phone,
            document,
            birth_date,
            gender,
            status: self.status.unwrap_or(CustomerStatus::Active),
            preferred_language: language.unwrap_or_else(|| "es".into()),
            marketing_consent: self.marketing_consent.unwrap_or(false),
            tags: tags.unwrap_or_default(),
            metadata,
            notes,
        })
    }
}

/// Body of `PATCH /customers/{id}`: absent fields stay, `null` clears an optional field.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchCustomerRequest {
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(nullable = false)]
    pub customer_type: Option<Option<CustomerType>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::text::<{ fields::NAME_CHARS }>)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::text::<{ fields::NAME_CHARS }>)]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    pub phone: Option<Option<String>>,
    /// Given (or cleared) with `document_number`.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    pub document_type: Option<Option<DocumentType>>,
    /// Given (or cleared) with `document_type`.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_document_number)]
    pub document_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    pub birth_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::GENDER_CHARS }>)]
    pub gender: Option<Option<String>>,
    /// A status change is recorded in the status history with `status_reason`.
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(nullable = false)]
    pub status: Option<Option<CustomerStatus>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::REASON_CHARS }>)]
    pub status_reason: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::language_tag)]
    pub preferred_language: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(nullable = false)]
    pub marketing_consent: Option<Option<bool>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::tag_list)]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<Value>>,
    #[serde(default, deserialize_with = "crate::input::nullable")]
    #[schema(schema_with = fields::optional_text::<{ fields::NOTES_CHARS }>)]
    pub notes: Option<Option<String>>,
}

/// A validated partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CustomerPatch {
    pub customer_type: Option<CustomerType>,
    pub first_name: Option<PersonName>,
    pub last_name: Option<PersonName>,
    pub email: Option<Option<Email>>,
    pub phone: Option<Option<Phone>>,
    pub document: Option<Option<Document>>,
    pub birth_date: Option<Option<NaiveDate>>,
    pub gender: Option<Option<String>>,
    pub status: Option<CustomerStatus>,
    pub status_reason: Option<String>,
    pub preferred_language: Option<String>,
    pub marketing_consent: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub metadata: Option<Option<Value>>,
    pub notes: Option<Option<String>>,
}

/// A field that cannot be cleared: absent is "keep", `null` is an error.
fn required<T>(v: &mut Validator, field: &str, value: Option<Option<T>>) -> Option<T> {
    match value {
        Some(None) => {
            v.reject(field, "cannot be null");
            None
        }
        other => other.flatten(),
    }
}

/// A field that can be cleared, parsed when given a value.
fn optional<T, I>(
    v: &mut Validator,
    field: &str,
    value: Option<Option<I>>,
    parse: impl FnOnce(I) -> Result<T, String>,
) -> Option<Option<T>> {
    match value {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => v.check(field, parse(raw)).map(Some),
    }
}

/// Reads a document type and number that must be given, or cleared, together.
/// `None` means "not touched"; `Some(None)` means "cleared".
fn document(
    v: &mut Validator,
    document_type: Option<Option<DocumentType>>,
    number: Option<Option<String>>,
) -> Option<Option<Document>> {
    match (document_type, number) {
        (None, None) => None,
        (Some(None), Some(None)) | (Some(None), None) | (None, Some(None)) => Some(None),
        (Some(Some(document_type)), Some(Some(number))) => v
            .check("document_number", DocumentNumber::parse(&number))
            .map(|number| Some(Document { document_type, number })),
        _ => {
            v.reject("document_number", "document_type and document_number must be given together");
            None
        }
    }
}

impl PatchCustomerRequest {
    pub fn validate(self) -> Result<CustomerPatch, ApiError> {
        let mut v = Validator::default();
        let customer_type = required(&mut v, "customer_type", self.customer_type);
        let status = required(&mut v, "status", self.status);
        let marketing_consent = required(&mut v, "marketing_consent", self.marketing_consent);
        let first_name = required(&mut v, "first_name", self.first_name)
            .and_then(|name| v.check("first_name", PersonName::parse(&name)));
        let last_name = required(&mut v, "last_name", self.last_name)
            .and_then(|name| v.check("last_name", PersonName::parse(&name)));
        let preferred_language = required(&mut v, "preferred_language", self.preferred_language)
            .and_then(|language| v.check("preferred_language", fields::language(&language)));
        let tags = required(&mut v, "tags", self.tags).and_then(|tags| v.check("tags", fields::tags(tags)));
        let patch = CustomerPatch {
            customer_type,
            first_name,
            last_name,
            email: optional(&mut v, "email", self.email, |e| Email::parse(&e)),
            phone: optional(&mut v, "phone", self.phone, |p| Phone::parse(&p)),
            document: document(&mut v, self.document_type, self.document_number),
            birth_date: optional(&mut v, "birth_date", self.birth_date, fields::birth_date),
            gender: optional(&mut v, "gender", self.gender, |g| fields::bounded_text(&g, fields::GENDER_CHARS)),
            status,
            status_reason: optional(&mut v, "status_reason", self.status_reason, |r| {
                fields::bounded_text(&r, fields::REASON_CHARS)
            })
            .flatten(),
            preferred_language,
            marketing_consent,
            tags,
            metadata: optional(&mut v, "metadata", self.metadata, fields::metadata),
            notes: optional(&mut v, "notes", self.notes, |n| fields::bounded_text(&n, fields::NOTES_CHARS)),
        };
        v.finish()?;
        Ok(patch)
    }
}

/// What a patch changed: the names of changed fields and the status transition, if any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub fields: Vec<&'static str>,
    pub status: Option<(CustomerStatus, CustomerStatus)>,
}

impl Customer {
    /// Applies a patch to this customer and reports what actually changed.
    pub fn apply(&mut self, patch: CustomerPatch) -> Changes {
        let mut changes = Changes::default();
        let mut set = |name: &'static str, changed: bool| {
            if changed {
                changes.fields.push(name);
            }
        };
        macro_rules! assign {
            ($name:literal, $field:expr, $value:expr) => {
                let value = $value;
                set($name, $field != value);
                $field = value;
            };
        }
        if let Some(value) = patch.customer_type {
            assign!("customer_type", self.customer_type, value);
        }
        if let Some(value) = patch.first_name {
            assign!("first_name", self.first_name, Some(value.into_inner()));
        }
        if let Some(value) = patch.last_name {
            assign!("last_name", self.last_name, Some(value.into_inner()));
        }
        if let Some(value) = patch.email {
            assign!("email", self.email, value.map(Email::into_inner));
        }
        if let Some(value) = patch.phone {
            assign!("phone", self.phone, value.map(Phone::into_inner));
        }
        if let Some(value) = patch.document {
            let (document_type, number) = match value {
                Some(document) => (Some(document.document_type), Some(document.number.into_inner())),
                None => (None, None),
            };
            assign!("document_type", self.document_type, document_type);
            assign!("document_number", self.document_number, number);
        }
        if let Some(value) = patch.birth_date {
            assign!("birth_date", self.birth_date, value);
        }
        if let Some(value) = patch.gender {
            assign!("gender", self.gender, value);
        }
        if let Some(value) = patch.preferred_language {
            assign!("preferred_language", self.preferred_language, value);
        }
        if let Some(value) = patch.marketing_consent {
            assign!("marketing_consent", self.marketing_consent, value);
        }
        if let Some(value) = patch.tags {
            assign!("tags", self.tags, value);
        }
        if let Some(value) = patch.metadata {
            assign!("metadata", self.metadata, value);
        }
        if let Some(value) = patch.notes {
            assign!("notes", self.notes, value);
        }
        if let Some(status) = patch.status.filter(|status| *status != self.status) {
            changes.fields.push("status");
            changes.status = Some((self.status, status));
            self.status = status;
        }
        changes
    }
}
