//! `devctl`: local operations for `make dev` and deploy steps.
//!
//! - `migrate` applies `migrations/` as the owning role (idempotent).
//! - `seed-demo` creates a demo organization's customers through the same operations the API uses.
//! - `token` prints an HS256 token for local calls.
//! - `queues` creates the SPEC's local queues on the emulator and prints their URLs.
//! - `send-inbound` sends the message bodies of an example SQS event to `customers-inbound`.
//! - `event-sources` plays AWS's part for `cargo lambda watch`: the SQS event source mapping
//!   of `customers-inbound` and the schedules of the relay and the overdue job.
//! - `generate` loads a realistic population of customers and purchases (see [`generate`]).
//! - `bench-report` writes `BENCHMARKS.md` and its charts from `make bench`'s outputs.

mod event_sources;
mod generate;
mod report;
#[cfg(test)]
mod tests;

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shared::auth::Scope;
use shared::db::ConnectOptions;
use uuid::Uuid;

/// The demo organization `make dev` seeds and mints tokens for.
const DEMO_ORGANIZATION: Uuid = uuid::uuid!("00000000-0000-4000-8000-00000000d3e0");

/// Fixed ids of the demo customers, so the example events under `functions/events/events/`
/// name real customers (José Pérez first).
const DEMO_CUSTOMERS: [Uuid; 4] = [
    uuid::uuid!("00000000-0000-4000-8000-0000000c0001"),
    uuid::uuid!("00000000-0000-4000-8000-0000000c0002"),
    uuid::uuid!("00000000-0000-4000-8000-0000000c0003"),
    uuid::uuid!("00000000-0000-4000-8000-0000000c0004"),
];

#[derive(Parser)]
#[command(about = "Local operations of the customer service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations as the owning role.
    Migrate {
        #[arg(long, env = "ADMIN_DATABASE_URL")]
        admin_database_url: String,
        /// Database to migrate, created when missing (default: the URL's own database).
        #[arg(long)]
        database: Option<String>,
        /// Password to give the runtime role `customer_app` (servers without trust auth).
        #[arg(long, env = "APP_DATABASE_PASSWORD", hide_env_values = true)]
        app_password: Option<String>,
    },
    /// Seed the demo organization with a few customers (skips those already there).
    SeedDemo {
        /// Connection of the runtime role.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// Print a token for the demo organization with every scope.
    Token {
        #[arg(long, env = "JWT_HS256_SECRET")]
        secret: String,
        #[arg(long, default_value_t = DEMO_ORGANIZATION)]
        organization: Uuid,
        #[arg(long, default_value = "dev@example.com")]
        subject: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        hours: u64,
    },
    /// Create the local queues on the emulator; prints `NAME=url` lines for an env file.
    Queues {
        #[arg(long, env = "AWS_ENDPOINT_URL", default_value = local_aws::DEFAULT_EMULATOR_ENDPOINT)]
        endpoint: String,
    },
    /// Send the bodies of an SQS event file (e.g. `functions/events/events/tier-changed.json`)
    /// to the local `customers-inbound` queue.
    SendInbound {
        #[arg(long, env = "AWS_ENDPOINT_URL", default_value = local_aws::DEFAULT_EMULATOR_ENDPOINT)]
        endpoint: String,
        #[arg(long)]
        data_file: std::path::PathBuf,
    },
    /// Feed `customers-inbound` to the `events` function in batches and invoke the relay and
    /// the overdue job on timers, through `cargo lambda watch`'s invoke API.
    EventSources {
        #[arg(long, env = "AWS_ENDPOINT_URL", default_value = local_aws::DEFAULT_EMULATOR_ENDPOINT)]
        endpoint: String,
        /// Where `cargo lambda watch` serves.
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        functions: String,
        /// Seconds between outbox relay runs.
        #[arg(long, default_value_t = 10)]
        relay_every: u64,
    },
    /// Load organizations, customers and purchases as the events consumer would have written
    /// them (COPY as the owning role), for benchmarks and demos.
    Generate {
        #[arg(long, env = "ADMIN_DATABASE_URL")]
        admin_database_url: String,
        /// Database to load (migrated; default: the URL's own database).
        #[arg(long)]
        database: Option<String>,
        #[arg(long, default_value_t = 1)]
        organizations: usize,
        /// Customers over all organizations.
        #[arg(long)]
        customers: usize,
        /// Orders over all organizations.
        #[arg(long)]
        orders: usize,
        /// Purchases fall in the DAYS before `--until`.
        #[arg(long, default_value_t = 400)]
        days: u32,
        /// End of the purchases (RFC 3339 or YYYY-MM-DD, midnight UTC; default: now).
        #[arg(long, value_parser = parse_instant)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        /// Percent of orders cancelled after they completed.
        #[arg(long, default_value_t = 2.0)]
        cancelled_percent: f64,
        /// Give the organizations a segment window of this many days before `--until`, as a run
        /// leaves it, and the totals the consumer keeps once there is one (default: no run
        /// yet, no totals).
        #[arg(long)]
        kept_window_days: Option<u32>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write BENCHMARKS.md and its SVG charts from the outputs `make bench` kept.
    BenchReport {
        /// Directory of the benchmarks' outputs (`<name>.txt`).
        #[arg(long, default_value = ".local/bench")]
        results: std::path::PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: std::path::PathBuf,
        /// Directory of the charts, linked from the report.
        #[arg(long, default_value = "docs/benchmarks")]
        charts: std::path::PathBuf,
    },
    /// Print an HTTP function's OpenAPI document, as it serves it at `/api/v1/openapi.json`.
    Openapi {
        #[arg(long, value_parser = ["customers", "credit", "search", "segments"])]
        function: String,
    },
}

/// The date, the commit (marked when the work tree has changes) and the machine of a report.
fn provenance() -> report::Provenance {
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = match (
        run("git", &["rev-parse", "--short", "HEAD"]),
        run("git", &["status", "--porcelain", "--untracked-files=no"]),
    ) {
        (Some(commit), Some(changes)) if !changes.is_empty() => format!("{commit} (with uncommitted changes)"),
        (Some(commit), _) => commit,
        (None, _) => "unknown".into(),
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.split_once(':').filter(|(k, _)| k.trim() == "model name"));
    let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    report::Provenance {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit,
        machine: format!(
            "{cpus} CPUs ({}), {:.0} GiB of memory, Linux {}",
            model.map_or("unknown", |(_, name)| name.trim()),
            memory_kib as f64 / 1_048_576.0,
            run("uname", &["-r"]).unwrap_or_default()
        ),
    }
}

fn parse_instant(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(date) = text.parse::<chrono::NaiveDate>() {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight").and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(text).map(|t| t.to_utc()).map_err(|e| format!("{text}: {e}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Migrate { admin_database_url, database, app_password } => {
            let mut admin: ConnectOptions =
                admin_database_url.parse().context("ADMIN_DATABASE_URL is not a valid connection string")?;
            if let Some(database) = database {
                create_database_if_missing(&admin, &database).await?;
                admin.config.dbname(&database);
            }
            let applied = shared::migrations::run(&admin).await?;
            if let Some(password) = app_password {
                set_runtime_password(&admin, &password).await?;
            }
            if applied.is_empty() {
                println!("migrations: up to date");
            } else {
                for name in applied {
                    println!("migrations: applied {name}");
                }
            }
        }
        Command::SeedDemo { database_url } => seed_demo(&database_url).await?,
        Command::Token { secret, organization, subject, hours } => {
            let scopes: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
            let token = shared::auth::issue_hs256_token(
                &secret,
                organization,
                &subject,
                &scopes,
                Duration::from_secs(hours * 3600),
            )?;
            println!("{token}");
        }
        Command::Queues { endpoint } => {
            let sqs = aws_sdk_sqs::Client::new(&shared::aws::for_emulator(&endpoint).await);
            let queues = local_aws::create_queues(&sqs, "", Default::default()).await?;
            println!("INBOUND_QUEUE_URL={}", queues.inbound);
            println!("INBOUND_DLQ_URL={}", queues.inbound_dlq);
            println!("OUTBOX_QUEUE_URL={}", queues.outbound);
        }
        Command::Openapi { function } => {
            let api = match function.as_str() {
                "customers" => shared::customers::routes::api(),
                "credit" => shared::credit::routes::api(),
                "search" => shared::search::routes::api(),
                _ => shared::segments::routes::api(),
            };
            println!("{}", serde_json::to_string_pretty(&shared::http::function_document(api))?);
        }
        Command::BenchReport { results, out, charts } => {
            report::write(&results, &out, &charts, &provenance())?;
            println!("wrote {} and its charts under {}", out.display(), charts.display());
        }
        Command::SendInbound { endpoint, data_file } => event_sources::send_inbound(&endpoint, &data_file).await?,
        Command::EventSources { endpoint, functions, relay_every } => {
            event_sources::run(&endpoint, &functions, Duration::from_secs(relay_every)).await?
        }
        Command::Generate {
            admin_database_url,
            database,
            organizations,
            customers,
            orders,
            days,
            until,
            cancelled_percent,
            kept_window_days,
            seed,
        } => {
            let mut admin: ConnectOptions =
                admin_database_url.parse().context("ADMIN_DATABASE_URL is not a valid connection string")?;
            if let Some(database) = database {
                admin.config.dbname(&database);
            }
            let population = generate::Population {
                organizations,
                customers,
                orders,
                days,
                until: until.unwrap_or_else(chrono::Utc::now),
                cancelled_share: cancelled_percent / 100.0,
                kept_window_days,
                seed,
            };
            let progress = indicatif::ProgressBar::new(orders as u64).with_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} orders ({per_sec}, eta {eta}) {msg}",
                )?
                .progress_chars("=> "),
            );
            let started = std::time::Instant::now();
            let generated = generate::generate(&admin, &population, &progress).await?;
            progress.finish_and_clear();
            println!(
                "generated {} organizations, {} customers, {} purchases, {} totals rows in {:.1?}",
                generated.organizations.len(),
                generated.customers,
                generated.purchases,
                generated.totals,
                started.elapsed()
            );
        }
    }
    Ok(())
}

async fn admin_client(admin: &ConnectOptions) -> anyhow::Result<tokio_postgres::Client> {
    admin.connect().await.context("connecting to PostgreSQL as the admin role (check ADMIN_DATABASE_URL)")
}

async fn create_database_if_missing(admin: &ConnectOptions, database: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database names are letters, digits and underscores"
    );
    let client = admin_client(admin).await?;
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database]).await?.is_some();
    if !exists {
        client.batch_execute(&format!("CREATE DATABASE {database}")).await?;
        println!("database {database}: created");
    }
    Ok(())
}

/// Gives `customer_app` its password as a SCRAM-SHA-256 verifier computed here, so the
/// plaintext never reaches the server, its statement log or `pg_stat_activity`.
async fn set_runtime_password(admin: &ConnectOptions, password: &str) -> anyhow::Result<()> {
    let client = admin_client(admin).await?;
    client.batch_execute(&runtime_password_statement(password)).await.context("setting the runtime role's password")?;
    Ok(())
}

/// `ALTER ROLE customer_app PASSWORD '<verifier>'`, the verifier in PostgreSQL's form
/// `SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>` (RFC 5802 and 7677, random 16-byte salt),
/// which PostgreSQL stores as given.
fn runtime_password_statement(password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    // Base64, digits, `$` and `:` only: nothing in it needs quoting.
    format!("ALTER ROLE customer_app PASSWORD '{verifier}'")
}

async fn seed_demo(database_url: &str) -> anyhow::Result<()> {
    use shared::customers::model::CreateCustomerRequest;
    use shared::error::ApiError;

    let app = shared::app::App::new(shared::db::Db::connect(database_url, 1)?);
    let caller = shared::auth::Caller::service(DEMO_ORGANIZATION, "devctl");
    let people = serde_json::json!([
        {"first_name": "José", "last_name": "Pérez", "email": "jose.perez@example.com",
         "phone": "6123-4567", "document_type": "cedula", "document_number": "8-123-456"},
        {"first_name": "María", "last_name": "González de la Rosa", "email": "maria.gonzalez@example.com",
         "phone": "+507 6234 5678", "document_type": "cedula", "document_number": "PE-12-345"},
        {"first_name": "Comercial", "last_name": "Los Andes S.A.", "customer_type": "b2b",
         "email": "compras@losandes.example.com", "phone": "+507 223 4567",
         "document_type": "ruc", "document_number": "155596713-2-2015"},
        {"first_name": "Ana", "last_name": "Muñoz", "email": "ana.munoz@example.com",
         "document_type": "passport", "document_number": "PA1234567"}
    ]);
    let people: Vec<CreateCustomerRequest> = serde_json::from_value(people)?;
    let (mut created, mut present) = (0, 0);
    for (person, customer_id) in people.into_iter().zip(DEMO_CUSTOMERS) {
        let mut new = person.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        new.customer_id = customer_id;
        if shared::customers::get(&app, &caller, customer_id).await.is_ok() {
            present += 1;
            continue;
        }
        match shared::customers::create(&app, &caller, new).await {
            Ok(_) => created += 1,
            Err(ApiError::Duplicate(field)) => {
                println!("demo customer {customer_id}: skipped, its {field:?} belongs to another customer");
            }
            Err(other) => return Err(anyhow::anyhow!(other)).context("seeding a demo customer"),
        }
    }
    println!("demo organization {DEMO_ORGANIZATION}: {created} customers created, {present} already there");
    seed_demo_credit(&app, &caller, DEMO_CUSTOMERS[0]).await
}

/// An approved 5,000.00 credit account for the first demo customer (José), so the README's
/// credit calls work as printed.
async fn seed_demo_credit(
    app: &shared::app::App,
    caller: &shared::auth::Caller,
    customer_id: Uuid,
) -> anyhow::Result<()> {
    use shared::credit::model::NewAccount;
    use shared::error::ApiError;

    if shared::credit::get_account(app, caller, customer_id).await.is_ok() {
        return Ok(());
    }
    let limit = shared::money::Money::parse_positive("5000.00").map_err(anyhow::Error::msg)?;
    let opened =
        shared::credit::open(app, caller, customer_id, NewAccount { credit_limit: limit, payment_term_days: 30 });
    match opened.await {
        Ok(_) | Err(ApiError::Conflict { code: "credit_account_exists", .. }) => {}
        Err(ApiError::NotFound) => {
            println!("demo customer {customer_id} is not there: no demo credit account");
            return Ok(());
        }
        Err(other) => return Err(anyhow::anyhow!(other)).context("opening the demo credit account"),
    }
    shared::credit::approve(app, caller, customer_id, Some(limit)).await.map_err(|e| anyhow::anyhow!(e))?;
    println!("demo customer {customer_id}: credit account approved with a limit of {limit}");
    Ok(())
}
