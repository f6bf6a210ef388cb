//! Parsed customer values: only these reach SQL. Each `parse` trims, normalizes and
//! explains what is wrong without repeating the input.

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};

/// Region assumed for phone numbers written without a country code.
pub const DEFAULT_PHONE_REGION: Region = Region::PA;

/// Trimmed text of bounded length without control characters.
pub fn bounded_text(text: &str, max_chars: usize) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(text.to_string())
}

/// What [`bounded_text`] accepts, as a JSON Schema pattern: spaces around are trimmed, and
/// what is left is not empty and has no control characters.
pub const TEXT_PATTERN: &str = r"^\s*([^\s\u0000-\u001F\u007F-\u009F]|[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F])\s*$";

/// Longest first or last name.
pub const NAME_CHARS: usize = 100;
/// Longest gender, as the customer gives it.
pub const GENDER_CHARS: usize = 20;
/// Longest notes on a customer.
pub const NOTES_CHARS: usize = 2000;
/// Longest reason of a status change.
pub const REASON_CHARS: usize = 500;
/// Longest reference, address line or recipient.
pub const REFERENCE_CHARS: usize = 255;
/// Longest city or state.
pub const PLACE_CHARS: usize = 100;
/// Longest postal code.
pub const POSTAL_CODE_CHARS: usize = 20;
/// Most tags of a customer, and the longest tag.
pub const MAX_TAGS: usize = 50;
pub const TAG_CHARS: usize = 100;
/// Longest language tag, and its form (what [`language`] accepts once trimmed).
pub const LANGUAGE_CHARS: usize = 10;
pub const LANGUAGE_PATTERN: &str = r"^[A-Za-z0-9](-?[A-Za-z0-9])+$";
/// Longest document number, and its form (what [`DocumentNumber::parse`] accepts unchanged).
pub const DOCUMENT_CHARS: usize = 50;
pub const DOCUMENT_PATTERN: &str = r"^[A-Za-z0-9/-]+$";

type SchemaRef = utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>;

/// A string schema, or a string-or-null one when `null` is accepted (as absent, or to clear).
fn string(nullable: bool) -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::schema::{SchemaType, Type};
    let types = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { Type::String.into() };
    utoipa::openapi::ObjectBuilder::new().schema_type(types)
}

fn text_schema(max_chars: usize, nullable: bool) -> SchemaRef {
    string(nullable).pattern(Some(TEXT_PATTERN)).max_length(Some(max_chars)).into()
}

/// For `#[schema(schema_with = ..)]`: a [`bounded_text`] of at most `MAX` characters.
pub fn text<const MAX: usize>() -> SchemaRef {
    text_schema(MAX, false)
}

/// [`text`], or `null` (absent, or cleared by a patch).
pub fn optional_text<const MAX: usize>() -> SchemaRef {
    text_schema(MAX, true)
}

fn language_schema(nullable: bool) -> SchemaRef {
    string(nullable).pattern(Some(LANGUAGE_PATTERN)).max_length(Some(LANGUAGE_CHARS)).examples(["es", "es-PA"]).into()
}

/// A [`language`] tag.
pub fn language_tag() -> SchemaRef {
    language_schema(false)
}

/// A [`language`] tag, or `null` (absent).
pub fn optional_language_tag() -> SchemaRef {
    language_schema(true)
}

/// A [`DocumentNumber`], or `null` (absent, or cleared by a patch).
pub fn optional_document_number() -> SchemaRef {
    string(true).pattern(Some(DOCUMENT_PATTERN)).max_length(Some(DOCUMENT_CHARS)).examples(["8-823-1456"]).into()
}

/// The [`tags`] of a customer.
pub fn tag_list() -> SchemaRef {
    utoipa::openapi::schema::ArrayBuilder::new().items(text_schema(TAG_CHARS, false)).max_items(Some(MAX_TAGS)).into()
}

/// The [`tags`] of a customer, or `null` (absent).
pub fn optional_tag_list() -> SchemaRef {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::schema::ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(text_schema(TAG_CHARS, false))
        .max_items(Some(MAX_TAGS))
        .into()
}

/// The ISO 3166-1 alpha-2 codes [`country`] accepts, sorted: the regions the phone number
/// metadata knows (a test keeps the two the same). Listed, because asking the metadata loads
/// it, which cost every function that documents addresses 6.7 ms of its cold start.
const COUNTRY_CODES: [&str; 245] = [
    "AC", "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AR", "AS", "AT", "AU", "AW", "AX", "AZ", "BA", "BB", "BD",
    "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS", "BT", "BW", "BY", "BZ", "CA", "CC",
    "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ",
    "DK", "DM", "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB",
    "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GT", "GU", "GW", "GY", "HK", "HN", "HR",
    "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH",
    "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY",
    "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV",
    "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE",
    "PF", "PG", "PH", "PK", "PL", "PM", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB",
    "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV", "SX", "SY", "SZ",
    "TA", "TC", "TD", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "US",
    "UY", "UZ", "VA", "VC", "VE", "VG", "VI", "VN", "VU", "WF", "WS", "XK", "YE", "YT", "ZA", "ZM", "ZW",
];

/// The codes [`country`] accepts, upper case.
pub fn country_codes() -> Vec<String> {
    COUNTRY_CODES.iter().map(|code| code.to_string()).collect()
}

/// A [`country`] code, or `null` (absent: `PA`).
pub fn optional_country() -> SchemaRef {
    let mut codes: Vec<serde_json::Value> = country_codes().into_iter().map(Into::into).collect();
    codes.push(serde_json::Value::Null);
    string(true).enum_values(Some(codes)).examples(["PA"]).into()
}

/// A first or last name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(text: &str) -> Result<Self, String> {
        bounded_text(text, NAME_CHARS).map(Self)
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An email address as written (trimmed); compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() > 255 || !email_address::EmailAddress::is_valid(text) || !text.contains('.') {
            return Err("must be a valid email address".into());
        }
        Ok(Self(text.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A phone number in E.164 (`+50761234567`); numbers without a country code are Panamanian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(text: &str) -> Result<Self, String> {
        const INVALID: &str = "must be a valid phone number, e.g. +507 6123 4567 or 6123-4567";
        if text.len() > 30 {
            return Err(INVALID.into());
        }
        let number = PhoneNumber::parse(text, Some(DEFAULT_PHONE_REGION)).map_err(|_| INVALID.to_string())?;
        if !number.is_valid() {
            return Err(INVALID.into());
        }
        Ok(Self(number.format_as(PhoneNumberFormat::E164).into_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An identity document number: trimmed, upper case, without inner spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentNumber(String);

impl DocumentNumber {
    pub fn parse(text: &str) -> Result<Self, String> {
        let normalized: String = text.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect();
        if normalized.is_empty() || normalized.chars().count() > DOCUMENT_CHARS {
            return Err(format!("must be 1 to {DOCUMENT_CHARS} characters"));
        }
        if !normalized.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/') {
            return Err("may contain only letters, digits, '-' and '/'".into());
        }
        Ok(Self(normalized))
    }

    /// The number without its separators (`8-823-1456` -> `88231456`), as the column
    /// `customers.document_key` computes it: how a search finds a number typed otherwise.
    pub fn key(&self) -> String {
        self.0.chars().filter(char::is_ascii_alphanumeric).collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A BCP 47 language tag such as `es` or `es-PA`.
pub fn language(text: &str) -> Result<String, String> {
    let text = text.trim();
    let valid = (2..=LANGUAGE_CHARS).contains(&text.len())
        && text.split('-').all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if valid {
        Ok(text.to_string())
    } else {
        Err("must be a language tag such as es or es-PA".into())
    }
}

/// Free-form labels: at most [`MAX_TAGS`], each of at most [`TAG_CHARS`], duplicates removed.
pub fn tags(tags: Vec<String>) -> Result<Vec<String>, String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("must have at most {MAX_TAGS} tags"));
    }
    let mut parsed: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = bounded_text(&tag, TAG_CHARS).map_err(|why| format!("each tag {why}"))?;
        if !parsed.contains(&tag) {
            parsed.push(tag);
        }
    }
    Ok(parsed)
}

/// A JSON object of at most 16 KB.
pub fn metadata(value: serde_json::Value) -> Result<serde_json::Value, String> {
    if !value.is_object() {
        return Err("must be a JSON object".into());
    }
    if value.to_string().len() > 16 * 1024 {
        return Err("must be at most 16 KB".into());
    }
    if contains_nul(&value) {
        return Err("must not contain the NUL character".into());
    }
    Ok(value)
}

/// Whether any key or string in the JSON holds `\0`, which PostgreSQL's jsonb refuses.
fn contains_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(contains_nul),
        serde_json::Value::Object(map) => map.iter().any(|(key, item)| key.contains('\0') || contains_nul(item)),
        _ => false,
    }
}

/// A birth date in the past and after 1900.
pub fn birth_date(date: chrono::NaiveDate) -> Result<chrono::NaiveDate, String> {
    let earliest = chrono::NaiveDate::from_ymd_opt(1900, 1, 1).expect("a valid date");
    if date < earliest || date > chrono::Utc::now().date_naive() {
        return Err("must be a past date after 1900-01-01".into());
    }
    Ok(date)
}

/// An ISO 3166-1 alpha-2 country code, upper-cased: a region the phone number metadata knows
/// (see `COUNTRY_CODES`).
pub fn country(text: &str) -> Result<String, String> {
    let code = text.trim().to_ascii_uppercase();
    if COUNTRY_CODES.binary_search(&code.as_str()).is_ok() {
        Ok(code)
    } else {
        Err("must be an ISO 3166-1 alpha-2 country code such as PA".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlibphonenumber::PHONE_NUMBER_UTIL;

    #[test]
    fn the_documented_text_pattern_accepts_what_bounded_text_accepts() {
        let pattern = regex::Regex::new(TEXT_PATTERN).unwrap();
        for sample in
            ["Ana", " Ana ", "José Pérez", "", " ", "\t", "a\u{0}b", "a\u{85}b", "fin\n", "0", "\u{00a0}x", "東京"]
        {
            assert_eq!(pattern.is_match(sample), bounded_text(sample, 100).is_ok(), "{sample:?}");
        }
    }

    /// What the schema's pattern and `maxLength` allow.
    fn documented(pattern: &str, max_chars: usize, sample: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(sample) && sample.chars().count() <= max_chars
    }

    #[test]
    fn the_documented_language_tag_is_what_language_accepts() {
        let long = "abcdefghijk";
        for sample in ["es", "es-PA", "zh-Hant", "e", "es-", "-es", "es--PA", "es_PA", "ñu", "12", "", long, &long[1..]]
        {
            assert_eq!(documented(LANGUAGE_PATTERN, LANGUAGE_CHARS, sample), language(sample).is_ok(), "{sample:?}");
        }
        assert!(language(" es ").is_ok(), "spaces around are trimmed, a leniency the schema leaves out");
    }

    #[test]
    fn the_documented_document_number_is_what_parse_accepts_unchanged() {
        let (longest, too_long) = ("1".repeat(DOCUMENT_CHARS), "1".repeat(DOCUMENT_CHARS + 1));
        for sample in
            ["8-823-1456", "pe-12-345", "E/8/1", "PA1234567", "", "8.823", "8_823", "ñ1", "８", &longest, &too_long]
        {
            let parsed = DocumentNumber::parse(sample).is_ok();
            assert_eq!(documented(DOCUMENT_PATTERN, DOCUMENT_CHARS, sample), parsed, "{sample:?}");
        }
        assert!(
            DocumentNumber::parse("8 823 1456").is_ok(),
            "inner spaces are dropped, a leniency the schema leaves out"
        );
    }

    #[test]
    fn tags_are_bounded_by_the_documented_count_and_length() {
        assert!(tags(vec!["vip".into(); MAX_TAGS]).is_ok());
        let distinct = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        assert!(tags(distinct(MAX_TAGS + 1)).is_err());
        assert!(tags(vec!["a".repeat(TAG_CHARS)]).is_ok());
        assert!(tags(vec!["a".repeat(TAG_CHARS + 1)]).is_err());
    }

    #[test]
    fn the_country_codes_are_the_regions_the_phone_metadata_knows() {
        let letters = || b'A'..=b'Z';
        let pairs = letters().flat_map(|first| letters().map(move |second| [first, second]));
        let known: Vec<String> = pairs
            .map(|pair| String::from_utf8(pair.to_vec()).expect("ASCII"))
            .filter(|code| {
                code.parse::<Region>()
                    .is_ok_and(|region| PHONE_NUMBER_UTIL.get_country_code_for_region(region).is_some())
            })
            .collect();
        assert_eq!(country_codes(), known);
        assert!(COUNTRY_CODES.windows(2).all(|pair| pair[0] < pair[1]), "sorted, for the binary search");
        assert_eq!(country(" pa "), Ok("PA".to_string()));
        assert!(country("XX").is_err() && country("ZZ").is_err() && country("PAN").is_err());
    }

    #[test]
    fn panama_phones_in_any_format_normalize_to_the_same_e164() {
        for written in ["6123-4567", "+507 6123 4567", "61234567", "(507) 6123-4567", "+50761234567"] {
            assert_eq!(Phone::parse(written).unwrap().into_inner(), "+50761234567", "{written}");
        }
    }

    #[test]
    fn phones_of_other_countries_keep_their_code() {
        assert_eq!(Phone::parse("+1 415 555 2671").unwrap().into_inner(), "+14155552671");
    }

    #[test]
    fn invalid_phones_are_rejected() {
        for bad in ["abc", "123", "", "+507 1", &"9".repeat(40)] {
            assert!(Phone::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn document_numbers_are_upper_case_without_spaces() {
        assert_eq!(DocumentNumber::parse(" pe-12 -345 ").unwrap().into_inner(), "PE-12-345");
        assert!(DocumentNumber::parse("8-123-456; DROP").is_err());
    }

    #[test]
    fn emails_must_look_like_addresses() {
        assert!(Email::parse(" Ana@Example.com ").is_ok());
        for bad in ["ana", "ana@", "@example.com", "ana@example"] {
            assert!(Email::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(PersonName::parse("  José ").unwrap().into_inner(), "José");
        assert!(PersonName::parse(&"a".repeat(101)).is_err());
        assert!(PersonName::parse("   ").is_err());
    }
}
