//! Input shapes every transport reads the same way: patch fields and whole numbers.

/// For `#[serde(default, deserialize_with = "nullable")]` on `Option<Option<T>>` patch fields:
/// absent stays `None`, `null` becomes `Some(None)`, a value `Some(Some(value))`.
pub fn nullable<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// For `#[serde(default, deserialize_with = "optional_whole")]` on optional whole numbers:
/// `30` and `30.0` (how some JSON writers send an integer) are both 30; `30.5` is refused.
pub fn optional_whole<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: TryFrom<i64>,
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let Some(number) = <Option<serde_json::Number> as serde::Deserialize>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole =
        number.as_i64().or_else(|| number.as_f64().filter(|n| n.fract() == 0.0 && n.abs() < 9e15).map(|n| n as i64));
    let whole = whole.ok_or_else(|| D::Error::custom("must be a whole number"))?;
    T::try_from(whole).map(Some).map_err(|_| D::Error::custom("must be a whole number in range"))
}
