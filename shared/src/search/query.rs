//! What a search string can mean: a name, an email fragment, phone digits, a document number.
//! Parsed once at the edge; the SQL receives only these ready values.

use crate::customers::fields::DocumentNumber;

/// Longest query considered; the rest is ignored.
pub const MAX_QUERY_CHARS: usize = 200;

/// What [`SearchQuery::parse`] needs to find something to search, as a JSON Schema pattern
/// (unanchored): a character that is neither a space nor a control character.
pub const QUERY_PATTERN: &str = r"[^\s\u0000-\u001F\u007F-\u009F]";

/// For `#[param(schema_with = ..)]` on `q`.
pub fn query_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .pattern(Some(QUERY_PATTERN))
        .examples(["jose perez", "6123-4567", "8-823-1456"])
        .into()
}

/// The parts of `q` each kind of match uses; `None` skips that kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The text as typed (trimmed): normalized for names by the database itself, so it
    /// matches the indexed expression exactly.
    pub text: String,
    /// Whether the name is long enough for trigram matching (3+ characters).
    pub fuzzy_name: bool,
    /// The text in lower case, when it could be part of an email (3+ characters, one word).
    pub email_fragment: Option<String>,
    /// The text in lower case, when it could be the start of an email (one word).
    pub email_prefix: Option<String>,
    /// The digits of a phone number, when the text looks like one.
    pub phone_digits: Option<String>,
    /// The text as a normalized document number, when it could be one.
    pub document: Option<String>,
    /// That number without separators, to find it typed with other separators or none.
    pub document_key: Option<String>,
}

impl SearchQuery {
    /// `None` when nothing searchable remains.
    pub fn parse(q: &str) -> Option<Self> {
        let text: String = q.trim().chars().filter(|c| !c.is_control()).take(MAX_QUERY_CHARS).collect();
        if text.is_empty() {
            return None;
        }
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let phone_like = text.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
        let could_be_email = !text.contains(char::is_whitespace) && text.chars().any(|c| c.is_alphabetic() || c == '@');
        let lowered = text.to_lowercase();
        let document =
            DocumentNumber::parse(&text).ok().filter(|number| number.as_str().chars().any(|c| c.is_ascii_digit()));
        Some(Self {
            fuzzy_name: text.chars().filter(|c| c.is_alphanumeric()).count() >= 3,
            email_fragment: (could_be_email && text.chars().count() >= 3).then(|| lowered.clone()),
            email_prefix: could_be_email.then(|| lowered.clone()),
            phone_digits: (phone_like && digits.len() >= 4).then_some(digits),
            document_key: document.as_ref().map(DocumentNumber::key),
            document: document.map(DocumentNumber::into_inner),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_in_any_format_becomes_its_digits() {
        for (typed, digits) in
            [("6123-4567", "61234567"), ("+507 6123 4567", "50761234567"), ("(507) 6123-4567", "50761234567")]
        {
            assert_eq!(SearchQuery::parse(typed).unwrap().phone_digits.as_deref(), Some(digits), "{typed}");
        }
        assert_eq!(SearchQuery::parse("jose 1234").unwrap().phone_digits, None);
        assert_eq!(SearchQuery::parse("6123-4567").unwrap().email_prefix, None, "a phone is not an email");
    }

    #[test]
    fn an_email_fragment_is_the_lowered_text_as_typed() {
        let query = SearchQuery::parse("Ar.Mendo%_\\").unwrap();
        assert_eq!(query.email_fragment.as_deref(), Some("ar.mendo%_\\"));
        assert_eq!(SearchQuery::parse("ar").unwrap().email_fragment, None, "too short to be a fragment");
    }

    #[test]
    fn documents_are_normalized_and_need_a_digit() {
        assert_eq!(SearchQuery::parse(" pe-12-345 ").unwrap().document.as_deref(), Some("PE-12-345"));
        assert_eq!(SearchQuery::parse("perez").unwrap().document, None);
        assert_eq!(SearchQuery::parse("8 823-1456").unwrap().document_key.as_deref(), Some("88231456"));
    }

    #[test]
    fn the_documented_query_pattern_accepts_what_parse_finds_searchable() {
        let pattern = regex::Regex::new(QUERY_PATTERN).unwrap();
        for sample in ["ana", " a ", "", " ", "\t\n", "\u{0}", " \u{1}\u{85} ", "\u{a0}", "\u{200b}", "0", "\u{7f}x"] {
            assert_eq!(pattern.is_match(sample), SearchQuery::parse(sample).is_some(), "{sample:?}");
        }
    }

    #[test]
    fn short_and_long_queries_are_bounded() {
        assert!(!SearchQuery::parse("jo").unwrap().fuzzy_name);
        assert_eq!(SearchQuery::parse(&"a".repeat(1024)).unwrap().text.len(), MAX_QUERY_CHARS);
        assert_eq!(SearchQuery::parse("   "), None);
    }
}
