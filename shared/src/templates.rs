//! Message templates (reference §3.6 with its ownership bug fixed, SPEC §10): per broker, a channel,
//! an optional agent type and content with `{{variables}}`; rendering for one lead fills the lead's
//! data, the broker's and its next appointment's, and every metadata key; unknown placeholders become
//! empty. WhatsApp templates may name the approved template (and language and body parameters) that
//! is sent outside the 24-hour window.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, QueryResult, Statement, TransactionTrait};
use serde::Serialize;
use serde_json::{Value, json};

use crate::ctx::{Ctx, Role};
use crate::error::{Error, FieldError, Result};
use crate::leads::model::{TZ, open_metadata};
use crate::leads::repo;
use crate::text::{clean_text, day_long_es};
use crate::{Infra, audit};

pub const CHANNELS: [&str; 5] = ["telegram", "whatsapp", "email", "call", "webchat"];
pub const AGENT_TYPES: [&str; 4] = ["perfilador", "calificador_financiero", "agendador", "seguimiento"];
pub const MAX_NAME: usize = 200;
pub const MAX_CONTENT: usize = 10_000;
pub const MAX_VARIABLES: usize = 50;

fn stmt(sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Template {
    pub id: i64,
    pub broker_id: i64,
    pub name: String,
    pub channel: String,
    pub agent_type: Option<String>,
    pub content: String,
    pub variables: Vec<String>,
    pub whatsapp_template_name: Option<String>,
    pub whatsapp_language: Option<String>,
    pub whatsapp_parameters: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, broker_id, name, channel, agent_type, content, variables, whatsapp_template_name, \
                       whatsapp_language, whatsapp_parameters, created_at, updated_at";

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.into_iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn decode(r: &QueryResult) -> std::result::Result<Template, sea_orm::DbErr> {
    Ok(Template {
        id: r.try_get_by_index(0)?,
        broker_id: r.try_get_by_index(1)?,
        name: r.try_get_by_index(2)?,
        channel: r.try_get_by_index(3)?,
        agent_type: r.try_get_by_index(4)?,
        content: r.try_get_by_index(5)?,
        variables: strings(r.try_get_by_index(6)?),
        whatsapp_template_name: r.try_get_by_index(7)?,
        whatsapp_language: r.try_get_by_index(8)?,
        whatsapp_parameters: strings(r.try_get_by_index(9)?),
        created_at: r.try_get_by_index(10)?,
        updated_at: r.try_get_by_index(11)?,
    })
}

/// The `{{identifier}}` placeholders of `content` (spaces inside the braces allowed), in order of
/// first appearance, each once.
pub fn extract_variables(content: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if is_identifier(name) && !out.iter().any(|v| v == name) {
            out.push(name.to_string());
        }
        rest = &after[end + 2..];
    }
    out
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// Fills the placeholders of `content` from `values`; an unknown one becomes empty. Text outside
/// placeholders is kept as written, and a value is inserted as it is (never re-expanded).
pub fn render(content: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(content.len() + 64);
    let mut rest = content;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if is_identifier(after[..end].trim()) => {
                if let Some(v) = values.get(after[..end].trim()) {
                    out.push_str(v);
                }
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn invalid(field: &str, msg: impl Into<String>) -> Error {
    Error::invalid_body(field, msg)
}

fn check_channel(raw: &str, field: &str, query: bool) -> Result<String> {
    let c = raw.trim().to_ascii_lowercase();
    if CHANNELS.contains(&c.as_str()) {
        return Ok(c);
    }
    let msg = format!("channel must be one of {}", CHANNELS.join(", "));
    Err(if query {
        Error::invalid("validation_error", FieldError::query(field, msg, "enum"))
    } else {
        Error::invalid("validation_error", FieldError::body(field, msg, "enum"))
    })
}

fn check_agent_type(raw: &str, field: &str, query: bool) -> Result<String> {
    let a = raw.trim().to_ascii_lowercase();
    if AGENT_TYPES.contains(&a.as_str()) {
        return Ok(a);
    }
    let msg = format!("agent_type must be one of {}", AGENT_TYPES.join(", "));
    Err(if query {
        Error::invalid("validation_error", FieldError::query(field, msg, "enum"))
    } else {
        Error::invalid("validation_error", FieldError::body(field, msg, "enum"))
    })
}

fn check_name(raw: &str) -> Result<String> {
    let n = clean_text(raw);
    if n.is_empty() {
        return Err(invalid("name", "name must not be empty"));
    }
    if n.chars().count() > MAX_NAME {
        return Err(invalid("name", format!("name must be at most {MAX_NAME} characters")));
    }
    Ok(n)
}

fn check_content(raw: &str) -> Result<String> {
    // Content keeps its line breaks (a message is written as it will be sent); only NULs and other
    // control characters besides new lines and tabs are dropped.
    let c: String = raw.chars().filter(|c| !c.is_control() || matches!(c, '\n' | '\t')).collect();
    let c = c.trim().to_string();
    if c.is_empty() {
        return Err(invalid("content", "content must not be empty"));
    }
    if c.chars().count() > MAX_CONTENT {
        return Err(invalid("content", format!("content must be at most {MAX_CONTENT} characters")));
    }
    Ok(c)
}

fn check_variables(vars: &[String], field: &str) -> Result<Vec<String>> {
    if vars.len() > MAX_VARIABLES {
        return Err(invalid(field, format!("at most {MAX_VARIABLES} variables")));
    }
    let mut out: Vec<String> = Vec::new();
    for v in vars {
        let v = v.trim().trim_start_matches("{{").trim_end_matches("}}").trim();
        if !is_identifier(v) {
            return Err(invalid(field, format!("`{v}` is not a variable name (letters, digits and _)")));
        }
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}

fn check_whatsapp(name: Option<&str>, language: Option<&str>) -> Result<(Option<String>, Option<String>)> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if let Some(n) = name
        && (n.len() > 512 || !n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(invalid(
            "whatsapp_template_name",
            "a WhatsApp template name has lowercase letters, digits and _ only",
        ));
    }
    let language = language.map(str::trim).filter(|l| !l.is_empty());
    if let Some(l) = language
        && (l.len() > 16 || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(invalid("whatsapp_language", "a language code such as es, es_CL or en_US"));
    }
    Ok((name.map(str::to_string), language.map(str::to_string).or_else(|| name.map(|_| "es".to_string()))))
}

/// The broker a write acts on: an ADMIN's own; SUPERADMIN names one. AGENTs only read.
fn write_broker(ctx: &Ctx, requested: Option<i64>) -> Result<i64> {
    require_writer(ctx)?;
    ctx.target_broker(requested)
}

/// The brokers a read covers: the caller's own; SUPERADMIN one (`broker_id`) or all.
fn read_scope(ctx: &Ctx, requested: Option<i64>) -> Result<Option<i64>> {
    match (ctx.role, ctx.broker_id) {
        (Role::Superadmin, _) => Ok(requested),
        (_, Some(b)) if requested.is_none_or(|r| r == b) => Ok(Some(b)),
        (_, Some(_)) => Err(Error::NotFound("Broker")),
        _ => Err(Error::forbidden("No broker is associated with this account")),
    }
}

fn conflict_on_name(e: sea_orm::DbErr) -> Error {
    if crate::db::unique_constraint(&e).is_some_and(|c| c == "message_templates_name_key") {
        return Error::conflict("template_exists", "A template with this name already exists for this channel");
    }
    e.into()
}

/// Editing and deleting: ADMIN (its own broker's) and SUPERADMIN; AGENTs only read.
fn require_writer(ctx: &Ctx) -> Result<()> {
    if ctx.role == Role::Agent {
        return Err(Error::forbidden("Only administrators manage templates"));
    }
    Ok(())
}

#[derive(Clone, Debug, Default)]
pub struct NewTemplate {
    pub name: String,
    pub channel: String,
    pub content: String,
    pub agent_type: Option<String>,
    /// `None`: taken from the content.
    pub variables: Option<Vec<String>>,
    pub whatsapp_template_name: Option<String>,
    pub whatsapp_language: Option<String>,
    pub whatsapp_parameters: Option<Vec<String>>,
    pub broker_id: Option<i64>,
}

pub async fn create(infra: &Infra, ctx: &Ctx, input: NewTemplate) -> Result<Template> {
    let broker_id = write_broker(ctx, input.broker_id)?;
    let name = check_name(&input.name)?;
    let channel = check_channel(&input.channel, "channel", false)?;
    let content = check_content(&input.content)?;
    let agent_type = input.agent_type.as_deref().map(|a| check_agent_type(a, "agent_type", false)).transpose()?;
    let variables = match &input.variables {
        Some(v) if !v.is_empty() => check_variables(v, "variables")?,
        _ => extract_variables(&content),
    };
    let (wa_name, wa_lang) =
        check_whatsapp(input.whatsapp_template_name.as_deref(), input.whatsapp_language.as_deref())?;
    if wa_name.is_some() && channel != "whatsapp" {
        return Err(invalid("whatsapp_template_name", "only whatsapp templates name an approved WhatsApp template"));
    }
    let wa_params = check_variables(input.whatsapp_parameters.as_deref().unwrap_or(&[]), "whatsapp_parameters")?;
    if crate::entities::brokers::Entity::find_by_id(broker_id).one(&infra.db).await?.is_none() {
        return Err(Error::NotFound("Broker"));
    }
    let row = infra
        .db
        .query_one_raw(stmt(
            &format!(
                "INSERT INTO message_templates (broker_id, name, channel, agent_type, content, variables, \
                   whatsapp_template_name, whatsapp_language, whatsapp_parameters, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
            ),
            vec![
                broker_id.into(),
                name.into(),
                channel.into(),
                agent_type.into(),
                content.into(),
                json!(variables).into(),
                wa_name.into(),
                wa_lang.into(),
                json!(wa_params).into(),
                ctx.user_id.into(),
            ],
        ))
        .await
        .map_err(conflict_on_name)?
        .ok_or_else(|| Error::internal(anyhow::anyhow!("INSERT … RETURNING gave no row")))?;
    let t = decode(&row)?;
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "template_create",
            resource_type: "message_template",
            resource_id: Some(t.id),
            broker_id: Some(t.broker_id),
            changes: json!({"name": t.name, "channel": t.channel}),
        },
    )
    .await?;
    Ok(t)
}

#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub channel: Option<String>,
    pub agent_type: Option<String>,
    pub broker_id: Option<i64>,
}

/// The broker's templates, newest first.
pub async fn list(infra: &Infra, ctx: &Ctx, q: &ListQuery) -> Result<Vec<Template>> {
    let scope = read_scope(ctx, q.broker_id)?;
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut cond = String::from("TRUE");
    if let Some(b) = scope {
        values.push(b.into());
        cond.push_str(&format!(" AND broker_id = ${}", values.len()));
    }
    if let Some(c) = q.channel.as_deref().filter(|c| !c.trim().is_empty()) {
        values.push(check_channel(c, "channel", true)?.into());
        cond.push_str(&format!(" AND channel = ${}", values.len()));
    }
    if let Some(a) = q.agent_type.as_deref().filter(|a| !a.trim().is_empty()) {
        values.push(check_agent_type(a, "agent_type", true)?.into());
        cond.push_str(&format!(" AND agent_type = ${}", values.len()));
    }
    let rows = infra
        .db
        .query_all_raw(stmt(
            &format!(
                "SELECT {COLUMNS} FROM message_templates WHERE {cond} ORDER BY created_at DESC, id DESC LIMIT 1000"
            ),
            values,
        ))
        .await?;
    Ok(rows.iter().map(decode).collect::<std::result::Result<_, _>>()?)
}

/// One template the caller may see; another broker's is a 404.
pub async fn get(infra: &Infra, ctx: &Ctx, id: i64) -> Result<Template> {
    find(&infra.db, ctx, id, false).await
}

async fn find(db: &impl ConnectionTrait, ctx: &Ctx, id: i64, lock: bool) -> Result<Template> {
    let scope = read_scope(ctx, None)?;
    let mut values: Vec<sea_orm::Value> = vec![id.into()];
    let mut cond = String::from("id = $1");
    if let Some(b) = scope {
        values.push(b.into());
        cond.push_str(" AND broker_id = $2");
    }
    let lock = if lock { " FOR UPDATE" } else { "" };
    let row = db
        .query_one_raw(stmt(&format!("SELECT {COLUMNS} FROM message_templates WHERE {cond}{lock}"), values))
        .await?
        .ok_or(Error::NotFound("Template"))?;
    Ok(decode(&row)?)
}

#[derive(Clone, Debug, Default)]
pub struct TemplatePatch {
    pub name: Option<String>,
    pub content: Option<String>,
    pub channel: Option<String>,
    /// `Some(None)`: generic (no agent type).
    pub agent_type: Option<Option<String>>,
    /// `Some(None)`: taken from the content again.
    pub variables: Option<Option<Vec<String>>>,
    pub whatsapp_template_name: Option<Option<String>>,
    pub whatsapp_language: Option<Option<String>>,
    pub whatsapp_parameters: Option<Vec<String>>,
}

pub async fn update(infra: &Infra, ctx: &Ctx, id: i64, patch: TemplatePatch) -> Result<Template> {
    require_writer(ctx)?;
    let txn = infra.db.begin().await?;
    let mut t = find(&txn, ctx, id, true).await?;
    let mut changed = serde_json::Map::new();
    if let Some(n) = &patch.name {
        t.name = check_name(n)?;
        changed.insert("name".into(), json!(t.name));
    }
    if let Some(c) = &patch.channel {
        t.channel = check_channel(c, "channel", false)?;
        changed.insert("channel".into(), json!(t.channel));
    }
    let content_changed = match &patch.content {
        Some(c) => {
            let c = check_content(c)?;
            let differs = c != t.content;
            t.content = c;
            differs
        }
        None => false,
    };
    if content_changed {
        changed.insert("content".into(), json!(true));
    }
    if let Some(a) = &patch.agent_type {
        t.agent_type = a.as_deref().map(|a| check_agent_type(a, "agent_type", false)).transpose()?;
        changed.insert("agent_type".into(), json!(t.agent_type));
    }
    match &patch.variables {
        Some(Some(v)) => t.variables = check_variables(v, "variables")?,
        Some(None) => t.variables = extract_variables(&t.content),
        None if content_changed => t.variables = extract_variables(&t.content),
        None => {}
    }
    let wa_name = patch.whatsapp_template_name.clone().unwrap_or(t.whatsapp_template_name.clone());
    let wa_lang = patch.whatsapp_language.clone().unwrap_or(t.whatsapp_language.clone());
    let (wa_name, wa_lang) = check_whatsapp(wa_name.as_deref(), wa_lang.as_deref())?;
    if wa_name.is_some() && t.channel != "whatsapp" {
        return Err(invalid("whatsapp_template_name", "only whatsapp templates name an approved WhatsApp template"));
    }
    t.whatsapp_template_name = wa_name;
    t.whatsapp_language = wa_lang;
    if let Some(p) = &patch.whatsapp_parameters {
        t.whatsapp_parameters = check_variables(p, "whatsapp_parameters")?;
    }
    let row = txn
        .query_one_raw(stmt(
            &format!(
                "UPDATE message_templates SET name = $2, channel = $3, agent_type = $4, content = $5, variables = $6, \
                   whatsapp_template_name = $7, whatsapp_language = $8, whatsapp_parameters = $9, updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            vec![
                t.id.into(),
                t.name.clone().into(),
                t.channel.clone().into(),
                t.agent_type.clone().into(),
                t.content.clone().into(),
                json!(t.variables).into(),
                t.whatsapp_template_name.clone().into(),
                t.whatsapp_language.clone().into(),
                json!(t.whatsapp_parameters).into(),
            ],
        ))
        .await
        .map_err(conflict_on_name)?
        .ok_or(Error::NotFound("Template"))?;
    let updated = decode(&row)?;
    audit::record(
        &txn,
        ctx,
        audit::Entry {
            action: "template_update",
            resource_type: "message_template",
            resource_id: Some(updated.id),
            broker_id: Some(updated.broker_id),
            changes: Value::Object(changed),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(updated)
}

pub async fn delete(infra: &Infra, ctx: &Ctx, id: i64) -> Result<()> {
    require_writer(ctx)?;
    let t = find(&infra.db, ctx, id, false).await?;
    infra.db.execute_raw(stmt("DELETE FROM message_templates WHERE id = $1", vec![t.id.into()])).await?;
    audit::record(
        &infra.db,
        ctx,
        audit::Entry {
            action: "template_delete",
            resource_type: "message_template",
            resource_id: Some(t.id),
            broker_id: Some(t.broker_id),
            changes: json!({"name": t.name}),
        },
    )
    .await?;
    Ok(())
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rendered {
    pub template_id: i64,
    pub lead_id: i64,
    pub channel: String,
    pub rendered: String,
    /// The template's placeholders that had a value for this lead.
    pub variables_used: Vec<String>,
    /// The placeholders left empty.
    pub missing: Vec<String>,
    /// For WhatsApp outside the 24-hour window: the approved template and its body parameters.
    pub whatsapp_template: Option<Value>,
}

/// The values a template can use for one lead (SPEC §10).
pub async fn lead_values(
    infra: &Infra,
    db: &impl ConnectionTrait,
    lead: &crate::entities::leads::Model,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, String>> {
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    // Every metadata key first, so the named values below win over a metadata key of the same name.
    for (k, v) in open_metadata(&infra.cipher, lead.metadata.clone()) {
        let s = match v {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Object(ref o) if o.contains_key("amount") => {
                format!("{} {}", o["amount"], o.get("currency").and_then(Value::as_str).unwrap_or(""))
                    .trim()
                    .to_string()
            }
            other => other.to_string(),
        };
        values.insert(k, s);
    }
    let real_name = lead.name.as_deref().filter(|n| crate::chat::engine::profile::is_real_name(n));
    values.insert("name".into(), real_name.unwrap_or("Cliente").to_string());
    values.insert(
        "first_name".into(),
        real_name.and_then(|n| n.split_whitespace().next()).unwrap_or("Cliente").to_string(),
    );
    if let Some(p) = lead.phone.as_deref().filter(|p| crate::chat::engine::profile::is_real_phone(p)) {
        values.insert("phone".into(), p.to_string());
    } else {
        values.remove("phone");
    }
    if let Some(e) = &lead.email {
        values.insert("email".into(), e.clone());
    }
    values.insert("score".into(), format!("{:.0}", lead.lead_score));
    values.insert("stage".into(), lead.pipeline_stage.clone());
    values.insert("date".into(), day_long_es(now.with_timezone(&TZ).date_naive()));
    let row = db
        .query_one_raw(stmt(
            "SELECT b.name, p.agent_name, u.name, \
                    (SELECT a.start_time FROM appointments a WHERE a.lead_id = $2 AND a.start_time > $3 \
                       AND a.status IN ('scheduled', 'confirmed') ORDER BY a.start_time LIMIT 1) \
             FROM brokers b LEFT JOIN broker_prompt_configs p ON p.broker_id = b.id \
             LEFT JOIN users u ON u.id = $4 WHERE b.id = $1",
            vec![lead.broker_id.into(), lead.id.into(), now.into(), lead.assigned_to.into()],
        ))
        .await?;
    if let Some(r) = row {
        let broker: String = r.try_get_by_index(0)?;
        let assistant: Option<String> = r.try_get_by_index(1)?;
        let agent: Option<String> = r.try_get_by_index(2)?;
        let next: Option<DateTime<Utc>> = r.try_get_by_index(3)?;
        values.insert("broker_name".into(), broker);
        if let Some(a) = agent.or(assistant) {
            values.insert("agent_name".into(), a);
        }
        if let Some(at) = next {
            let local = at.with_timezone(&TZ);
            values.insert("appointment_date".into(), day_long_es(local.date_naive()));
            values.insert("appointment_time".into(), local.format("%H:%M").to_string());
        }
    }
    Ok(values)
}

/// `POST /templates/{id}/render {lead_id}`: the template filled for one lead the caller may see.
pub async fn render_for_lead(infra: &Infra, ctx: &Ctx, id: i64, lead_id: i64) -> Result<Rendered> {
    let t = find(&infra.db, ctx, id, false).await?;
    let lead = repo::find_visible(&infra.db, ctx, lead_id).await?;
    if lead.broker_id != t.broker_id {
        return Err(Error::NotFound("Lead"));
    }
    let values = lead_values(infra, &infra.db, &lead, Utc::now()).await?;
    let placeholders = extract_variables(&t.content);
    let (used, missing): (Vec<String>, Vec<String>) =
        placeholders.into_iter().partition(|p| values.get(p).is_some_and(|v| !v.is_empty()));
    let whatsapp_template = t.whatsapp_template_name.as_ref().map(|name| {
        json!({
            "name": name,
            "language": t.whatsapp_language.clone().unwrap_or_else(|| "es".into()),
            "parameters": t.whatsapp_parameters.iter().map(|p| values.get(p).cloned().unwrap_or_default()).collect::<Vec<_>>(),
        })
    });
    Ok(Rendered {
        template_id: t.id,
        lead_id: lead.id,
        channel: t.channel.clone(),
        rendered: render(&t.content, &values),
        variables_used: used,
        missing,
        whatsapp_template,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_found_once_in_order() {
        assert_eq!(
            extract_variables("Hola {{name}}, soy {{ agent_name }} de {{broker_name}}. {{name}} {{no válido!}} {{}}"),
            vec!["name", "agent_name", "broker_name"]
        );
        assert!(extract_variables("sin variables {{").is_empty());
    }

    #[test]
    fn rendering_fills_known_values_and_empties_unknown_ones() {
        let mut v = BTreeMap::new();
        v.insert("name".to_string(), "Ana {{broker_name}}".to_string());
        v.insert("broker_name".to_string(), "Corredora".to_string());
        assert_eq!(render("Hola {{name}} de {{ broker_name }}{{x}}!", &v), "Hola Ana {{broker_name}} de Corredora!");
        assert_eq!(render("precio {{ 1.000 UF }} y {{", &v), "precio {{ 1.000 UF }} y {{");
        assert_eq!(render("ñandú {{name}}", &v), "ñandú Ana {{broker_name}}");
    }

    #[test]
    fn variable_lists_are_checked() {
        assert_eq!(
            check_variables(&["{{name}}".into(), "name".into(), "x_1".into()], "v").unwrap(),
            vec!["name", "x_1"]
        );
        assert!(check_variables(&["a b".into()], "v").is_err());
        assert!(check_whatsapp(Some("Promo Navidad"), None).is_err());
        assert_eq!(
            check_whatsapp(Some("promo_navidad"), None).unwrap(),
            (Some("promo_navidad".into()), Some("es".into()))
        );
    }
}
