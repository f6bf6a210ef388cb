//! Money: a decimal amount with at most two decimals, written in JSON as a string ("150.00").

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest amount a `numeric(12, 2)` column holds.
const MAX: Decimal = Decimal::from_parts(3_567_587_327, 232, 0, false, 2); // 9_999_999_999.99

/// An amount of money as stored (`numeric(12, 2)`): never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// A positive amount with at most two decimals that fits the column.
    pub fn parse_positive(text: &str) -> Result<Self, String> {
        Self::parse(text).and_then(Self::positive)
    }

    /// Like `parse_positive`, but zero is allowed (a credit limit of nothing).
    pub fn parse_non_negative(text: &str) -> Result<Self, String> {
        match Self::parse(text)? {
            zero if zero.is_zero() && !zero.is_sign_negative() => Ok(Self::ZERO),
            amount => Self::positive(amount),
        }
    }

    fn parse(text: &str) -> Result<Decimal, String> {
        if text.starts_with('-') {
            return Err("must be greater than zero".into());
        }
        let digits = text;
        let plain = !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.matches('.').count() <= 1
            && !digits.starts_with('.')
            && !digits.ends_with('.');
        if !plain {
            return Err("must be a decimal amount such as \"150.00\"".to_string());
        }
        // Judged on the text, before any rounding: a decimal keeps 28 significant digits and
        // would round "99.999…9" (30 nines) to 100.00.
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if fraction.trim_end_matches('0').len() > 2 {
            return Err("must have at most two decimals".into());
        }
        if whole.trim_start_matches('0').len() > 10 {
            return Err("must be at most 9999999999.99".into());
        }
        Decimal::from_str(text).map_err(|_| "must be a decimal amount such as \"150.00\"".to_string())
    }

    pub fn positive(amount: Decimal) -> Result<Self, String> {
        if amount.normalize().scale() > 2 {
            return Err("must have at most two decimals".into());
        }
        if amount <= Decimal::ZERO {
            return Err("must be greater than zero".into());
        }
        if amount > MAX {
            return Err("must be at most 9999999999.99".into());
        }
        Ok(Self(amount))
    }

    /// An amount computed from stored amounts (a difference, a sum): already within bounds.
    pub fn from_decimal(amount: Decimal) -> Self {
        Self(amount)
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The contract's string form or, for callers that send them, JSON integers (`150` or `150.0`).
fn deserialize_with<'de, D: Deserializer<'de>>(
    deserializer: D,
    parse: fn(&str) -> Result<Money, String>,
) -> Result<Money, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Integer(i64),
        /// A whole number written with a fraction (`150.0`), as JSON allows for an integer.
        Whole(f64),
    }
    let text = match Raw::deserialize(deserializer)
        .map_err(|_| serde::de::Error::custom("must be a decimal amount such as \"150.00\""))?
    {
        Raw::Text(text) => text,
        Raw::Integer(units) => units.to_string(),
        Raw::Whole(units) if units.fract() == 0.0 && units.abs() < 1e15 => format!("{units:.0}"),
        Raw::Whole(_) => return Err(serde::de::Error::custom("must be a decimal amount such as \"150.00\"")),
    };
    parse(&text).map_err(serde::de::Error::custom)
}

/// A positive amount.
impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_with(deserializer, Money::parse_positive)
    }
}

/// For `#[serde(deserialize_with = ..)]` on amounts that may be zero.
pub fn non_negative<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
    deserialize_with(deserializer, Money::parse_non_negative)
}

/// `non_negative` for an optional field.
pub fn optional_non_negative<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Money>, D::Error> {
    #[derive(Deserialize)]
    struct NonNegative(#[serde(deserialize_with = "non_negative")] Money);
    Option::<NonNegative>::deserialize(deserializer).map(|amount| amount.map(|NonNegative(money)| money))
}

/// For amounts this service wrote itself (a cached answer): any amount, sign included.
pub fn stored<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Money, D::Error> {
    let text = String::deserialize(deserializer)?;
    Decimal::from_str(&text).map(Money).map_err(serde::de::Error::custom)
}

/// `stored` for an optional field.
pub fn optional_stored<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Money>, D::Error> {
    #[derive(Deserialize)]
    struct Stored(#[serde(deserialize_with = "stored")] Money);
    Option::<Stored>::deserialize(deserializer).map(|amount| amount.map(|Stored(money)| money))
}

impl<'a> tokio_postgres::types::FromSql<'a> for Money {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Decimal::from_sql(ty, raw).map(Money)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Decimal as tokio_postgres::types::FromSql>::accepts(ty)
    }
}

impl tokio_postgres::types::ToSql for Money {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <Decimal as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The text an amount may be given as, what [`Money::parse_non_negative`] reads: up to ten
/// whole digits (leading zeros aside) and up to two decimals (trailing zeros aside).
pub const TEXT_PATTERN: &str = r"^0*[0-9]{1,10}(\.[0-9]{1,2}0*)?$";
/// The same, greater than zero: what [`Money::parse_positive`] reads.
pub const POSITIVE_TEXT_PATTERN: &str = r"^0*([1-9][0-9]{0,9}(\.[0-9]{1,2}0*)?|0\.(0[1-9]|[1-9][0-9]?)0*)$";

/// An amount as answered: a string with two decimals.
impl utoipa::PartialSchema for Money {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[0-9]{1,10}\.[0-9]{2}$"))
            .examples([serde_json::json!("150.00")])
            .into()
    }
}

/// An amount as a request gives it: the text form, or a whole number of units.
fn request_schema(pattern: &str, minimum: i64) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    let text =
        ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).examples([serde_json::json!("150.00")]);
    let units = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(minimum)).maximum(Some(9_999_999_999_i64));
    OneOfBuilder::new().item(text).item(units).into()
}

/// For `#[schema(schema_with = ..)]` on a positive amount of a request.
pub fn positive_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    request_schema(POSITIVE_TEXT_PATTERN, 1)
}

/// For `#[schema(schema_with = ..)]` on an amount of a request that may be zero.
pub fn non_negative_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    request_schema(TEXT_PATTERN, 0)
}

impl utoipa::ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_accepts_two_decimals_and_writes_two() {
        assert_eq!(Money::parse_positive("150").unwrap().to_string(), "150.00");
        assert_eq!(Money::parse_positive("0.5").unwrap().to_string(), "0.50");
        assert_eq!(Money::parse_positive("9999999999.99").unwrap().to_string(), "9999999999.99");
    }

    #[test]
    fn money_rejects_zero_negative_three_decimals_text_and_huge() {
        for bad in ["0", "-1", "1.005", "abc", "", "1000000000000000", "1e3"] {
            assert!(Money::parse_positive(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn money_beyond_a_decimals_precision_is_refused_not_rounded() {
        assert_eq!(
            Money::parse_positive("99.999999999999999999999999999999"),
            Err("must have at most two decimals".into())
        );
        assert_eq!(
            Money::parse_positive("99999999999999999999999999999999"),
            Err("must be at most 9999999999.99".into())
        );
        assert_eq!(Money::parse_positive("0009999999999.990").unwrap().to_string(), "9999999999.99");
    }

    #[test]
    fn the_documented_patterns_accept_exactly_what_the_parsers_accept() {
        let positive = regex::Regex::new(POSITIVE_TEXT_PATTERN).unwrap();
        let non_negative = regex::Regex::new(TEXT_PATTERN).unwrap();
        let samples = [
            "0",
            "00",
            "0.0",
            "0.00",
            "0.000",
            "0.01",
            "0.1",
            "0.10",
            "0.5",
            "00.50",
            "1",
            "01",
            "1.",
            ".5",
            "1.5",
            "1.50",
            "1.500",
            "1.505",
            "1.001",
            "150.00",
            "9999999999.99",
            "99999999999",
            "0009999999999.990",
            "10000000000",
            "-1",
            "-0",
            "+1",
            " 1",
            "1 ",
            "1e3",
            "abc",
            "",
            "1.2.3",
            "٣",
        ];
        for sample in samples {
            assert_eq!(positive.is_match(sample), Money::parse_positive(sample).is_ok(), "positive {sample:?}");
            assert_eq!(
                non_negative.is_match(sample),
                Money::parse_non_negative(sample).is_ok(),
                "non-negative {sample:?}"
            );
        }
    }

    #[test]
    fn money_reads_trailing_zero_decimals_as_two_decimals() {
        assert!(Money::parse_positive("1.500").is_ok());
    }
}
