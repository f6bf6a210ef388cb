//! Input shapes of partial updates, shared by every transport.

/// For `#[serde(default, deserialize_with = "nullable")]` on `Option<Option<T>>` patch fields:
/// absent stays `None`, `null` becomes `Some(None)`, a value `Some(Some(value))`.
pub fn nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
