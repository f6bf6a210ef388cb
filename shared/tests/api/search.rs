use http::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::TestApp;

/// (key, first, last, email, phone, document type, document number)
type Person = (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str, &'static str);

const PEOPLE: &[Person] = &[
    ("jose", "José", "Pérez", "jose.perez@correo.pa", "6123-4567", "cedula", "8-123-456"),
    ("jose_luis", "José Luis", "Pérez Batista", "jlperez@empresa.com.pa", "6234-1111", "cedula", "8-765-4321"),
    ("maria_jose", "María José", "González de la Rosa", "mj.gonzalez@correo.pa", "6555-0101", "cedula", "PE-12-345"),
    ("maria_fernanda", "María Fernanda", "Núñez Saldaña", "mfnunez@gmail.com", "6777-2222", "passport", "PA1234567"),
    ("ramon", "Ramón", "Arosemena", "ramon.a@hotmail.com", "+507 223-4567", "cedula", "4-111-222"),
    ("andes", "Comercial", "Los Andes S.A.", "compras@losandes.com.pa", "+507 264-1000", "ruc", "155596713-2-2015"),
    ("inigo", "Íñigo", "Muñoz", "inigo.munoz@correo.es", "+34 612 345 678", "passport", "ESX123456"),
    ("ana_lucia", "Ana Lucía", "Samaniego", "ana.samaniego@correo.pa", "6000-1234", "cedula", "3-456-789"),
    ("luz_maria", "Luz María", "Quintero De León", "luzmaria@gmail.com", "6111-0000", "cedula", "9-876-543"),
    ("oscar", "Óscar", "Chávez", "oscar.chavez@correo.pa", "6888-9999", "cedula", "E-8-12345"),
    ("hector", "Héctor", "Ríos", "hrios@empresa.com.pa", "6999-1234", "cedula", "2-345-6789"),
    ("veronica", "Verónica", "Castillo", "vero.castillo@yahoo.com", "6444-5555", "cedula", "7-12-345"),
    ("juan_carlos", "Juan Carlos", "Rodríguez", "jc.rodriguez@correo.pa", "6321-7654", "cedula", "5-55-555"),
    ("juana", "Juana", "Rodríguez", "juana.r@correo.pa", "6321-7655", "cedula", "5-55-556"),
];

/// Near-namesakes that a careless search would rank first.
const DISTRACTORS: &[(&str, &str)] = &[
    ("Josefina", "Peralta"),
    ("Juan", "Pérez"),
    ("María", "Gómez"),
    ("Ana", "López"),
    ("Luis", "Batista"),
    ("Rosa", "González"),
    ("Carlos", "Rodríguez"),
    ("Lucía", "Samudio"),
    ("Ramiro", "Arosemena Díaz"),
    ("Oscar", "Chen"),
    ("Hernán", "Ríos"),
    ("Vera", "Castro"),
    ("Juan", "Rodas"),
    ("Marta", "Núñez"),
    ("José", "Pereira"),
    ("María", "Rosas"),
    ("Luz", "Quintana"),
    ("Iñaki", "Muñiz"),
    ("Andrés", "Los Santos"),
];

async fn seed(app: &TestApp) -> std::collections::HashMap<&'static str, Uuid> {
    let mut ids = std::collections::HashMap::new();
    for (key, first, last, email, phone, document_type, number) in PEOPLE {
        let body = json!({"first_name": first, "last_name": last, "email": email, "phone": phone,
                          "document_type": document_type, "document_number": number,
                          "customer_type": if *key == "andes" { "b2b" } else { "b2c" }});
        ids.insert(*key, app.create_customer(app.org_a, body).await);
    }
    for (i, (first, last)) in DISTRACTORS.iter().enumerate() {
        let body = json!({"first_name": first, "last_name": last, "email": format!("otro{i}@correo.pa"),
                          "phone": format!("6700-{:04}", i), "document_type": "cedula", "document_number": format!("6-60-{i}")});
        app.create_customer(app.org_a, body).await;
    }
    ids
}

async fn search(app: &TestApp, organization: Uuid, query: &str) -> Value {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let response = app.as_org(organization, Method::GET, &format!("/api/v1/customers/search?q={encoded}"), None).await;
    assert_eq!(response.status, StatusCode::OK, "{query:?}: {}", response.body);
    response.body
}

fn ids(body: &Value) -> Vec<Uuid> {
    body["items"].as_array().unwrap().iter().map(|hit| hit["customer_id"].as_str().unwrap().parse().unwrap()).collect()
}

#[tokio::test]
async fn support_staff_find_the_customer_they_mean_in_the_top_three() {
    let app = TestApp::spawn().await;
    let people = seed(&app).await;
    let cases: &[(&str, &str)] = &[
        ("jose perez", "jose"),
        ("José Pérez", "jose"),
        ("JOSE PEREZ", "jose"),
        ("perez jose", "jose"),
        ("jose peres", "jose"),
        ("jose prez", "jose"),
        ("jose luis perez batista", "jose_luis"),
        ("perez batista", "jose_luis"),
        ("maria jose gonzalez", "maria_jose"),
        ("gonzalez de la rosa", "maria_jose"),
        ("maria gonzales", "maria_jose"),
        ("nunez saldana", "maria_fernanda"),
        ("María Fernanda", "maria_fernanda"),
        ("ramon arosemena", "ramon"),
        ("arosemena", "ramon"),
        ("los andes", "andes"),
        ("inigo munoz", "inigo"),
        ("Íñigo", "inigo"),
        ("ana lucia", "ana_lucia"),
        ("samaniego", "ana_lucia"),
        ("luz maria quintero", "luz_maria"),
        ("quintero de leon", "luz_maria"),
        ("oscar chavez", "oscar"),
        ("hector rios", "hector"),
        ("veronica castilo", "veronica"),
        ("juan carlos rodriguez", "juan_carlos"),
        ("juana rodriguez", "juana"),
        ("6123-4567", "jose"),
        ("+507 6123 4567", "jose"),
        ("61234567", "jose"),
        ("(507) 6123-4567", "jose"),
        ("223-4567", "ramon"),
        ("+34 612 345 678", "inigo"),
        ("8-123-456", "jose"),
        (" pe-12-345 ", "maria_jose"),
        ("PA1234567", "maria_fernanda"),
        ("155596713-2-2015", "andes"),
        ("E-8-12345", "oscar"),
        ("jose.perez@correo.pa", "jose"),
        ("JOSE.PEREZ@", "jose"),
        ("mfnunez", "maria_fernanda"),
        ("@losandes.com.pa", "andes"),
        ("hrios", "hector"),
        ("vero.cast", "veronica"),
        ("rios hector", "hector"),
        ("chavez oscar", "oscar"),
        ("rodriguez juana", "juana"),
        ("astillo@ya", "veronica"),
        ("nunez@gm", "maria_fernanda"),
        ("losandes", "andes"),
        ("samaniego@correo", "ana_lucia"),
    ];
    let mut misses = Vec::new();
    for (query, expected) in cases {
        let found = ids(&search(&app, app.org_a, query).await);
        if !found.iter().take(3).any(|id| *id == people[expected]) {
            misses.push(format!("{query:?} -> {expected} not in the top 3"));
        }
    }
    assert!(misses.is_empty(), "{} of {} queries missed:\n{}", misses.len(), cases.len(), misses.join("\n"));
}

#[tokio::test]
async fn an_exact_document_ranks_first_and_says_what_matched() {
    let app = TestApp::spawn().await;
    let people = seed(&app).await;
    let body = search(&app, app.org_a, "8-123-456").await;
    assert_eq!(ids(&body)[0], people["jose"]);
    assert_eq!(body["items"][0]["matched_on"], "document");
    assert_eq!(body["items"][0]["first_name"], "José");
    let body = search(&app, app.org_a, "6123-4567").await;
    assert_eq!((ids(&body)[0], body["items"][0]["matched_on"].as_str()), (people["jose"], Some("phone")));
}

#[tokio::test]
async fn a_document_typed_with_spaces_or_without_separators_finds_it_below_an_exact_match() {
    let app = TestApp::spawn().await;
    let dashed = app
        .create_customer(
            app.org_a,
            json!({"first_name": "Elena", "last_name": "Guardia", "document_type": "cedula", "document_number": "8-823-1456"}),
        )
        .await;
    let plain = app
        .create_customer(
            app.org_a,
            json!({"first_name": "Tomás", "last_name": "Vallarino", "document_type": "passport", "document_number": "88231456"}),
        )
        .await;
    let hits = |body: &Value| -> Vec<(Uuid, String)> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| (hit["customer_id"].as_str().unwrap().parse().unwrap(), hit["matched_on"].to_string()))
            .collect()
    };
    let document = "\"document\"".to_string();
    for (typed, exact, other) in
        [("8-823-1456", dashed, plain), ("8 823 1456", plain, dashed), ("88231456", plain, dashed)]
    {
        let body = search(&app, app.org_a, typed).await;
        assert_eq!(hits(&body), vec![(exact, document.clone()), (other, document.clone())], "{typed:?}: {body}");
        let scores: Vec<f64> =
            body["items"].as_array().unwrap().iter().map(|hit| hit["score"].as_f64().unwrap()).collect();
        assert!(scores[0] > scores[1], "{typed:?}: the exact document ranks strictly first: {scores:?}");
    }
}

#[tokio::test]
async fn filters_narrow_every_kind_of_match() {
    let app = TestApp::spawn().await;
    let people = seed(&app).await;
    app.as_org(
        app.org_a,
        Method::PATCH,
        &format!("/api/v1/customers/{}", people["juana"]),
        Some(json!({"status": "blocked"})),
    )
    .await;
    let path = "/api/v1/customers/search?q=rodriguez&status=blocked";
    let response = app.as_org(app.org_a, Method::GET, path, None).await;
    assert_eq!(ids(&response.body), vec![people["juana"]]);
    let companies =
        app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=andes&customer_type=b2b", None).await;
    assert_eq!(ids(&companies.body), vec![people["andes"]]);
    let nobody = app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=jose&segment=champions", None).await;
    assert_eq!(ids(&nobody.body), Vec::<Uuid>::new());
    let bad = app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=jose&segment=vip", None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let empty = app.as_org(app.org_a, Method::GET, "/api/v1/customers/search?q=%20%20", None).await;
    assert_eq!(empty.body["errors"][0]["field"], "q");
}

#[tokio::test]
async fn pages_of_a_ranked_search_follow_each_other_without_repeats() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let mut seen = Vec::new();
    let mut scores = Vec::new();
    let mut path = "/api/v1/customers/search?q=maria&limit=2".to_string();
    loop {
        let page = app.as_org(app.org_a, Method::GET, &path, None).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for hit in page.body["items"].as_array().unwrap() {
            seen.push(hit["customer_id"].as_str().unwrap().to_string());
            scores.push(hit["score"].as_f64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/customers/search?q=maria&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a customer appeared twice");
    assert!(seen.len() >= 4, "every María: {seen:?}");
    assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]), "ranked: {scores:?}");
}

#[tokio::test]
async fn searches_never_cross_organizations() {
    let app = TestApp::spawn().await;
    let people = seed(&app).await;
    let theirs = app
        .create_customer(app.org_b, json!({"first_name": "José", "last_name": "Pérez", "email": "jose.perez@correo.pa",
                                           "phone": "6123-4567", "document_type": "cedula", "document_number": "8-123-456"}))
        .await;
    for query in ["jose perez", "6123-4567", "8-123-456", "jose.perez@"] {
        let found = ids(&search(&app, app.org_a, query).await);
        assert!(!found.contains(&theirs), "{query}: organization B's customer leaked");
        assert_eq!(found[0], people["jose"]);
        assert_eq!(ids(&search(&app, app.org_b, query).await), vec![theirs], "{query}");
    }
    let only_a = search(&app, app.org_b, "samaniego").await;
    assert_eq!(ids(&only_a), Vec::<Uuid>::new());
}

#[tokio::test]
async fn injection_looking_input_answers_normally() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let long = "x".repeat(1024);
    for query in [
        "%",
        "_",
        "'",
        "\\",
        "%%%",
        "' OR 1=1 --",
        "a_b%c\\d",
        "jose'; DROP TABLE customers; --",
        &long,
        "😀",
        "José 😀",
        "🇵🇦 6123-4567",
        "\u{0}jose",
        "()",
        "+",
        "---",
    ] {
        let body = search(&app, app.org_a, query).await;
        if ["%", "_", "%%%", "\\"].contains(&query) {
            assert_eq!(ids(&body), Vec::<Uuid>::new(), "{query:?} must match literally, not everything");
        }
    }
    assert_eq!(app.count("customers").await as usize, PEOPLE.len() + DISTRACTORS.len());
}

/// 20,000 more customers of organization A ('Nombre7 Apellido7', cliente7@example.com, a phone
/// and a document each), analyzed: the planner then chooses as for a large organization.
async fn seed_many(app: &TestApp) {
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name, email, phone, \
                                    document_type, document_number) \
             SELECT gen_random_uuid(), $1, 'Nombre' || n, 'Apellido' || (n % 500), 'cliente' || n || '@example.com', \
                    '+507' || (62000000 + n), 'cedula', '8-' || n || '-1' \
             FROM generate_series(1, 20000) n",
            &[&app.org_a],
        )
        .await
        .unwrap();
    admin.batch_execute("ANALYZE").await.unwrap();
}

/// Under forced row-level security an index serves only leakproof conditions on plain columns;
/// anything else silently becomes a filter over the whole organization. Every range condition
/// of the search must therefore be an index condition, and no branch may scan customers.
#[tokio::test]
async fn every_kind_of_match_is_an_index_range_under_row_level_security() {
    use shared::search::{query::SearchQuery, store, SearchFilter};

    let app = TestApp::spawn().await;
    seed(&app).await;
    seed_many(&app).await;
    let mut connection = app.db.connection().await.unwrap();
    for typed in [
        "cliente123@ex",
        "ente123",
        "mendoza omar",
        "apellido7 nombre7",
        "apellido7",
        "6123-4567",
        "8-123-456",
        "8123456",
        "jose",
    ] {
        let tx = connection.begin(app.org_a).await.unwrap();
        tx.execute(store::SEARCH_SETTINGS_SQL, &[]).await.unwrap();
        let query = SearchQuery::parse(typed).unwrap();
        let params = store::search_params(app.org_a, &query, &SearchFilter::default(), None, 20);
        let params = shared::db::borrow_params(&params);
        let plan = tx.query(&format!("EXPLAIN {}", store::search_sql()), &params).await.unwrap();
        let plan: Vec<String> = plan.iter().map(|row| row.get(0)).collect();
        let filtered: Vec<&String> =
            plan.iter().filter(|line| line.contains("~>=~") && !line.contains("Index Cond")).collect();
        assert!(filtered.is_empty(), "{typed:?}: ranges evaluated as filters:\n{}", plan.join("\n"));
        // The vocabulary of distinct name words is the one table read whole, for typo matching.
        let scans: Vec<&String> =
            plan.iter().filter(|line| line.contains("Seq Scan on") && !line.contains("on name_words")).collect();
        assert!(scans.is_empty(), "{typed:?}: scans {scans:?}:\n{}", plan.join("\n"));
    }
}

/// Rows produced by every node of a JSON plan, loops included: the work a statement did.
fn plan_rows(node: &Value) -> f64 {
    let own = node["Actual Rows"].as_f64().unwrap_or(0.0) * node["Actual Loops"].as_f64().unwrap_or(1.0);
    own + node["Plans"].as_array().map_or(0.0, |children| children.iter().map(plan_rows).sum())
}

/// Each typed word may mean three vocabulary words; joining every combination grew 3x per word
/// (12 words: half a million phrases). The work must stay bounded whatever the length of `q`.
#[tokio::test]
async fn a_query_of_any_length_over_near_identical_names_does_bounded_work() {
    use shared::search::{query::SearchQuery, store, SearchFilter};

    let app = TestApp::spawn().await;
    for (i, first) in
        ["Ma", "Mae", "Mai", "Maa", "Mao", "Mau", "May", "Max", "Mar", "Mas", "Mal", "Man"].iter().enumerate()
    {
        app.create_customer(
            app.org_a,
            json!({"first_name": first, "last_name": "Ma", "email": format!("ma{i}@correo.pa")}),
        )
        .await;
    }
    let mut connection = app.db.connection().await.unwrap();
    for words in [8, 12, 20, 60] {
        let typed = vec!["ma"; words].join(" ");
        let tx = connection.begin(app.org_a).await.unwrap();
        tx.execute("SET LOCAL statement_timeout = '10s'", &[]).await.unwrap();
        tx.execute(store::SEARCH_SETTINGS_SQL, &[]).await.unwrap();
        let query = SearchQuery::parse(&typed).unwrap();
        let params = store::search_params(app.org_a, &query, &SearchFilter::default(), None, 20);
        let params = shared::db::borrow_params(&params);
        let explained = tx
            .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", store::search_sql()), &params)
            .await
            .unwrap_or_else(|error| panic!("{words} words: {error}"));
        let plan: Value = explained.get(0);
        let rows = plan_rows(&plan[0]["Plan"]);
        println!("{words} words: {rows} plan rows, {} ms", plan[0]["Execution Time"]);
        assert!(rows < 20_000.0, "{words} words made the search produce {rows} rows");
        tx.commit().await.unwrap();
        let body = search(&app, app.org_a, &typed).await;
        assert!(!ids(&body).is_empty(), "{words} words still find the names that begin so");
    }
}

/// The search tables follow names and emails. An update that changes neither (a purchase's
/// last_purchase_at, a loyalty tier) must not touch them, and a changed email must find its old
/// suffixes by index: the old triggers read every suffix of the organization on every update.
#[tokio::test]
async fn an_update_reads_the_search_tables_only_for_a_changed_name_or_email_and_by_index() {
    let app = TestApp::spawn().await;
    seed_many(&app).await;
    let mut connection = app.db.connection().await.unwrap();
    let tx = connection.begin(app.org_a).await.unwrap();
    let id: Uuid = tx
        .query_one("SELECT customer_id FROM customers WHERE email = 'cliente7@example.com'", &[])
        .await
        .unwrap()
        .get(0);

    tx.execute("UPDATE customers SET last_purchase_at = now(), loyalty_tier = 'gold' WHERE customer_id = $1", &[&id])
        .await
        .unwrap();
    tx.execute("UPDATE customers SET email = email, first_name = first_name WHERE customer_id = $1", &[&id])
        .await
        .unwrap();
    let untouched = search_table_work(&tx).await;
    assert!(untouched.iter().all(|(_, seq, idx, ins, del)| seq + idx + ins + del == 0), "{untouched:?}");

    tx.execute(
        "UPDATE customers SET email = 'nuevo7@example.org', first_name = 'Zebulon' WHERE customer_id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let moved = search_table_work(&tx).await;
    let suffixes = &moved[0];
    assert_eq!(suffixes.0, "email_suffixes");
    assert_eq!(suffixes.1, 0, "old suffixes found without reading the table: {moved:?}");
    assert!(suffixes.3 > 0 && suffixes.4 > 0, "the suffixes were replaced: {moved:?}");
    let found = texts(&tx, "SELECT suffix FROM email_suffixes WHERE customer_id = $1 ORDER BY suffix", &id).await;
    assert!(found.contains(&"uevo7@example.org".to_string()) && !found.iter().any(|s| s.contains("cliente7")));
    let words = texts(&tx, "SELECT word FROM name_word_postings WHERE customer_id = $1 ORDER BY word", &id).await;
    assert_eq!(words, ["apellido7", "zebulon"]);
}

/// What this transaction did to each search table, by name: sequential scans, index scans, rows
/// inserted, rows deleted.
async fn search_table_work(tx: &shared::db::TenantTx<'_>) -> Vec<(String, i64, i64, i64, i64)> {
    tx.query(
        "SELECT relname::text, seq_scan, coalesce(idx_scan, 0), n_tup_ins, n_tup_del \
         FROM pg_stat_xact_user_tables \
         WHERE relname IN ('email_suffixes', 'name_word_postings', 'name_words') ORDER BY 1",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

/// The first column of each row `sql` answers for its one parameter.
async fn texts(
    tx: &shared::db::TenantTx<'_>,
    sql: &str,
    param: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Vec<String> {
    tx.query(sql, &[param]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

/// After an erasure or a rename, each former word is checked for one posting, not all of them:
/// a common word has tens of thousands. Unused words still go.
#[tokio::test]
async fn forgetting_a_former_name_probes_one_posting_per_word() {
    use shared::search::store;

    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    admin
        .execute(
            "INSERT INTO customers (customer_id, organization_id, first_name, last_name) \
             SELECT gen_random_uuid(), $1, 'Nombre' || n, 'Comun' FROM generate_series(1, 20000) n",
            &[&app.org_a],
        )
        .await
        .unwrap();
    admin
        .execute("INSERT INTO name_words (organization_id, word) VALUES ($1, 'olvidada')", &[&app.org_a])
        .await
        .unwrap();
    admin.batch_execute("ANALYZE").await.unwrap();
    let mut connection = app.db.connection().await.unwrap();
    let tx = connection.begin(app.org_a).await.unwrap();
    let words = vec!["comun".to_string(), "nombre7".to_string(), "olvidada".to_string()];
    let explained = tx
        .query_one(
            &format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", store::FORGET_UNUSED_NAME_WORDS_SQL),
            &[&app.org_a, &words],
        )
        .await
        .unwrap();
    let plan: Value = explained.get(0);
    let rows = plan_rows(&plan[0]["Plan"]);
    assert!(rows < 100.0, "the prune produced {rows} plan rows:\n{plan:#}");
    let kept = texts(&tx, "SELECT word FROM name_words WHERE word = ANY($1) ORDER BY word", &words).await;
    assert_eq!(kept, ["comun", "nombre7"]);
}
