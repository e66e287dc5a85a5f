//! Extraction micro-benchmark (issue target: ≥ 50 000 messages/s on one thread).
//!
//!   cargo bench -p shared --bench extract            # prints the figures
//!   BENCH_OUT=bench/results/extract.json cargo bench -p shared --bench extract
//!   BENCH_MESSAGES=3000 valgrind --tool=callgrind target/release/deps/extract-…   # instructions per message
//!
//! Runs `extract` over a corpus of realistic lead messages (the reference's conversation corpus and
//! typical replies to each of Sofía's questions) for `BENCH_SECONDS` (default 3) on one thread and
//! reports messages per second and the per-message latency distribution.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shared::chat::engine::extract::{ExtractCtx, Field, extract};

const CORPUS: &[(&str, &[Field])] = &[
    ("Hola, me interesa un departamento de 2 dormitorios en Las Condes", &[]),
    ("Buenas, vi el anuncio en el portal", &[]),
    ("Hola quiero información", &[]),
    ("Buenas tardes, ¿tienen casas en Las Condes?", &[]),
    ("Necesito comprar un departamento urgente", &[]),
    ("Me llamo Juan Pérez", &[Field::Name]),
    ("Soy María González", &[Field::Name]),
    ("Carlos", &[Field::Name]),
    ("Mi número es +56912345678", &[Field::Phone]),
    ("Mi correo es juan@gmail.com", &[Field::Email]),
    ("mi-email@hotmail.com, teléfono +56911223344", &[Field::Email, Field::Phone]),
    ("vivo en ñuñoa pero busco en providencia", &[Field::Location]),
    ("Tengo presupuesto de 3000 UF", &[]),
    ("Mi sueldo es de $800.000", &[Field::MonthlyIncome]),
    ("Gano 1.500.000 mensuales", &[Field::MonthlyIncome]),
    ("Trabajo independiente, facturo 2 millones mensuales", &[Field::MonthlyIncome]),
    ("Quiero una propiedad de 5000 UF pero gano 600 mil", &[]),
    ("No tengo DICOM, estoy al día con todo", &[Field::Dicom]),
    ("Tengo una deuda pequeña de 50 mil pesos en una tienda", &[Field::Dicom]),
    ("No sé si tengo DICOM, nunca lo he revisado", &[Field::Dicom]),
    ("Tengo deuda de 2 millones en DICOM pero quiero comprar igual", &[Field::Dicom]),
    ("Quiero visitar el proyecto esta semana", &[]),
    ("¿Puedo ir el sábado?", &[Field::AppointmentChoice]),
    ("A las 10 del sábado me viene bien", &[Field::AppointmentChoice]),
    ("el segundo", &[Field::AppointmentChoice]),
    ("¿Cuánto es el pie mínimo?", &[]),
    ("me llamo Carlos Ruiz, mi cel es 912345678 y mi email carlos@test.cl, vivo en maipu y gano 1,2 millones", &[]),
    ("quiero hablar con una persona", &[]),
    ("sí", &[Field::Dicom]),
    ("800 lucas líquidas", &[Field::MonthlyIncome]),
];

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    // A fixed number of messages instead (for instruction counts under `valgrind --tool=callgrind`).
    let fixed: Option<u64> = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok());
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-12-01T15:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let offered: Vec<DateTime<Utc>> = (0..3).map(|i| now + chrono::Duration::hours(24 * (i + 1))).collect();
    // Warm-up.
    for (text, expecting) in CORPUS {
        black_box(extract(text, &ExtractCtx { now, expecting, offered_slots: &offered }));
    }
    let mut latencies_ns: Vec<u64> = Vec::with_capacity(1 << 20);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut n: u64 = 0;
    'outer: loop {
        for (text, expecting) in CORPUS {
            let t = Instant::now();
            black_box(extract(black_box(text), &ExtractCtx { now, expecting, offered_slots: &offered }));
            latencies_ns.push(t.elapsed().as_nanos() as u64);
            n += 1;
            let done = match fixed {
                Some(limit) => n >= limit,
                None => n.is_multiple_of(256) && Instant::now() > deadline,
            };
            if done {
                break 'outer;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let pct = |p: f64| latencies_ns[((latencies_ns.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    let rate = n as f64 / elapsed;
    let json = serde_json::json!({
        "scenario": "extract",
        "messages": n,
        "corpus_messages": CORPUS.len(),
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "messages_per_sec": rate.round(),
        "latency_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
        "threads": 1,
        "targets": {"messages_per_sec": {"target": ">= 50000 msgs/s", "actual": rate.round(), "pass": rate >= 50_000.0}},
        "timestamp": Utc::now().to_rfc3339(),
    });
    println!(
        "extract: {n} messages in {elapsed:.2} s = {rate:.0} msgs/s; p50 {:.1} µs, p99 {:.1} µs",
        pct(0.5),
        pct(0.99)
    );
    if let Ok(path) = std::env::var("BENCH_OUT") {
        if let Err(e) = std::fs::write(&path, format!("{json:#}\n")) {
            eprintln!("could not write {path}: {e}");
        }
    } else {
        println!("{json:#}");
    }
}
