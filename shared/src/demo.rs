//! The demo brokerage `seed-demo` creates: an ADMIN, an AGENT and ~50 varied leads, so a fresh
//! install has something to look at. Idempotent: running it again refreshes the passwords and adds
//! only the leads that are missing.

use rand::Rng;
use rand::distr::Alphanumeric;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait};
use serde_json::{Map, Value, json};

use crate::Infra;
use crate::auth::password;
use crate::brokers::repo as broker_repo;
use crate::ctx::Role;
use crate::entities::{brokers, leads, users};
use crate::error::{Error, Result};
use crate::leads::model::{Stage, Status, seal_metadata, search_text};
use crate::text::Email;

pub const DEMO_SLUG: &str = "corredor-demo";
pub const ADMIN_EMAIL: &str = "admin@demo.cl";
pub const AGENT_EMAIL: &str = "agente@demo.cl";

pub struct Seeded {
    pub broker_id: i64,
    pub broker_slug: String,
    pub admin_email: String,
    pub agent_email: String,
    pub password: String,
    pub leads: u64,
}

const FIRST: [&str; 10] =
    ["María", "José", "Camila", "Matías", "Valentina", "Benjamín", "Catalina", "Tomás", "Fernanda", "Joaquín"];
const LAST: [&str; 10] =
    ["González", "Muñoz", "Rojas", "Díaz", "Pérez", "Soto", "Contreras", "Silva", "Martínez", "Sepúlveda"];
const COMUNAS: [&str; 10] = [
    "Ñuñoa",
    "Providencia",
    "Las Condes",
    "La Florida",
    "Maipú",
    "Santiago",
    "Viña del Mar",
    "Concepción",
    "Puente Alto",
    "Vitacura",
];

fn random_password() -> String {
    let body: String = rand::rng().sample_iter(&Alphanumeric).take(12).map(char::from).collect();
    format!("{body}-7")
}

struct DemoLead {
    name: String,
    phone: String,
    email: String,
    score: f64,
    stage: Stage,
    calificacion: Option<&'static str>,
    metadata: Map<String, Value>,
    tags: Vec<String>,
}

/// The demo leads: deterministic, spread over every stage, status and qualification.
fn demo_leads() -> Vec<DemoLead> {
    (0..50u32)
        .map(|i| {
            let (first, last) = (FIRST[(i % 10) as usize], LAST[((i / 10 + i) % 10) as usize]);
            let mut metadata = Map::new();
            metadata.insert("location".into(), json!(COMUNAS[(i % 10) as usize]));
            metadata.insert("monthly_income".into(), json!(600_000 + (i % 7) * 450_000));
            metadata.insert("dicom_status".into(), json!(if i % 5 == 2 { "has_debt" } else { "clean" }));
            metadata.insert("property_type".into(), json!(if i % 3 == 0 { "casa" } else { "departamento" }));
            metadata.insert("bedrooms".into(), json!(1 + i % 4));
            metadata.insert("budget".into(), json!({"amount": 2500 + (i % 9) * 500, "currency": "UF"}));
            metadata.insert("source".into(), json!(["webchat", "telegram", "whatsapp", "csv"][(i % 4) as usize]));
            DemoLead {
                name: format!("{first} {last}"),
                phone: format!("+569{:08}", 71_000_000 + i * 7919),
                email: format!("{}.{}{i}@correo.cl", crate::text::fold(first), crate::text::fold(last)),
                score: f64::from((i * 37) % 101),
                stage: Stage::ALL[(i % 8) as usize],
                calificacion: [Some("calificado"), Some("potencial"), Some("no_calificado"), None][(i % 4) as usize],
                metadata,
                tags: match i % 3 {
                    0 => vec!["inversionista".to_string()],
                    1 => vec!["primera-vivienda".to_string(), "subsidio".to_string()],
                    _ => vec![],
                },
            }
        })
        .collect()
}

pub async fn seed(infra: &Infra, password: Option<String>) -> Result<Seeded> {
    let password = password.unwrap_or_else(random_password);
    password::check_strength(&password)?;
    let hashed = password::hash(&password).await?;
    let txn = infra.db.begin().await?;
    let broker = match brokers::Entity::find().filter(brokers::Column::Slug.eq(DEMO_SLUG)).one(&txn).await? {
        Some(b) => b,
        None => broker_repo::create_with_defaults(&txn, "Corredor Demo", Some(DEMO_SLUG), Default::default()).await?,
    };
    let mut ids = Vec::new();
    for (email, name, role) in [(ADMIN_EMAIL, "Admin Demo", Role::Admin), (AGENT_EMAIL, "Agente Demo", Role::Agent)] {
        let id = match users::Entity::find().filter(users::Column::Email.eq(email)).one(&txn).await? {
            Some(u) if u.broker_id == Some(broker.id) => {
                let mut am: users::ActiveModel = u.into();
                am.hashed_password = Set(hashed.clone());
                am.is_active = Set(true);
                am.update(&txn).await?.id
            }
            Some(_) => {
                return Err(Error::conflict("email_taken", format!("{email} belongs to another broker")));
            }
            None => {
                let email = Email::parse(email).map_err(|m| Error::internal(anyhow::anyhow!(m)))?;
                crate::auth::service::insert_user(&txn, &email, &hashed, name, role, Some(broker.id)).await?.id
            }
        };
        ids.push(id);
    }
    let agent_id = ids.get(1).copied();
    for (i, lead) in demo_leads().into_iter().enumerate() {
        let DemoLead { name, phone, email, score, stage, calificacion, metadata, tags } = lead;
        if crate::leads::repo::find_by_contact(&txn, broker.id, Some(&phone), Some(&email)).await?.is_some() {
            continue;
        }
        let status = match stage {
            Stage::Ganado => Status::Converted,
            Stage::Perdido => Status::Lost,
            _ => Status::from_score(score, 20, 50),
        };
        leads::ActiveModel {
            broker_id: Set(broker.id),
            search_text: Set(search_text(Some(&name), Some(&phone), Some(&email))),
            phone: Set(Some(phone)),
            name: Set(Some(name)),
            email: Set(Some(email)),
            status: Set(status.as_str().into()),
            lead_score: Set(score),
            lead_score_components: Set(json!({"profile": (score * 0.3).round(), "financial": (score * 0.5).round(), "engagement": (score * 0.2).round()})),
            pipeline_stage: Set(stage.as_str().into()),
            calificacion: Set(calificacion.map(String::from)),
            assigned_to: Set(if i % 2 == 0 { agent_id } else { None }),
            tags: Set(json!(tags)),
            metadata: Set(seal_metadata(&infra.cipher, metadata)),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    infra.users.clear();
    let total = leads::Entity::find().filter(leads::Column::BrokerId.eq(broker.id)).count(&infra.db).await?;
    Ok(Seeded {
        broker_id: broker.id,
        broker_slug: broker.slug,
        admin_email: ADMIN_EMAIL.into(),
        agent_email: AGENT_EMAIL.into(),
        password,
        leads: total,
    })
}
