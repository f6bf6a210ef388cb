//! The search statement: one capped, index-backed branch per kind of match, merged and ranked.

use std::sync::LazyLock;

use anyhow::Context;
use uuid::Uuid;

use super::query::SearchQuery;
use super::{SearchFilter, SearchHit};
use crate::db::{borrow_params, Params, TenantTx};
use crate::error::ApiError;

/// Candidates one branch may contribute: a very common term costs at most this many rows.
pub const CANDIDATES_PER_MATCH: i64 = 200;

/// Filters every branch applies before its cap, so a filter never hides a match.
const FILTERS: &str = "AND ($7::text IS NULL OR c.status = $7) AND ($8::text IS NULL OR c.customer_type = $8) \
    AND ($9::text IS NULL OR c.loyalty_tier = $9) \
    AND ($10::text IS NULL OR EXISTS (SELECT 1 FROM customer_segments s \
         WHERE s.organization_id = c.organization_id AND s.customer_id = c.customer_id AND s.segment_code = $10))";

/// True when the request has no filter: then a branch over another table than `customers`
/// (folded away in the custom plan) needs no row of `customers` at all.
const NO_FILTERS: &str = "($7::text IS NULL AND $8::text IS NULL AND $9::text IS NULL AND $10::text IS NULL)";

/// Rows the name branch reads from its index before ranking them by similarity.
const NAME_POOL: i64 = 500;

/// Customers of the anchor word checked for the other typed words: a word shared by more
/// customers answers from the first of them rather than reading them all.
const ANCHOR_CANDIDATES: i64 = 2000;

/// The typed text as the name columns hold it: lower case, accents removed.
const TYPED_NAME: &str = "lower(immutable_unaccent($2::text))";

/// Typed words (2+ characters) given corrections; later words are left to the name prefix and
/// similarity. With `MAX_CORRECTION_COST` this bounds the phrases by construction, whatever
/// the length of `q` or the vocabulary.
pub const MAX_NAME_WORDS: i64 = 8;

/// Over three typed words, a phrase may stray this far from the best correction of each word
/// (the sum of the correction ranks, 0 = best): at most 45 phrases of eight words instead of 3^8.
const MAX_CORRECTION_COST: i64 = 2;

/// The first [`MAX_NAME_WORDS`] typed words with the vocabulary words each may mean: itself,
/// words it begins, and similar words (typos), at most three per typed word, ranked from 0
/// (best). `place` numbers the typed words that have any, from 1.
fn corrections() -> String {
    format!(
        "SELECT dense_rank() OVER (ORDER BY typed.position) AS place, known.word,
               row_number() OVER (PARTITION BY typed.position ORDER BY known.exact DESC, known.similarity DESC) - 1 AS rank
        FROM (SELECT word, position
              FROM regexp_split_to_table(lower(immutable_unaccent($2::text)), '[^a-z0-9]+')
                   WITH ORDINALITY AS split(word, position)
              WHERE length(word) >= 2
              ORDER BY position
              LIMIT {MAX_NAME_WORDS}) typed
        CROSS JOIN LATERAL (
            SELECT n.word, n.word = typed.word AS exact, similarity(n.word, typed.word) AS similarity
            FROM name_words n
            WHERE n.organization_id = $1
              AND (n.word = typed.word OR n.word LIKE typed.word || '%' OR n.word % typed.word)
            ORDER BY n.word = typed.word DESC, similarity(n.word, typed.word) DESC
            LIMIT 3) known"
    )
}

/// Typed words up to this many are also tried in every order ("mendoza omar").
const ANY_ORDER_WORDS: i64 = 3;

/// Word similarity from which a name found in another order than typed settles the query; a
/// weaker one ("los andes" finding "Andrés Losada") still lets the any-order word match run.
const REORDERED_CONFIDENT: f64 = 0.8;

/// Every typed word as one of its corrections, all required, in any order:
/// `('jose' | 'josefina') & ('gonzalez' | 'gonzales')`. NULL when no word is known.
const NAME_WORDS_QUERY: &str = "(SELECT string_agg('(' || alternatives || ')', ' & ')::tsquery FROM (
        SELECT place, string_agg(quote_literal(word), ' | ') AS alternatives
        FROM corrections GROUP BY place) words)";

/// The search: one capped, index-backed branch per kind of match, then the best score of each
/// customer. Scores: exact document 4, the document without its separators 3.5, exact phone or
/// email 3, email or whole-name prefix 2.5, phone prefix 2, email fragment 1.8, similar name
/// 1 + word similarity. Names are found by corrected phrases (typed order, and every order for
/// up to three words); the words in any position (a surname alone, "los andes") run only when
/// no phrase in the typed order matched and no reordered one matched closely, and when the hits
/// that outrank them (above 2) do not fill the page. Every branch reads B-tree ranges or equalities, never the organization, and
/// is gated above its capped subquery: under forced RLS a folded `false` inside a branch would
/// not stop its scan.
pub fn search_sql() -> &'static str {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
        "WITH RECURSIVE corrections AS MATERIALIZED ({corrections}),
         typed_words AS (SELECT count(DISTINCT place) AS n FROM corrections),
         -- The corrected words as whole-name prefixes, in the typed order and, for a few
         -- words, in every order: B-tree probes, which row-level security lets use the index
         -- (unlike @@ and LIKE).
         -- Over three words, only the typed order and phrases near the best corrections.
         phrases(used, last_place, phrase, in_order, cost) AS (
            SELECT ARRAY[place], place, word, place = 1, rank FROM corrections
            WHERE place = 1 OR (SELECT n FROM typed_words) <= {ANY_ORDER_WORDS}
            UNION ALL
            SELECT p.used || c.place, c.place, p.phrase || ' ' || c.word, p.in_order AND c.place = p.last_place + 1,
                   p.cost + c.rank
            FROM phrases p JOIN corrections c ON c.place <> ALL (p.used)
             AND ((SELECT n FROM typed_words) <= {ANY_ORDER_WORDS}
                  OR (c.place = p.last_place + 1 AND p.cost + c.rank <= {MAX_CORRECTION_COST}))
         ),
         -- Both bounds as plain values: an expression such as phrase || chr(..) is not
         -- leakproof, so row-level security would keep it out of the index condition.
         whole_phrases AS MATERIALIZED (
            SELECT phrase, phrase || chr(1114111) AS phrase_end, bool_or(in_order) AS in_order FROM phrases
            WHERE cardinality(used) = (SELECT n FROM typed_words)
            GROUP BY phrase
         ),
         exact AS (
            (SELECT * FROM (
                SELECT c.customer_id, 4.0::float8 AS score, 'document' AS matched_on FROM customers c
                WHERE c.organization_id = $1 AND c.document_number = $11 {FILTERS}
                LIMIT $15) hit
             WHERE $11::text IS NOT NULL)
            UNION ALL
            (SELECT * FROM (
                SELECT c.customer_id, 3.5::float8, 'document' FROM customers c
                WHERE c.organization_id = $1 AND c.document_key = $17 {FILTERS}
                LIMIT $15) hit
             WHERE $17::text IS NOT NULL)
            UNION ALL
            (SELECT * FROM (
                SELECT c.customer_id, CASE WHEN c.phone_digits = $6 THEN 3.0 ELSE 2.0 END::float8, 'phone' FROM customers c
                WHERE c.organization_id = $1 AND c.phone_digits ~>=~ $6 AND c.phone_digits ~<~ ($6 || '~') {FILTERS}
                LIMIT $15) hit
             WHERE $6::text IS NOT NULL)
            UNION ALL
            (SELECT * FROM (
                SELECT c.customer_id, CASE WHEN c.phone_national = $6 THEN 3.0 ELSE 2.0 END::float8, 'phone' FROM customers c
                WHERE c.organization_id = $1 AND c.phone_national ~>=~ $6 AND c.phone_national ~<~ ($6 || '~') {FILTERS}
                LIMIT $15) hit
             WHERE $6::text IS NOT NULL)
            UNION ALL
            (SELECT * FROM (
                SELECT c.customer_id, CASE WHEN c.email_search = $5 THEN 3.0 ELSE 2.5 END::float8, 'email' FROM customers c
                WHERE c.organization_id = $1
                  AND c.email_search ~>=~ $5 AND c.email_search ~<~ ($5 || chr(1114111)) {FILTERS}
                LIMIT $15) hit
             WHERE $5::text IS NOT NULL)
            UNION ALL
            (SELECT * FROM (
                SELECT c.customer_id, 2.5::float8, 'name' FROM customers c
                WHERE c.organization_id = $1
                  AND c.search_name ~>=~ {TYPED_NAME} AND c.search_name ~<~ ({TYPED_NAME} || chr(1114111)) {FILTERS}
                LIMIT $15) hit
             WHERE $3)
         ),
         -- A fragment from inside an address is the start of one of its suffixes.
         fragments AS (
            SELECT * FROM (
                SELECT f.customer_id, 1.8::float8 AS score, 'email' AS matched_on
                FROM email_suffixes f
                WHERE f.organization_id = $1 AND f.suffix ~>=~ $4 AND f.suffix ~<~ ($4 || chr(1114111))
                  AND ({NO_FILTERS} OR EXISTS (SELECT 1 FROM customers c
                       WHERE c.organization_id = $1 AND c.customer_id = f.customer_id {FILTERS}))
                LIMIT $15) hit
            WHERE $4::text IS NOT NULL
         ),
         corrected_hits AS (
            SELECT hit.customer_id, word_similarity({TYPED_NAME}, hit.search_name)::float8 AS similarity, p.in_order
            FROM whole_phrases p
            CROSS JOIN LATERAL (
                SELECT c.customer_id, c.search_name FROM customers c
                WHERE c.organization_id = $1
                  AND c.search_name ~>=~ p.phrase AND c.search_name ~<~ p.phrase_end {FILTERS}
                ORDER BY c.search_name USING ~<~
                LIMIT $15) hit
            WHERE $16
         ),
         corrected AS (
            SELECT customer_id, max(1.0 + similarity) AS score, 'name' AS matched_on FROM corrected_hits
            GROUP BY customer_id
         ),
         -- The typed word naming the fewest customers (counted up to a cap) anchors the match
         -- in any order: its customers, read by B-tree equality, are checked for the others.
         anchor AS MATERIALIZED (
            SELECT w.words FROM (SELECT place, array_agg(word) AS words FROM corrections GROUP BY place) w
            ORDER BY (SELECT count(*) FROM (
                          SELECT 1 FROM name_word_postings p
                          WHERE p.organization_id = $1 AND p.word = ANY (w.words)
                          LIMIT {ANCHOR_CANDIDATES}) counted),
                     w.place
            LIMIT 1
         ),
         words AS (
            SELECT customer_id, 1.0 + similarity AS score, 'name' AS matched_on FROM (
                SELECT c.customer_id, word_similarity({TYPED_NAME}, c.search_name)::float8 AS similarity
                FROM (SELECT p.customer_id FROM anchor a
                      JOIN name_word_postings p ON p.organization_id = $1 AND p.word = ANY (a.words)
                      LIMIT {ANCHOR_CANDIDATES}) candidate
                JOIN customers c ON c.organization_id = $1 AND c.customer_id = candidate.customer_id
                WHERE c.search_words @@ {NAME_WORDS_QUERY} {FILTERS}
                LIMIT {NAME_POOL}) pool
            WHERE similarity >= 0.4 AND $16
              AND NOT EXISTS (SELECT 1 FROM corrected_hits WHERE in_order OR similarity >= {REORDERED_CONFIDENT})
              AND (SELECT count(*) FROM exact e
                   WHERE e.score > 2.0
                     AND ($12::float8 IS NULL OR e.score < $12 OR (e.score = $12 AND e.customer_id > $13))) < $14
            ORDER BY similarity DESC, customer_id
            LIMIT $15
         ),
         ranked AS (
            SELECT customer_id, max(score) AS score, (array_agg(matched_on ORDER BY score DESC))[1] AS matched_on
            FROM (SELECT * FROM exact UNION ALL SELECT * FROM fragments UNION ALL SELECT * FROM corrected
                  UNION ALL SELECT * FROM words) hits
            GROUP BY customer_id
         ),
         -- The page is chosen from ids and scores alone; only its rows are read in full.
         page AS (
            SELECT * FROM ranked r
            WHERE $12::float8 IS NULL OR r.score < $12 OR (r.score = $12 AND r.customer_id > $13)
            ORDER BY r.score DESC, r.customer_id
            LIMIT $14
         )
         SELECT r.score, r.matched_on, c.* FROM page r
         JOIN customers c ON c.organization_id = $1 AND c.customer_id = r.customer_id
         ORDER BY r.score DESC, r.customer_id",
            corrections = corrections()
        )
    });
    &SQL
}

/// The parameters of `search_sql`, in order.
pub fn search_params(
    organization_id: Uuid,
    query: &SearchQuery,
    filter: &SearchFilter,
    after: Option<(f64, Uuid)>,
    limit: i64,
) -> Params {
    let has_letters = query.text.chars().any(char::is_alphabetic);
    vec![
        Box::new(organization_id),
        Box::new(query.text.clone()),
        Box::new(has_letters),
        Box::new(query.email_fragment.clone()),
        Box::new(query.email_prefix.clone()),
        Box::new(query.phone_digits.clone()),
        Box::new(filter.status),
        Box::new(filter.customer_type),
        Box::new(filter.loyalty_tier),
        Box::new(filter.segment),
        Box::new(query.document.clone()),
        Box::new(after.map(|(score, _)| score)),
        Box::new(after.map(|(_, id)| id)),
        Box::new(limit),
        Box::new(CANDIDATES_PER_MATCH),
        Box::new(has_letters && query.fuzzy_name),
        Box::new(query.document_key.clone()),
    ]
}

/// Per-transaction settings of a search: plan each query for its own values (selectivity
/// swings from one phone to a name shared by thousands), match names from a word similarity
/// of 0.5, and never JIT-compile: the recursive phrase CTE's estimate crosses the JIT cost
/// threshold, and compiling costs ~50 ms on every query that runs in a few.
pub const SEARCH_SETTINGS_SQL: &str = "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), \
    set_config('pg_trgm.word_similarity_threshold', '0.5', true), set_config('jit', 'off', true)";

/// Ranked matches after `after` (the score and id of the previous page's last hit).
pub async fn search(
    tx: &TenantTx<'_>,
    query: &SearchQuery,
    filter: &SearchFilter,
    after: Option<(f64, Uuid)>,
    limit: i64,
) -> Result<Vec<SearchHit>, ApiError> {
    tx.execute(SEARCH_SETTINGS_SQL, &[]).await.context("tuning the search transaction")?;
    let params = search_params(tx.organization_id(), query, filter, after, limit);
    let rows = tx.query(search_sql(), &borrow_params(&params)).await.context("searching customers")?;
    Ok(rows
        .iter()
        .map(|row| SearchHit {
            score: row.get("score"),
            matched_on: row.get("matched_on"),
            customer: crate::customers::store::from_row(row),
        })
        .collect())
}

/// Deletes the words of `$2` that no posting of organization `$1` uses. A word is unused when it
/// has no first posting: the LIMIT makes that one index probe (which `NOT EXISTS` would not: the
/// planner drops an EXISTS's LIMIT, and its anti-join collected every posting of a common word in
/// a bitmap, 74,000 for "juan" among a million customers).
pub const FORGET_UNUSED_NAME_WORDS_SQL: &str =
    "DELETE FROM name_words n WHERE n.organization_id = $1 AND n.word = ANY($2) \
     AND (SELECT p.customer_id FROM name_word_postings p \
          WHERE p.organization_id = n.organization_id AND p.word = n.word LIMIT 1) IS NULL";

/// Forgets name words no customer of the organization uses any more (after an erasure or a
/// rename), so the search vocabulary keeps no trace of a former name. The words are locked
/// first and checked in a later statement, whose snapshot includes every insert that relied
/// on them (inserts lock the words they use): a word a concurrent insert needs is never lost.
pub async fn forget_unused_name_words(tx: &TenantTx<'_>, words: &[String]) -> Result<(), ApiError> {
    if words.is_empty() {
        return Ok(());
    }
    tx.execute(
        "SELECT 1 FROM name_words WHERE organization_id = $1 AND word = ANY($2) ORDER BY word FOR UPDATE",
        &[&tx.organization_id(), &words],
    )
    .await
    .context("locking former name words")?;
    tx.execute(FORGET_UNUSED_NAME_WORDS_SQL, &[&tx.organization_id(), &words])
        .await
        .context("pruning the name vocabulary")?;
    Ok(())
}
