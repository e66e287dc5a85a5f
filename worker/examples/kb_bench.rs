//! Knowledge-base benchmarks (bench scenarios `kb_search` and `kb_embed`, see bench/README.md).
//!
//!   kb_bench seed BROKER_ID      # BENCH_KB_ENTRIES (50 000) ready entries, local vectors, HNSW rebuilt
//!   kb_bench recall BROKER_ID    # recall@5 of the api's search statement against exact search
//!   kb_bench embed BROKER_ID     # BENCH_KB_EMBED_ENTRIES (20 000) entries through the embedding queue
//!
//! `seed` writes synthetic Spanish real-estate entries (listings and FAQ on subsidies, DICOM, pie,
//! parking, pets, visiting hours…, generated deterministically) straight into `knowledge_base` and
//! `knowledge_chunks`, as the embedding job would leave them: status `ready`, one chunk per entry (the
//! texts are shorter than a chunk), each vector made by the local embedder from `"{title}\n\n{chunk}"`
//! exactly as the job does. The HNSW index is dropped for the load and rebuilt from its own definition
//! afterwards (much faster than 50 000 inserts into the graph), then the tables are analysed.
//!
//! `recall` embeds `BENCH_KB_QUERIES` (200) questions — the fixed questions wrk sends
//! (`bench/lib/kb_search.lua`) and generated ones — and for each runs the api's own search statement
//! (`knowledge::repo::search`: HNSW with its scan settings, top 5) and an exact search (every chunk of
//! the broker, grouped by entry, sorted by distance). recall@5 = |HNSW ∩ exact| / 5, averaged; a hit
//! tied with the 5th exact distance counts as found. It also records whether the statement's plan
//! uses the HNSW index (with few entries the planner prefers an exact scan, and recall is trivially 1).
//!
//! `embed` inserts pending entries (10 % long enough for three chunks), enqueues one `embedding` job
//! each through `shared::jobs::enqueue`, then starts the real worker binary (`BENCH_WORKER_BIN`, the
//! release `worker`; `WORKER_CONCURRENCY` from the environment) and times until every entry is
//! `ready` (or failed). The clock starts when the worker is spawned.
//!
//! Every mode prints one `BENCH_JSON {...}` line on stdout and its progress on stderr. Needs
//! `DATABASE_URL`, `REDIS_URL` and `REDIS_PREFIX` (the api's settings).

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::prelude::PgVector;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Set, Statement, TransactionTrait};
use serde_json::json;
use shared::entities::{knowledge_base, knowledge_chunks};
use shared::integrations::embeddings::local;
use shared::jobs::{self, embedding::Embedding};
use shared::knowledge::model::Search;
use shared::knowledge::{chunk, repo};
use shared::{Ctx, Infra, Role, Settings};

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().with_context(|| format!("{name} must be a number")),
        _ => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::install_crypto_provider();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let broker: i64 = args.get(1).context("usage: kb_bench seed|recall|embed BROKER_ID")?.parse()?;
    let settings = Settings::from_env()?;
    shared::telemetry::init(&settings.log_format);
    let infra = Infra::connect(settings).await?;
    let out = match args.first().map(String::as_str) {
        Some("seed") => seed(&infra, broker).await?,
        Some("recall") => recall(&infra, broker).await?,
        Some("embed") => embed(&infra, broker).await?,
        other => bail!("unknown mode {other:?}; use seed, recall or embed"),
    };
    println!("BENCH_JSON {out}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Synthetic entries

/// splitmix64: a small deterministic generator (no dependency, same texts on every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const COMUNAS: &[&str] = &[
    "Providencia",
    "Ñuñoa",
    "Las Condes",
    "Vitacura",
    "La Florida",
    "Maipú",
    "Santiago Centro",
    "San Miguel",
    "La Reina",
    "Peñalolén",
    "Macul",
    "Puente Alto",
    "Huechuraba",
    "Quilicura",
    "Estación Central",
    "Independencia",
    "Recoleta",
    "Lo Barnechea",
    "Viña del Mar",
    "Concón",
    "Valparaíso",
    "Temuco",
    "Concepción",
    "La Serena",
    "Antofagasta",
    "Rancagua",
    "Talca",
    "Puerto Montt",
    "Chillán",
    "Iquique",
];
const TIPOS: &[&str] = &[
    "departamento",
    "casa",
    "oficina",
    "local comercial",
    "parcela",
    "terreno",
    "estudio",
    "dúplex",
    "penthouse",
    "casa en condominio",
];
const FEATURES: &[&str] = &[
    "estacionamiento techado",
    "bodega",
    "piscina temperada",
    "quincho",
    "gimnasio",
    "sala de eventos",
    "conserjería 24 horas",
    "terraza con vista",
    "calefacción central",
    "cocina americana",
    "logia",
    "jardín privado",
    "ascensor",
    "juegos infantiles",
    "lavandería",
    "bicicletero",
    "cowork",
    "sauna",
    "áreas verdes",
    "portón eléctrico",
    "paneles solares",
    "cámaras de seguridad",
    "sala multiuso",
    "estacionamiento de visitas",
];
const STREETS: &[&str] = &[
    "Los Aromos",
    "Las Acacias",
    "Los Leones",
    "Pedro de Valdivia",
    "Manuel Montt",
    "Irarrázaval",
    "Grecia",
    "Apoquindo",
    "Tobalaba",
    "Vicuña Mackenna",
    "José Pedro Alessandri",
    "Ossa",
    "Quilín",
    "Larraín",
    "Bilbao",
    "Colón",
    "Kennedy",
    "Vitacura",
    "Matta",
    "Santa Rosa",
    "Gran Avenida",
    "Los Militares",
    "Echeñique",
    "Príncipe de Gales",
];
/// (title, explanation) of the FAQ entries.
const TOPICS: &[(&str, &str)] = &[
    (
        "Subsidio DS1",
        "El subsidio DS1 apoya a familias de sectores medios en la compra de su primera vivienda; se postula con ahorro previo en una cuenta de ahorro para la vivienda y registro social de hogares.",
    ),
    (
        "Subsidio DS19",
        "Los proyectos DS19 de integración social permiten comprar con subsidio del Estado; el bono de integración y el bono de captación se descuentan del precio.",
    ),
    (
        "Pie y crédito hipotecario",
        "El banco financia hasta el 80 o 90 % del valor; la diferencia es el pie, que puede pagarse en cuotas durante la construcción.",
    ),
    (
        "DICOM y morosidad",
        "Con deudas en DICOM los bancos no aprueban el crédito hipotecario; conviene regularizar la morosidad y esperar que se actualice el boletín comercial.",
    ),
    (
        "Mascotas",
        "El reglamento de copropiedad permite mascotas pequeñas y medianas; los perros deben circular con correa en los espacios comunes.",
    ),
    (
        "Horario de visitas",
        "Las visitas a la sala de ventas y al piloto son de lunes a sábado de 10:00 a 19:00 horas, con agenda previa.",
    ),
    (
        "Estacionamientos",
        "Los estacionamientos y bodegas se venden por separado; hay unidades de visita y estacionamientos para bicicletas.",
    ),
    (
        "Gastos comunes",
        "Los gastos comunes dependen de los metros cuadrados e incluyen conserjería, aseo, mantención de ascensores y áreas comunes.",
    ),
    (
        "Contribuciones",
        "Las viviendas DFL2 tienen rebaja de contribuciones por algunos años; el avalúo fiscal lo fija el Servicio de Impuestos Internos.",
    ),
    (
        "Reserva y promesa",
        "Se reserva con un monto devolvible; luego se firma la promesa de compraventa ante notario y se paga el pie.",
    ),
    (
        "Escritura y entrega",
        "La escritura se firma cuando el edificio tiene recepción municipal; la entrega de llaves es después de la inscripción en el conservador.",
    ),
    (
        "Arriendo con opción de compra",
        "El leasing habitacional permite arrendar con opción de compra; parte del arriendo se abona al precio de la vivienda.",
    ),
    (
        "Seguro de desgravamen",
        "El crédito exige seguro de desgravamen e incendio; el costo se suma al dividendo mensual.",
    ),
    (
        "Tasación",
        "El banco tasa la propiedad antes de aprobar el crédito; si la tasación es menor al precio, aumenta el pie.",
    ),
    (
        "Renta mínima",
        "Para un crédito hipotecario se pide que el dividendo no supere el 25 % de la renta líquida; se pueden complementar rentas con la pareja.",
    ),
];

/// FAQ entries in a corpus: one answer per topic and comuna.
const FAQ_ENTRIES: u64 = (TOPICS.len() * COMUNAS.len()) as u64;

/// Entry `i`, deterministic in `i`: the first [`FAQ_ENTRIES`] are the FAQ (each topic once per
/// comuna, as a broker with projects in 30 comunas would write them), every later one a listing.
/// `long` makes the content span about three chunks.
///
/// Earlier corpora drew 30 % of the entries from the 15 FAQ answers, so 50 000 entries held about
/// 1 000 copies of each answer that differed only in a comuna, a ficha number and two words: no real
/// knowledge base looks like that, and the exact top 5 among a thousand near-identical vectors is an
/// arbitrary pick that no approximate index reproduces (bench/README.md, `kb_search`).
fn entry(i: u64, long: bool) -> (String, String, &'static str) {
    let mut r = Rng(i.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
    let faq = (i < FAQ_ENTRIES).then(|| (TOPICS[i as usize % TOPICS.len()], COMUNAS[i as usize / TOPICS.len()]));
    let comuna = faq.map_or_else(|| r.pick(COMUNAS), |(_, c)| c);
    let (title, mut content, source) = if let Some(((topic, text), _)) = faq {
        let title = format!("{topic} en proyectos de {comuna}");
        let content = format!(
            "{text} En nuestros proyectos de {comuna} te acompañamos en el proceso; consulta por el {} y por {}.",
            r.pick(TIPOS),
            r.pick(FEATURES)
        );
        (title, content, if topic.starts_with("Subsidio") { "subsidy" } else { "faq" })
    } else {
        let tipo = r.pick(TIPOS);
        let (f1, f2, f3) = (r.pick(FEATURES), r.pick(FEATURES), r.pick(FEATURES));
        let title = format!("{} en {comuna} con {f1}, código P-{i}", capitalised(tipo));
        let content = format!(
            "{} de {} dormitorios y {} baños en {} {}, {comuna}. Superficie de {} m² útiles y {} m² de terraza. \
             Cuenta con {f1}, {f2} y {f3}. Gastos comunes aproximados de ${} mensuales. Precio UF {}, \
             pie desde el {} %. Entrega {} {}.",
            capitalised(tipo),
            1 + r.below(4),
            1 + r.below(3),
            r.pick(STREETS),
            100 + r.below(9900),
            30 + r.below(170),
            r.below(40),
            40_000 + r.below(300) * 1000,
            1500 + r.below(12_000),
            5 + r.below(16),
            if r.below(2) == 0 { "inmediata" } else { "en verde para" },
            2026 + r.below(3),
        );
        (title, content, "property")
    };
    if long {
        while content.chars().count() < 2000 {
            let (topic, text) = TOPICS[r.below(TOPICS.len())];
            content.push_str(&format!(" {topic}: {text}"));
        }
    }
    (title, content, source)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The questions wrk sends (keep in sync with `bench/lib/kb_search.lua`).
const WRK_QUESTIONS: &[&str] = &[
    "¿Aceptan mascotas en el edificio?",
    "¿Cuál es el horario de visitas de la sala de ventas?",
    "¿Puedo postular con subsidio DS1?",
    "Estoy en DICOM, ¿me pueden dar crédito hipotecario?",
    "¿De cuánto es el pie y se puede pagar en cuotas?",
    "¿El estacionamiento viene incluido en el precio?",
    "¿Cuánto salen los gastos comunes?",
    "departamento con piscina temperada en Ñuñoa",
    "casa con jardín privado en La Florida",
    "oficina con estacionamiento en Providencia",
    "¿Hay departamentos de 3 dormitorios en Las Condes?",
    "¿Qué renta necesito para el dividendo?",
    "¿Cuándo se firma la escritura y entregan las llaves?",
    "arriendo con opción de compra en Maipú",
    "¿Las contribuciones tienen rebaja por DFL2?",
    "¿Tienen quincho y gimnasio en el condominio?",
];

fn generated_question(r: &mut Rng) -> String {
    let comuna = r.pick(COMUNAS);
    match r.below(4) {
        0 => format!("¿Tienen {} con {} en {comuna}?", r.pick(TIPOS), r.pick(FEATURES)),
        1 => format!("{} en {comuna} cerca de {}", r.pick(TIPOS), r.pick(STREETS)),
        2 => format!("¿Cómo funciona {} en {comuna}?", TOPICS[r.below(TOPICS.len())].0.to_lowercase()),
        _ => format!(
            "busco {} de {} dormitorios con {} y {}",
            r.pick(TIPOS),
            1 + r.below(4),
            r.pick(FEATURES),
            r.pick(FEATURES)
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// seed

const HNSW_INDEX: &str = "knowledge_chunks_embedding_hnsw";

async fn scalar_i64(db: &impl ConnectionTrait, sql: &str) -> anyhow::Result<i64> {
    let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await?.context("no row")?;
    Ok(row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0))
}

async fn seed(infra: &Infra, broker: i64) -> anyhow::Result<serde_json::Value> {
    let n = env_num("BENCH_KB_ENTRIES", 50_000)?.max(1);
    let batch = 500u64;
    let db = &infra.db;
    let t0 = Instant::now();
    // One HNSW index per kind of entry (`knowledge_chunks_embedding_hnsw_faq`, …).
    let defs = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE $1 ORDER BY indexname",
            [format!("{HNSW_INDEX}%").into()],
        ))
        .await?;
    let mut index_defs = Vec::new();
    for row in &defs {
        let name: String = row.try_get_by_index(0)?;
        index_defs.push(row.try_get_by_index::<String>(1)?);
        db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
    }
    if index_defs.is_empty() {
        bail!("no {HNSW_INDEX}* index: is the database migrated?");
    }
    let first = scalar_i64(db, "SELECT max(id) FROM knowledge_base").await? + 1;
    let model = local::MODEL;
    let mut embed_s = 0.0;
    for start in (0..n).step_by(batch as usize) {
        let end = (start + batch).min(n);
        let mut entries = Vec::new();
        let mut chunks = Vec::new();
        let t = Instant::now();
        for i in start..end {
            let id = first + i as i64;
            let (title, content, source) = entry(i, false);
            let pieces = chunk::split(&content);
            for (k, piece) in pieces.iter().enumerate() {
                let vector = local::embed(&format!("{title}\n\n{piece}"));
                chunks.push(knowledge_chunks::ActiveModel {
                    entry_id: Set(id),
                    broker_id: Set(broker),
                    chunk_index: Set(k as i32),
                    content: Set(piece.clone()),
                    embedding: Set(PgVector::from(vector)),
                    provider: Set("local".into()),
                    model: Set(model.into()),
                    source_type: Set(source.into()),
                    ..Default::default()
                });
            }
            entries.push(knowledge_base::ActiveModel {
                id: Set(id),
                broker_id: Set(broker),
                search_text: Set(shared::text::fold(&title)),
                title: Set(title),
                content: Set(content),
                source_type: Set(source.into()),
                metadata: Set(json!({"bench": true})),
                embedding_status: Set("ready".into()),
                embedding_provider: Set(Some("local".into())),
                embedding_model: Set(Some(model.into())),
                chunk_count: Set(pieces.len() as i32),
                embedded_at: Set(Some(chrono::Utc::now())),
                ..Default::default()
            });
        }
        embed_s += t.elapsed().as_secs_f64();
        let txn = db.begin().await?;
        knowledge_base::Entity::insert_many(entries).exec(&txn).await?;
        knowledge_chunks::Entity::insert_many(chunks).exec(&txn).await?;
        txn.commit().await?;
        if end % 10_000 == 0 || end == n {
            eprintln!("[kb_bench] seeded {end}/{n} entries ({:.1} s)", t0.elapsed().as_secs_f64());
        }
    }
    db.execute_unprepared(
        "SELECT setval(pg_get_serial_sequence('knowledge_base', 'id'), (SELECT max(id) FROM knowledge_base))",
    )
    .await?;
    let load_s = t0.elapsed().as_secs_f64();
    eprintln!("[kb_bench] rebuilding the HNSW indexes: {}", index_defs.join("; "));
    let t1 = Instant::now();
    let txn = db.begin().await?;
    txn.execute_unprepared("SET LOCAL maintenance_work_mem = '512MB'").await?;
    for def in &index_defs {
        txn.execute_unprepared(def).await?;
    }
    txn.commit().await?;
    let index_s = t1.elapsed().as_secs_f64();
    db.execute_unprepared("ANALYZE knowledge_base").await?;
    db.execute_unprepared("ANALYZE knowledge_chunks").await?;
    let chunks = scalar_i64(db, &format!("SELECT count(*) FROM knowledge_chunks WHERE broker_id = {broker}")).await?;
    let entries = scalar_i64(db, &format!("SELECT count(*) FROM knowledge_base WHERE broker_id = {broker}")).await?;
    eprintln!("[kb_bench] {entries} entries, {chunks} chunks; load {load_s:.1} s, index {index_s:.1} s");
    Ok(json!({
        "entries": entries,
        "chunks": chunks,
        "seed_load_s": round(load_s, 2),
        "seed_embed_s": round(embed_s, 2),
        "index_build_s": round(index_s, 2),
        "index": index_defs,
    }))
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

// ---------------------------------------------------------------------------------------------
// recall

const K: usize = 5;
/// ann-benchmarks' tolerance: a hit whose distance is within this of the k-th exact distance counts.
const RECALL_EPSILON: f64 = 1e-3;

async fn recall(infra: &Infra, broker: i64) -> anyhow::Result<serde_json::Value> {
    let q = env_num("BENCH_KB_QUERIES", 200)?.max(1) as usize;
    let ctx = Ctx::user(0, Some(broker), Role::Admin);
    let mut questions: Vec<String> = WRK_QUESTIONS.iter().map(|s| s.to_string()).collect();
    let mut r = Rng(0xbe7c4);
    while questions.len() < q.max(WRK_QUESTIONS.len()) {
        questions.push(generated_question(&mut r));
    }
    questions.truncate(q.max(WRK_QUESTIONS.len()));
    let exact_sql = "SELECT entry_id, min(embedding <=> $1)::float8 AS d FROM knowledge_chunks \
                     WHERE broker_id = $2 AND provider = $3 AND model = $4 \
                     GROUP BY entry_id ORDER BY d, entry_id LIMIT 10";
    let explain = format!("EXPLAIN {}", repo::search_sql(None));
    let (mut found, mut strict, mut hnsw_ms, mut exact_ms) = (0usize, 0usize, 0.0, 0.0);
    let mut within_eps = 0usize;
    let mut short = 0usize;
    // (found of K, question, the 5th exact similarity), for the questions the index answered worst.
    let mut misses: Vec<(usize, String, f64)> = Vec::new();
    let mut plan_uses_hnsw = None;
    for question in &questions {
        let vector = local::embed(question);
        let search = Search { query: question.clone(), top_k: K as u64, source_type: None, min_similarity: None };
        let query = repo::QueryVector { vector: vector.clone(), provider: "local", model: local::MODEL };
        let t = Instant::now();
        let hits = repo::search(&infra.db, &ctx, broker, query, &search, -1.0).await?;
        hnsw_ms += t.elapsed().as_secs_f64() * 1000.0;
        let values = || -> Vec<sea_orm::Value> {
            vec![PgVector::from(vector.clone()).into(), broker.into(), "local".into(), local::MODEL.into()]
        };
        let t = Instant::now();
        let exact =
            infra.db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, exact_sql, values())).await?;
        exact_ms += t.elapsed().as_secs_f64() * 1000.0;
        let exact: Vec<(i64, f64)> = exact
            .iter()
            .map(|row| -> Result<(i64, f64), sea_orm::DbErr> {
                Ok((row.try_get_by_index::<i64>(0)?, row.try_get_by_index::<f64>(1)?))
            })
            .collect::<Result<_, _>>()?;
        if plan_uses_hnsw.is_none() {
            let mut v = values();
            v.extend([100i64.into(), (-1.0f64).into(), (K as i64).into()]);
            let txn = infra.db.begin().await?;
            txn.execute_unprepared(&repo::scan_settings(infra.settings.kb_ef_search)).await?;
            let plan = txn.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, &explain, v)).await?;
            txn.commit().await?;
            let text: Vec<String> = plan.iter().filter_map(|r| r.try_get_by_index::<String>(0).ok()).collect();
            plan_uses_hnsw = Some(text.iter().any(|l| l.contains(HNSW_INDEX)));
            eprintln!("[kb_bench] search plan:\n{}", text.join("\n"));
        }
        let top: HashSet<i64> = exact.iter().take(K).map(|(id, _)| *id).collect();
        let kth = exact.get(K - 1).or(exact.last()).map(|(_, d)| *d).unwrap_or(f64::MAX);
        if hits.len() < K.min(exact.len()) {
            short += 1;
        }
        let found_before = found;
        for h in &hits {
            if top.contains(&h.id) {
                strict += 1;
                found += 1;
            } else if exact.iter().any(|(id, d)| *id == h.id && *d <= kth + 1e-6) {
                found += 1;
            }
            if 1.0 - h.similarity <= kth + RECALL_EPSILON {
                within_eps += 1;
            }
        }
        if found - found_before < K.min(exact.len()) {
            misses.push((found - found_before, question.clone(), round(1.0 - kth, 4)));
        }
    }
    let denom = (questions.len() * K) as f64;
    let n = questions.len() as f64;
    let entries =
        scalar_i64(&infra.db, &format!("SELECT count(*) FROM knowledge_base WHERE broker_id = {broker}")).await?;
    let out = json!({
        "recall_queries": questions.len(),
        "recall_k": K,
        "recall_at_5": round(found as f64 / denom, 4),
        "recall_at_5_strict": round(strict as f64 / denom, 4),
        "recall_at_5_eps": round(within_eps as f64 / denom, 4),
        "recall_short_answers": short,
        "recall_missed_questions": misses.len(),
        "recall_worst": worst(misses),
        "plan_uses_hnsw": plan_uses_hnsw,
        "recall_hnsw_ms_avg": round(hnsw_ms / n, 3),
        "recall_exact_ms_avg": round(exact_ms / n, 3),
        "entries": entries,
    });
    eprintln!(
        "[kb_bench] recall@5 {} over {} queries (plan uses HNSW: {:?})",
        out["recall_at_5"],
        questions.len(),
        plan_uses_hnsw
    );
    Ok(out)
}

/// The ten questions with the fewest exact top-5 entries found, as `{found, question, kth_similarity}`.
fn worst(mut misses: Vec<(usize, String, f64)>) -> serde_json::Value {
    misses.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    misses.truncate(10);
    misses.into_iter().map(|(found, q, kth)| json!({"found": found, "question": q, "kth_similarity": kth})).collect()
}

// ---------------------------------------------------------------------------------------------
// embed

async fn embed(infra: &Infra, broker: i64) -> anyhow::Result<serde_json::Value> {
    let n = env_num("BENCH_KB_EMBED_ENTRIES", 20_000)?.max(1);
    let timeout = Duration::from_secs(env_num("BENCH_KB_EMBED_TIMEOUT_S", 300)?);
    let worker_bin = std::env::var("BENCH_WORKER_BIN").context("BENCH_WORKER_BIN must name the worker binary")?;
    let db = &infra.db;
    // Pending entries, as the api's create leaves them (ids from a range well past the seeded ones).
    let first = scalar_i64(db, "SELECT max(id) FROM knowledge_base").await? + 1;
    let t0 = Instant::now();
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        let rows = (start..end).map(|i| {
            let (title, content, source) = entry(1_000_000 + i, i % 10 == 0);
            knowledge_base::ActiveModel {
                id: Set(first + i as i64),
                broker_id: Set(broker),
                search_text: Set(shared::text::fold(&title)),
                title: Set(title),
                content: Set(content),
                source_type: Set(source.into()),
                metadata: Set(json!({})),
                ..Default::default()
            }
        });
        knowledge_base::Entity::insert_many(rows).exec(db).await?;
    }
    db.execute_unprepared(
        "SELECT setval(pg_get_serial_sequence('knowledge_base', 'id'), (SELECT max(id) FROM knowledge_base))",
    )
    .await?;
    let insert_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per = n.div_ceil(16);
    for t in 0..16u64 {
        let infra = infra.clone();
        tasks.spawn(async move {
            for i in (t * per)..((t + 1) * per).min(n) {
                jobs::enqueue(&infra, Embedding { broker_id: broker, entry_id: first + i as i64, version: 1 }).await?;
            }
            Ok::<_, shared::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let enqueue_s = t1.elapsed().as_secs_f64();
    eprintln!("[kb_bench] {n} pending entries inserted in {insert_s:.1} s, jobs enqueued in {enqueue_s:.1} s");

    let status_sql = format!(
        "SELECT count(*) FILTER (WHERE embedding_status = 'ready'), count(*) FILTER (WHERE embedding_status = 'failed'), \
                COALESCE(sum(chunk_count), 0)::bigint \
         FROM knowledge_base WHERE broker_id = {broker} AND id >= {first}"
    );
    let counts = || async {
        let row = db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, status_sql.clone()))
            .await?
            .context("no row")?;
        Ok::<_, anyhow::Error>((
            row.try_get_by_index::<i64>(0)?,
            row.try_get_by_index::<i64>(1)?,
            row.try_get_by_index::<i64>(2)?,
        ))
    };
    let started = Instant::now();
    let mut worker = tokio::process::Command::new(&worker_bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not start {worker_bin}"))?;
    let pid = worker.id();
    let mut first_ready_ms = None;
    let (mut ready, mut failed, mut chunks) = (0, 0, 0);
    let mut stalled = false;
    while started.elapsed() < timeout {
        tokio::time::sleep(Duration::from_millis(100)).await;
        (ready, failed, chunks) = counts().await?;
        if ready > 0 && first_ready_ms.is_none() {
            first_ready_ms = Some(started.elapsed().as_millis() as u64);
        }
        if ready + failed >= n as i64 {
            break;
        }
        if let Some(status) = worker.try_wait()? {
            bail!("the worker exited early ({status})");
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if ready + failed < n as i64 {
        stalled = true;
        eprintln!("[kb_bench] timed out after {elapsed:.1} s: {ready} ready, {failed} failed of {n}");
    }
    let cpu_s = pid.and_then(process_cpu_s);
    // SIGTERM: the worker drains and exits.
    if let Some(pid) = pid {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
    if tokio::time::timeout(Duration::from_secs(30), worker.wait()).await.is_err() {
        let _ = worker.kill().await;
    }
    let rate = if elapsed > 0.0 { ready as f64 / elapsed } else { 0.0 };
    eprintln!("[kb_bench] {ready} entries ready ({chunks} chunks) in {elapsed:.2} s: {rate:.0} entries/s");
    let floor_s = insert_floor(db, broker, first).await?;
    eprintln!("[kb_bench] the same {chunks} vectors inserted by SQL alone into the same indexes: {floor_s:.2} s");
    Ok(json!({
        "entries": n,
        "ready": ready,
        "failed": failed,
        "chunks": chunks,
        "long_entries": n.div_ceil(10),
        "insert_s": round(insert_s, 2),
        "enqueue_s": round(enqueue_s, 2),
        "embed_s": round(elapsed, 3),
        "first_ready_after_ms": first_ready_ms,
        "entries_per_sec": round(rate, 1),
        "chunks_per_sec": round(if elapsed > 0.0 { chunks as f64 / elapsed } else { 0.0 }, 1),
        "worker_cpu_s": cpu_s.map(|c| round(c, 2)),
        "worker_concurrency": infra.settings.worker_concurrency,
        "stalled": stalled,
        "errors": failed + (n as i64 - ready - failed),
        "floor_insert_s": round(floor_s, 3),
        "floor_entries_per_sec": round(if floor_s > 0.0 { ready as f64 / floor_s } else { 0.0 }, 1),
        "floor_note": "the same chunks' vectors inserted again by SQL alone (two sessions, one INSERT … SELECT each, \
                       no application, no queue) into a scratch table with the same per-kind HNSW indexes: \
                       the database's own cost of indexing them",
    }))
}

/// The database's own cost of indexing the embedded chunks: seconds to insert the same vectors, in
/// the same order, into an empty scratch table with the same per-kind HNSW indexes (migration
/// `000014`), from two sessions at once (one per core), with the same asynchronous commit as the
/// job. No application and no queue are involved, so `kb_embed` cannot be faster than this.
async fn insert_floor(db: &sea_orm::DatabaseConnection, broker: i64, first: i64) -> anyhow::Result<f64> {
    let mut ddl = String::from(
        "DROP TABLE IF EXISTS kb_bench_floor; \
         CREATE TABLE kb_bench_floor (id bigint PRIMARY KEY, source_type varchar(20) NOT NULL, embedding vector(768) NOT NULL);",
    );
    for kind in shared::knowledge::SourceType::ALL {
        let k = kind.as_str();
        ddl.push_str(&format!(
            "CREATE INDEX kb_bench_floor_{k} ON kb_bench_floor \
                 USING hnsw ((embedding::halfvec(768)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64) \
                 WHERE source_type = '{k}';"
        ));
    }
    db.execute_unprepared(&ddl).await?;
    let half = |parity: i64| async move {
        let txn = db.begin().await?;
        txn.execute_unprepared("SET LOCAL synchronous_commit = off").await?;
        txn.execute_unprepared(&format!(
            "INSERT INTO kb_bench_floor SELECT id, source_type, embedding FROM knowledge_chunks \
             WHERE broker_id = {broker} AND entry_id >= {first} AND id % 2 = {parity} ORDER BY id"
        ))
        .await?;
        txn.commit().await?;
        Ok::<_, anyhow::Error>(())
    };
    let t = Instant::now();
    tokio::try_join!(half(0), half(1))?;
    let secs = t.elapsed().as_secs_f64();
    db.execute_unprepared("DROP TABLE kb_bench_floor").await?;
    Ok(secs)
}

/// User + system CPU seconds of a process, from `/proc/{pid}/stat` (clock ticks of 1/100 s).
fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
