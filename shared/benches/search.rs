//! Customer search benchmark over 1,000,000 customers of one organization: p50/p95 per kind of
//! query through the search router in process, next to the same SQL and parameters run
//! directly with tokio-postgres, alternating query by query.
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
use shared::search::query::SearchQuery;
use shared::search::SearchFilter;
use tokio_postgres::types::ToSql;
use tower::ServiceExt;
use uuid::Uuid;

mod common;
use common::{admin, admin_config, percentile_ms, runtime_config};

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

/// The queries of one kind, made from real seeded customers.
struct Workload {
    kind: &'static str,
    queries: Vec<String>,
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

async fn workloads(database: &str, per_kind: i64) -> Vec<Workload> {
    let rows = admin(database)
        .await
        .query(
            "SELECT first_name, last_name, email, phone, document_number FROM customers TABLESAMPLE SYSTEM (1) LIMIT $1",
            &[&per_kind],
        )
        .await
        .unwrap();
    let field = |i: usize| rows.iter().map(move |r| r.get::<_, String>(i));
    let first_word = |name: String| name.split(' ').next().unwrap_or_default().to_string();
    vec![
        Workload {
            kind: "name (first + last)",
            queries: field(0).zip(field(1)).map(|(f, l)| format!("{} {}", first_word(f), first_word(l))).collect(),
        },
        Workload {
            kind: "two-word name with a typo",
            queries: field(0)
                .zip(field(1))
                .map(|(f, l)| with_typo(&format!("{} {}", first_word(f), first_word(l))))
                .collect(),
        },
        Workload { kind: "one word (surname)", queries: field(1).map(first_word).collect() },
        Workload {
            kind: "two words, reversed",
            queries: field(0).zip(field(1)).map(|(f, l)| format!("{} {}", first_word(l), first_word(f))).collect(),
        },
        Workload {
            kind: "email prefix",
            queries: field(2).map(|e| e.split('@').next().unwrap().chars().take(8).collect()).collect(),
        },
        Workload {
            kind: "email fragment",
            queries: field(2).map(|e| e.split('@').next().unwrap().chars().skip(2).take(8).collect()).collect(),
        },
        Workload {
            kind: "phone (6123-4567)",
            queries: field(3).map(|p| format!("{}-{}", &p[4..8], &p[8..])).collect(),
        },
        Workload { kind: "document", queries: field(4).collect() },
    ]
}

async fn through_service(router: &axum::Router, token: &str, query: &str) -> Duration {
    let encoded: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("/api/v1/customers/search?q={encoded}&limit=20"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    started.elapsed()
}

/// The statements the floor runs, prepared once as the service's pool caches them.
struct Prepared {
    set_tenant: tokio_postgres::Statement,
    settings: tokio_postgres::Statement,
    search: tokio_postgres::Statement,
}

async fn direct(client: &mut tokio_postgres::Client, prepared: &Prepared, organization: Uuid, query: &str) -> Duration {
    let parsed = SearchQuery::parse(query).unwrap();
    let started = Instant::now();
    let tx = client.transaction().await.unwrap();
    tx.execute(&prepared.set_tenant, &[&organization.to_string()]).await.unwrap();
    tx.execute(&prepared.settings, &[]).await.unwrap();
    let params = shared::search::store::search_params(organization, &parsed, &SearchFilter::default(), None, 21);
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    tx.query(&prepared.search, &params).await.unwrap();
    tx.commit().await.unwrap();
    started.elapsed()
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

    println!("\n{per_kind} queries per kind, one client, service and direct taking turns query by query.\n");
    println!("| query | service p50 | p95 | direct p50 | p95 | service / direct (p95) |");
    println!("|---|---|---|---|---|---|");
    for mut workload in workloads(&database, per_kind).await {
        workload.queries.truncate(per_kind as usize);
        let (mut service, mut floor) = (Vec::new(), Vec::new());
        for (index, query) in workload.queries.iter().enumerate() {
            // Whoever runs a query first reads its pages from disk: take turns.
            if index % 2 == 0 {
                service.push(through_service(&router, &token, query).await);
                floor.push(direct(&mut client, &prepared, organization, query).await);
            } else {
                floor.push(direct(&mut client, &prepared, organization, query).await);
                service.push(through_service(&router, &token, query).await);
            }
        }
        let (s95, d95) = (percentile_ms(&mut service, 0.95), percentile_ms(&mut floor, 0.95));
        println!(
            "| {} (e.g. {:?}) | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}x |",
            workload.kind,
            workload.queries[0],
            percentile_ms(&mut service, 0.50),
            s95,
            percentile_ms(&mut floor, 0.50),
            d95,
            s95 / d95
        );
    }
    if kept.is_none() {
        admin("postgres").await.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.ok();
    }
}
