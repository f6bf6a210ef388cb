//! Customer search benchmark over 1,000,000 customers of one organization: p50/p95/p99 per kind
//! of query through the search router in process, next to the same SQL and parameters run
//! directly with tokio-postgres.
//!
//! The probes are customers drawn uniformly from the whole table. Each path runs every probe in
//! an order of its own (shuffled), the two paths taking turns step by step (each first in turn),
//! so neither runs a query the other has just warmed. Two passes: the first touches each
//! probe's pages for the first time in the run, the second repeats the probes (reshuffled); each
//! prints its shared-buffer hit ratio. Pages are the default size (50); one kind asks for the
//! second page of a common surname.
//!
//! Run with `make bench-search` (`BENCH_QUERIES` per kind, default 200; `BENCH_DATABASE=name`
//! keeps the seeded database for the next run).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Method, Request, StatusCode};
use shared::auth::{issue_hs256_token, TokenVerifier};
use shared::config::{AuthConfig, TokenKeys};
use shared::db::{ConnectOptions, Db};
use shared::http::AppState;
use shared::paging::PageRequest;
use shared::search::query::SearchQuery;
use shared::search::SearchFilter;
use tower::ServiceExt;
use uuid::Uuid;

mod common;
use common::{admin, admin_config, percentile_ms, print_conditions, rotation, runtime_config, Xorshift};

const SECRET: &str = "bench-secret";
const CUSTOMERS: i32 = 1_000_000;

/// Common Panamanian first names and surnames; the seed draws them with a Zipf-like skew, so
/// the first few are very common and the tail is rare, as in a real population.
const FIRST_NAMES: &str = "María,José,Juan,Luis,Carlos,Ana,Jorge,Rosa,Carmen,Pedro,Luz,Manuel,Francisco,Ricardo,Gloria,\
Miguel,Elena,Antonio,Isabel,Roberto,Marta,Fernando,Teresa,Raúl,Julia,Eduardo,Silvia,Alberto,Patricia,Andrés,Gabriela,Diego,\
Daniela,Alejandro,Mariana,Héctor,Paola,Óscar,Natalia,Camila,Iván,Verónica,Rubén,Adriana,Sergio,Claudia,Liliana,Javier,\
Lorena,Rafael,Yolanda,Edgar,Itzel,Abdiel,Yariela,Eyra,Aníbal,Maribel,Ramiro,Nayeli,Omar,Zuleika,Rogelio,Anabel,Ezequiel,\
Yamileth,Gilberto,Marisol,Baltasar,Xiomara,Domingo,Griselda,Efraín,Odalys,Fulvio,Itzayana,Lisandro,Nuria,Ulises,Damaris,\
Temístocles,Yaritza,Belisario,Kathia,Eustorgio,Anayansi,Ariel,Dayana,Ismael,Keila,Nelson,Massiel,Porfirio,Rosalba,Tomás,Vielka,\
Amado,Iraida";
const SURNAMES: &str = "González,Rodríguez,Pérez,Sánchez,Martínez,Hernández,López,Castillo,Jiménez,Vargas,Moreno,Díaz,\
Ríos,Castro,Herrera,Morales,Gómez,Batista,Quintero,Samaniego,Arosemena,De León,Saldaña,Núñez,Chávez,Ruiz,Torres,Flores,Rivera,\
Cruz,Reyes,Gutiérrez,Ortiz,Ramos,Romero,Medina,Aguilar,Mendoza,Muñoz,Guerrero,Delgado,Vásquez,Espinosa,Barrios,Cedeño,\
Pinzón,Villarreal,Caballero,Tejeira,Urriola,Montenegro,Arias,Guardia,Chiari,Fábrega,Ábrego,Solís,Camargo,Araúz,Bonilla,Polanco,\
Valdés,Julio,Santamaría,Atencio,Murillo,Sáenz,Arcia,Bernal,Cárdenas,Franco,Gil,Ho,Chen,Wong,Lee,Chang,Alvarado,Navarro,Ibarra,\
Escobar,Sandoval,Córdoba,Zambrano,Lasso,Moscoso,Tuñón,Vallarino,Boyd,Duque,Lombardo,Obaldía,Pitti,Quirós,Sucre,Varela,Yau,Zúñiga";

/// One organization with a million customers, inserted in chunks with progress.
async fn seed(database: &str, organization: Uuid) {
    admin("postgres").await.batch_execute(&format!("CREATE DATABASE {database}")).await.unwrap();
    shared::migrations::run(&admin_config(database).into()).await.unwrap();
    let client = admin(database).await;
    client.execute("INSERT INTO organizations (organization_id) VALUES ($1)", &[&organization]).await.unwrap();
    let chunk = 100_000;
    for start in (0..CUSTOMERS).step_by(chunk as usize) {
        let started = Instant::now();
        client
            .execute(
                "WITH f AS (SELECT string_to_array($3, ',') AS a), l AS (SELECT string_to_array($4, ',') AS a),
                 people AS (
                    SELECT g,
                           f.a[1 + floor(power(random(), 2) * array_length(f.a, 1))::int] AS first,
                           l.a[1 + floor(power(random(), 1.8) * array_length(l.a, 1))::int] ||
                           CASE WHEN random() < 0.4
                                THEN ' ' || l.a[1 + floor(power(random(), 1.8) * array_length(l.a, 1))::int]
                                ELSE '' END AS last
                    FROM generate_series($2::int, $2::int + $5 - 1) g, f, l)
                 INSERT INTO customers (customer_id, organization_id, first_name, last_name, email, phone,
                                        document_type, document_number)
                 SELECT gen_random_uuid(), $1, first, last,
                        lower(immutable_unaccent(replace(first, ' ', ''))) || '.' ||
                            lower(immutable_unaccent(replace(split_part(last, ' ', 1), ' ', ''))) || g || '@' ||
                            (ARRAY['gmail.com','hotmail.com','yahoo.com','correo.pa','cwpanama.net'])[1 + g % 5],
                        '+507' || (60000000 + g)::text,
                        'cedula', (1 + g % 9) || '-' || (100 + g % 900) || '-' || g
                 FROM people",
                &[&organization, &start, &FIRST_NAMES, &SURNAMES, &chunk],
            )
            .await
            .unwrap();
        println!("  {} customers ({:.1?})", start + chunk, started.elapsed());
    }
    // As autovacuum would after the load: hint bits set and the visibility map current, so
    // index-only scans stay index-only.
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
}

/// Removes one letter from the longest word: a small typo.
fn with_typo(name: &str) -> String {
    let words: Vec<&str> = name.split(' ').collect();
    let longest = words.iter().enumerate().max_by_key(|(_, w)| w.chars().count()).map(|(i, _)| i).unwrap_or(0);
    words
        .iter()
        .enumerate()
        .map(|(i, word)| {
            if i == longest && word.chars().count() > 3 {
                let cut = word.chars().count() / 2;
                word.chars().enumerate().filter(|(j, _)| *j != cut).map(|(_, c)| c).collect()
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kinds of query, in the order the table lists them.
const KINDS: [&str; 9] = [
    "name (first + last)",
    "two-word name with a typo",
    "one word (surname)",
    "two words, reversed",
    "email prefix",
    "email fragment",
    "phone (6123-4567)",
    "document",
    "one word (surname), second page",
];
const SECOND_PAGE: usize = 8;

/// One query: its kind (an index into [`KINDS`]), its text, and for a second page the cursor
/// the first page answered.
#[derive(Clone)]
struct Probe {
    kind: usize,
    text: String,
    cursor: Option<String>,
}

/// `per_kind` customers drawn uniformly from the whole table (a seeded order, so runs draw the
/// same ones), made into queries of every kind.
async fn probes(database: &str, per_kind: i64) -> Vec<Probe> {
    let client = admin(database).await;
    client.execute("SELECT setseed(0.42)", &[]).await.unwrap();
    let rows = client
        .query(
            "SELECT first_name, last_name, email, phone, document_number FROM customers ORDER BY random() LIMIT $1",
            &[&per_kind],
        )
        .await
        .unwrap();
    let first_word = |name: &str| name.split(' ').next().unwrap_or_default().to_string();
    let mut probes = Vec::new();
    for row in &rows {
        let (first, last, email, phone, document): (&str, &str, &str, &str, &str) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        let local = email.split('@').next().unwrap();
        let texts = [
            format!("{} {}", first_word(first), first_word(last)),
            with_typo(&format!("{} {}", first_word(first), first_word(last))),
            first_word(last),
            format!("{} {}", first_word(last), first_word(first)),
            local.chars().take(8).collect(),
            local.chars().skip(2).take(8).collect(),
            format!("{}-{}", &phone[4..8], &phone[8..]),
            document.to_string(),
            first_word(last),
        ];
        probes.extend(texts.into_iter().enumerate().map(|(kind, text)| Probe { kind, text, cursor: None }));
    }
    probes
}

fn search_uri(probe: &Probe) -> String {
    let encoded: String = form_urlencoded::byte_serialize(probe.text.as_bytes()).collect();
    match &probe.cursor {
        Some(cursor) => format!("/api/v1/customers/search?q={encoded}&cursor={cursor}"),
        None => format!("/api/v1/customers/search?q={encoded}"),
    }
}

async fn through_service(router: &axum::Router, token: &str, probe: &Probe) -> (Duration, serde_json::Value) {
    let request = Request::builder()
        .method(Method::GET)
        .uri(search_uri(probe))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", probe.text);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let elapsed = started.elapsed();
    (elapsed, serde_json::from_slice(&body).unwrap())
}

/// The statements the floor runs, prepared once as the service's pool caches them.
struct Prepared {
    set_tenant: tokio_postgres::Statement,
    settings: tokio_postgres::Statement,
    search: tokio_postgres::Statement,
}

/// The service's transaction for `probe`, straight on tokio-postgres: the default page (or the
/// page after the probe's cursor), the same SQL and parameters.
async fn direct(
    client: &mut tokio_postgres::Client,
    prepared: &Prepared,
    organization: Uuid,
    probe: &Probe,
) -> Duration {
    let parsed = SearchQuery::parse(&probe.text).unwrap();
    let page = PageRequest::parse(None, probe.cursor.as_deref()).unwrap();
    let started = Instant::now();
    let tx = client.transaction().await.unwrap();
    tx.execute(&prepared.set_tenant, &[&organization.to_string()]).await.unwrap();
    tx.execute(&prepared.settings, &[]).await.unwrap();
    let (after, limit) = (page.after_score().unwrap(), page.fetch_limit());
    let params = shared::search::store::search_params(organization, &parsed, &SearchFilter::default(), after, limit);
    tx.query(&prepared.search, &shared::db::borrow_params(&params)).await.unwrap();
    tx.commit().await.unwrap();
    started.elapsed()
}

/// Blocks read and found in shared buffers in `database` so far, as the statistics have them.
async fn buffer_reads(client: &tokio_postgres::Client) -> (i64, i64) {
    // Backends flush their counters at most once a second.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = client
        .query_one("SELECT blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()", &[])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let per_kind: i64 = std::env::var("BENCH_QUERIES").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    // BENCH_DATABASE keeps the seeded database for the next run (seeded if it is missing).
    let kept = std::env::var("BENCH_DATABASE").ok();
    let database = kept.clone().unwrap_or_else(|| format!("cs_bench_{}", Uuid::new_v4().simple()));
    let existing = admin("postgres")
        .await
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .unwrap()
        .is_some();
    let organization = if existing {
        println!("using the seeded database {database}");
        admin(&database).await.query_one("SELECT organization_id FROM organizations", &[]).await.unwrap().get(0)
    } else {
        let organization = Uuid::new_v4();
        println!("seeding {CUSTOMERS} customers in {database} (a few minutes) ...");
        let started = Instant::now();
        seed(&database, organization).await;
        println!("seeded in {:.0?}", started.elapsed());
        organization
    };

    let runtime_config = runtime_config(&database);
    let auth = AuthConfig {
        keys: TokenKeys::Hs256Secret(SECRET.into()),
        organization_claim: "org_id".into(),
        audience: None,
        issuer: None,
    };
    let db = Db::from_config(runtime_config.clone(), 1).unwrap();
    let router = shared::search::routes::router(AppState {
        app: shared::app::App::new(db),
        verifier: Arc::new(TokenVerifier::new(&auth).await.unwrap()),
    });
    let token =
        issue_hs256_token(SECRET, organization, "bench", &["customers:read"], Duration::from_secs(3600)).unwrap();
    let mut client = ConnectOptions::from(runtime_config).connect().await.unwrap();
    let prepared = Prepared {
        set_tenant: client.prepare(shared::db::SET_TENANT_SQL).await.unwrap(),
        settings: client.prepare(shared::search::store::SEARCH_SETTINGS_SQL).await.unwrap(),
        search: client.prepare(shared::search::store::search_sql()).await.unwrap(),
    };
    let owner = admin(&database).await;
    let customers: i64 = owner.query_one("SELECT count(*) FROM customers", &[]).await.unwrap().get(0);
    print_conditions(
        &owner,
        &[
            ("customers", format!("{customers} in one organization")),
            ("probes", format!("{per_kind} customers drawn uniformly (ORDER BY random(), seeded) per kind")),
            ("clients", "1 per path; service pool 1 connection, direct 1 connection".into()),
            ("page", "the default (50); the second-page kind follows the first page's cursor".into()),
            ("order", "each path its own shuffle; the paths take turns step by step, each first in turn".into()),
        ],
    )
    .await;

    let mut probes = probes(&database, per_kind).await;
    // The second pages' cursors, asked once before the timed passes.
    for probe in probes.iter_mut().filter(|probe| probe.kind == SECOND_PAGE) {
        let (_, first_page) = through_service(&router, &token, probe).await;
        probe.cursor = first_page["next_cursor"].as_str().map(str::to_owned);
    }
    probes.retain(|probe| probe.kind != SECOND_PAGE || probe.cursor.is_some());

    let mut random = Xorshift(0x2545_F491_4F6C_DD1D);
    for pass in ["first touch", "repeat"] {
        let (mut for_service, mut for_direct) = (probes.clone(), probes.clone());
        random.shuffle(&mut for_service);
        random.shuffle(&mut for_direct);
        let mut latencies = vec![(Vec::new(), Vec::new()); KINDS.len()];
        let (read_before, hit_before) = buffer_reads(&owner).await;
        for (step, (mine, theirs)) in for_service.iter().zip(&for_direct).enumerate() {
            for path in rotation(step, 2) {
                if path == 0 {
                    latencies[mine.kind].0.push(through_service(&router, &token, mine).await.0);
                } else {
                    latencies[theirs.kind].1.push(direct(&mut client, &prepared, organization, theirs).await);
                }
            }
        }
        let (read_after, hit_after) = buffer_reads(&owner).await;
        let (read, hit) = (read_after - read_before, hit_after - hit_before);
        println!(
            "\n{pass}: shared-buffer hit ratio {:.1}% ({read} blocks read from the OS, {hit} found in shared buffers)\n",
            100.0 * hit as f64 / (read + hit).max(1) as f64
        );
        println!("| query | service p50 | p95 | p99 | direct p50 | p95 | p99 | service / direct (p95) |");
        println!("|---|---|---|---|---|---|---|---|");
        for (kind, (service, floor)) in latencies.iter_mut().enumerate() {
            let example = probes.iter().find(|probe| probe.kind == kind).map_or("", |probe| probe.text.as_str());
            let (s95, d95) = (percentile_ms(service, 0.95), percentile_ms(floor, 0.95));
            println!(
                "| {} (e.g. {example:?}, {} queries) | {:.1} ms | {s95:.1} ms | {:.1} ms | {:.1} ms | {d95:.1} ms | {:.1} ms | {:.2}x |",
                KINDS[kind],
                service.len(),
                percentile_ms(service, 0.50),
                percentile_ms(service, 0.99),
                percentile_ms(floor, 0.50),
                percentile_ms(floor, 0.99),
                s95 / d95
            );
        }
    }
    drop(owner);
    if kept.is_none() {
        admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
    }
}
