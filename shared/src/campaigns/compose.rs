//! The words of a campaign: the text a `send_message` step sends to one lead (its template or its
//! own text rendered for the lead, or one written by the LLM), the approved WhatsApp template that
//! goes with a template step, and the preview of a campaign's message for a sample lead
//! (`POST /campaigns/{id}/preview-message`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use serde_json::{Value, json};

use super::model::{Campaign, MAX_MESSAGE, Step, check_action, check_channel};
use super::service::{find, stmt};
use crate::channels::whatsapp::TemplateMessage;
use crate::ctx::Ctx;
use crate::entities::leads;
use crate::error::{Error, FieldError, Result};
use crate::integrations::llm::{CallType, Message, Request};
use crate::leads::model::TZ;
use crate::text::day_long_es;
use crate::{Infra, templates};

/// What a message step sends to one lead.
#[derive(Clone, Debug, PartialEq)]
pub struct Composed {
    pub text: String,
    /// The step's template names an approved WhatsApp template: sent instead of the text outside
    /// the 24-hour window.
    pub template: Option<TemplateMessage>,
}

pub(crate) fn failure(code: &str, detail: impl Into<String>) -> Value {
    json!({"status": "failed", "error": code, "detail": detail.into()})
}

/// A broker's message template as a step uses it.
struct StepTemplate {
    content: String,
    whatsapp: Option<(String, String, Vec<String>)>,
}

async fn step_template(db: &impl ConnectionTrait, broker_id: i64, id: i64) -> Result<Option<StepTemplate>> {
    let Some(r) = db
        .query_one_raw(stmt(
            "SELECT content, whatsapp_template_name, whatsapp_language, whatsapp_parameters \
             FROM message_templates WHERE id = $1 AND broker_id = $2",
            vec![id.into(), broker_id.into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    let name: Option<String> = r.try_get_by_index(1)?;
    let language: Option<String> = r.try_get_by_index(2)?;
    let parameters: Value = r.try_get_by_index(3)?;
    let parameters: Vec<String> = parameters
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    Ok(Some(StepTemplate {
        content: r.try_get_by_index(0)?,
        whatsapp: name.map(|n| (n, language.unwrap_or_else(|| "es".into()), parameters)),
    }))
}

/// The approved template `name` in `language`, its body parameters filled from `values` (the
/// template's variables, in order; an unknown one is empty).
pub fn whatsapp_template(
    name: &str,
    language: &str,
    parameters: &[String],
    values: &BTreeMap<String, String>,
) -> TemplateMessage {
    TemplateMessage {
        name: name.to_string(),
        language: language.to_string(),
        parameters: parameters.iter().map(|p| values.get(p).cloned().unwrap_or_default()).collect(),
    }
}

/// The text of a message step for `lead`: its template rendered for the lead, else its own text
/// (rendered too: it may use `{{name}}`), else one written by the LLM. `Err` carries the step's
/// failure result.
pub async fn for_lead(
    infra: &Infra,
    c: &Campaign,
    step: &Step,
    lead: &leads::Model,
    now: DateTime<Utc>,
) -> Result<std::result::Result<Composed, Value>> {
    let values = templates::lead_values(infra, &infra.db, lead, now).await?;
    if let Some(t) = step.message_template_id {
        let Some(tpl) = step_template(&infra.db, c.broker_id, t).await? else {
            return Ok(Err(failure("template_not_found", format!("Template {t} no longer exists"))));
        };
        let template = tpl.whatsapp.as_ref().map(|(n, l, p)| whatsapp_template(n, l, p, &values));
        return Ok(Ok(Composed { text: templates::render(&tpl.content, &values), template }));
    }
    if let Some(text) = &step.message_text {
        return Ok(Ok(Composed { text: templates::render(text, &values), template: None }));
    }
    if step.use_ai_message {
        let brief = json!({
            "campaign": c.name, "description": c.description, "step_number": step.step_number,
            "lead_first_name": values.get("first_name"), "broker_name": values.get("broker_name"),
            "stage": lead.pipeline_stage, "location": values.get("location"), "goal": step.conditions.get("goal"),
        });
        let written = write(infra, c.broker_id, Some(lead.id), FOLLOW_UP_PROMPT, &brief).await?;
        let text = written.unwrap_or_else(|| greeting(&values));
        return Ok(Ok(Composed { text, template: None }));
    }
    Ok(Err(failure("message_required", "The step has no template, text or AI message")))
}

const FOLLOW_UP_PROMPT: &str = "Eres Sofía, asistente de una corredora de propiedades en Chile. Escribe UN mensaje \
    breve (máximo 3 frases), cálido y en español de Chile, para retomar contacto con el cliente según la campaña \
    indicada. Sin promesas de aprobación de crédito ni precios inventados. Responde solo con el texto del mensaje.";

const PREVIEW_PROMPT: &str = "Eres Sofía, asistente de una corredora de propiedades en Chile. Escribe UN mensaje de \
    ejemplo de la campaña indicada para el cliente de muestra, en español de Chile, cálido y breve (máximo 3 \
    frases). Si la acción es make_call, escribe cómo abrirías la llamada. Si hay un texto base, respeta su \
    intención. Sin promesas de aprobación de crédito ni precios inventados. Responde solo con el texto.";

/// The fixed follow-up greeting (the reference's "AI" message, and the fallback without an LLM).
fn greeting(values: &BTreeMap<String, String>) -> String {
    let first = values.get("first_name").map_or("Cliente", String::as_str);
    let broker = values.get("broker_name").filter(|b| !b.is_empty()).map_or("nuestra corredora", String::as_str);
    format!("Hola {first}, te escribimos de {broker}. ¿Sigues buscando tu propiedad? Cuéntanos y te ayudamos.")
}

/// One LLM call with `system` and the JSON `brief`, recorded in the cost ledger. `None` without a
/// configured LLM, or when it fails or answers nothing (the caller has a fixed text).
async fn write(
    infra: &Infra,
    broker_id: i64,
    lead_id: Option<i64>,
    system: &str,
    brief: &Value,
) -> Result<Option<String>> {
    let Some(router) = infra.llm.clone() else { return Ok(None) };
    let req = Request::new(CallType::Other, vec![Message::system(system), Message::user(brief.to_string())]);
    let (records, answer) = router.complete(infra, &req).await;
    for r in &records {
        crate::chat::ledger::record(&infra.db, Some(broker_id), lead_id, r, None).await?;
    }
    Ok(match answer {
        Ok(done) => {
            let text: String = done.text.trim().chars().take(MAX_MESSAGE).collect();
            (!text.is_empty()).then_some(text)
        }
        Err(e) => {
            tracing::warn!(error = %e, broker_id, "the LLM did not write the campaign message; using the fixed text");
            None
        }
    })
}

/// A campaign's message as a sample lead would get it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Preview {
    pub message: String,
    /// The channel previewed: the one asked for, else the step's, else the campaign's.
    pub channel: String,
    /// `send_message` or `make_call` (the opening of the call).
    pub action: String,
    /// `llm` (one call to the configured LLM), `template`, `message_text` (the step's own words
    /// rendered for the sample lead) or `default` (the fixed greeting).
    pub generated_by: String,
    /// The step the preview is based on, when the campaign has one for the action.
    pub step_id: Option<i64>,
}

/// The values of the sample lead ("María González" of Ñuñoa) with the broker's real name and
/// assistant, so a preview reads as the real message would.
async fn sample_values(infra: &Infra, broker_id: i64, now: DateTime<Utc>) -> Result<BTreeMap<String, String>> {
    let row = infra
        .db
        .query_one_raw(stmt(
            "SELECT b.name, p.agent_name FROM brokers b LEFT JOIN broker_prompt_configs p ON p.broker_id = b.id \
             WHERE b.id = $1",
            vec![broker_id.into()],
        ))
        .await?;
    let (broker, assistant): (Option<String>, Option<String>) = match row {
        Some(r) => (r.try_get_by_index(0)?, r.try_get_by_index(1)?),
        None => (None, None),
    };
    let tomorrow = (now.with_timezone(&TZ) + Duration::days(1)).date_naive();
    let values = [
        ("name", "María González"),
        ("first_name", "María"),
        ("phone", "+56912345678"),
        ("email", "maria.gonzalez@ejemplo.cl"),
        ("location", "Ñuñoa"),
        ("budget", "UF 3.500"),
        ("timeline", "3 meses"),
        ("score", "50"),
        ("stage", "perfilamiento"),
        ("appointment_time", "10:00"),
    ];
    let mut out: BTreeMap<String, String> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    out.insert("broker_name".into(), broker.unwrap_or_default());
    out.insert("agent_name".into(), assistant.filter(|a| !a.trim().is_empty()).unwrap_or_else(|| "Sofía".into()));
    out.insert("date".into(), day_long_es(now.with_timezone(&TZ).date_naive()));
    out.insert("appointment_date".into(), day_long_es(tomorrow));
    Ok(out)
}

fn check_preview_action(raw: Option<&str>) -> Result<String> {
    let action = match raw.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => check_action(a)?,
        None => "send_message".to_string(),
    };
    if action == "update_stage" {
        return Err(Error::invalid(
            "action_sends_no_message",
            FieldError::body("action", "update_stage steps send no message; use send_message or make_call", "enum"),
        ));
    }
    Ok(action)
}

/// The deterministic preview of `step` (or of the campaign without one) for the sample lead.
async fn offline(
    infra: &Infra,
    c: &Campaign,
    step: Option<&Step>,
    action: &str,
    values: &BTreeMap<String, String>,
) -> Result<(String, &'static str)> {
    if action == "make_call" {
        let broker = values.get("broker_name").filter(|b| !b.is_empty()).map_or("nuestra corredora", String::as_str);
        let agent = values.get("agent_name").map_or("Sofía", String::as_str);
        let first = values.get("first_name").map_or("Cliente", String::as_str);
        return Ok((
            format!(
                "Hola {first}, te habla {agent} de {broker}. Te llamo por «{}»: ¿tienes un par de minutos para \
                 conversar sobre la propiedad que buscas?",
                c.name
            ),
            "default",
        ));
    }
    let Some(step) = step else { return Ok((greeting(values), "default")) };
    if let Some(t) = step.message_template_id
        && let Some(tpl) = step_template(&infra.db, c.broker_id, t).await?
    {
        return Ok((templates::render(&tpl.content, values).trim().to_string(), "template"));
    }
    if let Some(text) = &step.message_text {
        return Ok((templates::render(text, values).trim().to_string(), "message_text"));
    }
    Ok((greeting(values), "default"))
}

/// `POST /campaigns/{id}/preview-message {channel?, action?}`: the campaign's message (default
/// `send_message`; `make_call` previews the call's opening) as the sample lead would get it. With
/// a configured LLM it is written by one call (in the cost ledger), from the first step of that
/// action; without one, or when the call fails, it is that step's template or text rendered for
/// the sample lead, or the fixed greeting — never an error for want of an LLM.
pub async fn preview(
    infra: &Infra,
    ctx: &Ctx,
    id: i64,
    channel: Option<&str>,
    action: Option<&str>,
) -> Result<Preview> {
    let action = check_preview_action(action)?;
    let requested = match channel.map(str::trim).filter(|c| !c.is_empty()) {
        Some(ch) => Some(check_channel(ch, "channel", false)?),
        None => None,
    };
    let c = find(&infra.db, ctx, id, false).await?;
    let step = c.steps.iter().find(|s| s.action == action);
    let channel = requested.or_else(|| step.and_then(|s| s.channel.clone())).unwrap_or_else(|| c.channel.clone());
    let now = Utc::now();
    let values = sample_values(infra, c.broker_id, now).await?;
    let (base, source) = offline(infra, &c, step, &action, &values).await?;
    let brief = json!({
        "campaign": c.name, "description": c.description, "trigger": c.triggered_by, "channel": channel,
        "action": action, "step_number": step.map(|s| s.step_number), "base_text": base,
        "sample_lead": {"first_name": values.get("first_name"), "location": values.get("location")},
        "broker_name": values.get("broker_name"), "assistant_name": values.get("agent_name"),
    });
    let (message, generated_by) = match write(infra, c.broker_id, None, PREVIEW_PROMPT, &brief).await? {
        Some(text) => (text, "llm"),
        None => (base, source),
    };
    Ok(Preview { message, channel, action, generated_by: generated_by.into(), step_id: step.map(|s| s.id) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parameters_are_filled_in_order_and_unknown_ones_are_empty() {
        let values: BTreeMap<String, String> = [("first_name", "Rosa"), ("appointment_time", "10:00")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let t = whatsapp_template(
            "recordatorio_cita",
            "es_CL",
            &["first_name".into(), "nope".into(), "appointment_time".into()],
            &values,
        );
        assert_eq!((t.name.as_str(), t.language.as_str()), ("recordatorio_cita", "es_CL"));
        assert_eq!(t.parameters, vec!["Rosa", "", "10:00"]);
    }

    #[test]
    fn previews_are_for_messages_and_calls_only() {
        assert_eq!(check_preview_action(None).unwrap(), "send_message");
        assert_eq!(check_preview_action(Some(" MAKE_CALL ")).unwrap(), "make_call");
        assert_eq!(check_preview_action(Some("update_stage")).unwrap_err().code(), "action_sends_no_message");
        assert_eq!(check_preview_action(Some("fax")).unwrap_err().code(), "validation_error");
    }
}
