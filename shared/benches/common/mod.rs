//! What the benchmarks share: the admin connection that creates and seeds their database, a
//! seeded random source, percentiles, the timed loop of N callers, the order paths take turns
//! in, and the conditions a run prints first. Each bench uses part of it; `credit` holds the
//! reservation workload.
#![allow(dead_code)]

pub mod credit;

use std::future::Future;
use std::time::{Duration, Instant};

/// The admin (owner) settings for `database`, from `ADMIN_DATABASE_URL`.
pub fn admin_config(database: &str) -> tokio_postgres::Config {
    let url =
        std::env::var("ADMIN_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut config: tokio_postgres::Config = url.parse().expect("ADMIN_DATABASE_URL parses");
    config.dbname(database);
    config
}

/// A connection as the owner to `database`.
pub async fn admin(database: &str) -> tokio_postgres::Client {
    let (client, connection) = admin_config(database).connect(tokio_postgres::NoTls).await.expect("PostgreSQL answers");
    tokio::spawn(connection);
    client
}

/// The runtime role's settings for `database`.
pub fn runtime_config(database: &str) -> tokio_postgres::Config {
    let mut config = admin_config(database);
    config.user("customer_app");
    config
}

/// [`runtime_config`] as the `DATABASE_URL` of a process the bench starts (a function, the
/// server): host, port, role, database and password, without TLS on loopback.
pub fn runtime_url(database: &str) -> String {
    let config = runtime_config(database);
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut url = format!("host={host} port={port} user=customer_app dbname={database} sslmode=disable");
    if let Some(password) = config.get_password() {
        url += &format!(" password={}", String::from_utf8_lossy(password));
    }
    url
}

/// A small deterministic random source, so runs draw the same workload.
pub struct Xorshift(pub u64);

impl Xorshift {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The order in which `paths` paths run in round `round`: each goes first in turn, so a warm
/// cache or the machine's drift favours none of them.
pub fn rotation(round: usize, paths: usize) -> impl Iterator<Item = usize> {
    (0..paths).map(move |i| (round + i) % paths)
}

/// The `q` quantile of `latencies` in milliseconds (0 when empty).
pub fn percentile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    latencies.sort_unstable();
    let index = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
    latencies.get(index).copied().unwrap_or_default().as_secs_f64() * 1e3
}

/// `BENCH_SECONDS` when set, else `default`.
pub fn bench_seconds(default: u64) -> u64 {
    std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The successful calls of one path, their latencies, failures, and the CPU a watched process
/// spent over the runs.
#[derive(Default)]
pub struct Cell {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub cpu: Duration,
    pub failures: usize,
}

impl Cell {
    pub fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&mut self, q: f64) -> f64 {
        percentile_ms(&mut self.latencies, q)
    }

    /// CPU of the watched process per successful call, in microseconds.
    pub fn cpu_micros_per_call(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.latencies.len().max(1) as f64
    }
}

/// User + system CPU time so far of the process `pid` (`"self"` for this one), from
/// `/proc/PID/stat` (Linux clock ticks, 10 ms each).
pub fn process_cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<u64>().ok()).sum();
    Duration::from_millis(ticks * 10)
}

/// Runs `clients` callers for `duration` and adds what they did to `cell`, with the CPU that
/// process `cpu_of` spent meanwhile. Each caller first gets its own state from `connect`
/// (a connection, a channel, or a handle on a shared pool), outside the timed window, then
/// calls `call(state, turn)` in a loop; `turn` differs between callers and calls.
pub async fn measure<S, C, CFut, F, Fut>(
    cell: &mut Cell,
    clients: usize,
    duration: Duration,
    cpu_of: &str,
    connect: C,
    call: F,
) where
    C: Fn() -> CFut,
    CFut: Future<Output = S>,
    S: Clone + Send + 'static,
    F: Fn(S, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let states = futures_util::future::join_all((0..clients).map(|_| connect())).await;
    let (started, cpu_before) = (Instant::now(), process_cpu(cpu_of));
    let deadline = started + duration;
    let seed = cell.latencies.len() + cell.failures;
    let tasks = states.into_iter().enumerate().map(|(client, state)| {
        let call = call.clone();
        tokio::spawn(async move {
            let (mut latencies, mut failures, mut turn) = (Vec::new(), 0, seed + client * 7919);
            while Instant::now() < deadline {
                let began = Instant::now();
                if call(state.clone(), turn).await {
                    latencies.push(began.elapsed());
                } else {
                    failures += 1;
                }
                turn += 1;
            }
            (latencies, failures)
        })
    });
    for (latencies, failures) in futures_util::future::join_all(tasks).await.into_iter().map(Result::unwrap) {
        cell.latencies.extend(latencies);
        cell.failures += failures;
    }
    cell.elapsed += started.elapsed();
    cell.cpu += process_cpu(cpu_of).saturating_sub(cpu_before);
}

/// Prints what a run's figures depend on, before them: the PostgreSQL settings that matter
/// (read through `client`), the commit, the CPUs, then `extra` (pool sizes, clients, durations).
pub async fn print_conditions(client: &tokio_postgres::Client, extra: &[(&str, String)]) {
    let names = [
        "server_version",
        "fsync",
        "synchronous_commit",
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "max_parallel_workers_per_gather",
        "jit",
        "max_connections",
    ];
    println!("conditions:");
    for name in names {
        let row = client.query_one("SELECT current_setting($1)", &[&name]).await.expect("PostgreSQL answers");
        println!("  postgresql {name}: {}", row.get::<_, String>(0));
    }
    println!("  commit: {}", git_commit());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|line| line.strip_prefix("model name")).unwrap_or(": unknown");
    println!(
        "  cpus: {cpus} ({}), shared by the database, the client and any server",
        model.trim_start_matches([':', ' ', '\t'])
    );
    for (name, value) in extra {
        println!("  {name}: {value}");
    }
    println!();
}

/// The checked-out commit, marked when the work tree has changes.
fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match (git(&["rev-parse", "--short", "HEAD"]), git(&["status", "--porcelain", "--untracked-files=no"])) {
        (Some(commit), Some(changes)) if !changes.is_empty() => format!("{commit} with uncommitted changes"),
        (Some(commit), _) => commit,
        (None, _) => "unknown (no git)".into(),
    }
}
