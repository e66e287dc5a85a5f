//! How the engine's [`Profile`] maps onto a lead: name, phone and email columns, the rest under the
//! `lead_metadata` keys of SPEC §15 (sensitive ones sealed by the caller with `seal_metadata`).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::chat::engine::Profile;
use crate::chat::engine::extract::DicomStatus;
use crate::entities::leads;

fn get<T: DeserializeOwned>(meta: &Map<String, Value>, key: &str) -> Option<T> {
    meta.get(key).filter(|v| !v.is_null()).and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// What is known about `lead` (metadata already opened).
pub fn profile_of(lead: &leads::Model, meta: &Map<String, Value>) -> Profile {
    // A phone or email another lead of the broker already has stays in metadata only.
    let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_string);
    let dicom_status = match meta.get("dicom_status").and_then(Value::as_str) {
        Some("dirty") => Some(DicomStatus::HasDebt),
        _ => get(meta, "dicom_status"),
    };
    Profile {
        name: lead.name.clone(),
        phone: lead.phone.clone().or_else(|| text("contact_phone")),
        email: lead.email.clone().or_else(|| text("contact_email")),
        location: text("location").filter(|l| !l.trim().is_empty()),
        monthly_income: get(meta, "monthly_income"),
        budget: get(meta, "budget"),
        dicom_status,
        morosidad_amount: get(meta, "morosidad_amount"),
        property_type: get(meta, "property_type"),
        bedrooms: get(meta, "bedrooms"),
        timeline: get(meta, "timeline"),
        intent: get(meta, "intent"),
        calificacion: lead.calificacion.as_deref().and_then(|c| c.parse().ok()),
        key_points: get(meta, "key_points").unwrap_or_default(),
    }
}

/// Writes the profile's metadata keys (never erasing one: the merge never forgets a value).
pub fn store_profile(meta: &mut Map<String, Value>, p: &Profile) {
    let mut put = |key: &str, v: Option<Value>| {
        if let Some(v) = v {
            meta.insert(key.to_string(), v);
        }
    };
    put("location", p.location.clone().map(Value::from));
    put("monthly_income", p.monthly_income.map(Value::from));
    put("budget", p.budget.map(|b| json!({"amount": b.amount, "currency": b.currency.as_str()})));
    put("dicom_status", p.dicom_status.map(|d| Value::from(d.as_str())));
    put("morosidad_amount", p.morosidad_amount.map(Value::from));
    put("property_type", p.property_type.map(|t| Value::from(t.as_str())));
    put("bedrooms", p.bedrooms.map(Value::from));
    put("timeline", p.timeline.map(|t| Value::from(t.as_str())));
    put("intent", p.intent.map(|i| Value::from(i.as_str())));
    if !p.key_points.is_empty() {
        meta.insert("key_points".into(), json!(p.key_points));
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::chat::engine::extract::{Budget, Currency, Intent, PropertyType, Timeline};

    fn lead() -> leads::Model {
        leads::Model {
            id: 1,
            broker_id: 1,
            phone: Some("+56912345678".into()),
            name: Some("Ana Soto".into()),
            email: None,
            status: "cold".into(),
            lead_score: 0.0,
            lead_score_components: json!({}),
            pipeline_stage: "entrada".into(),
            stage_entered_at: Utc::now(),
            calificacion: Some("potencial".into()),
            conversation_state: None,
            assigned_to: None,
            tags: json!([]),
            metadata: json!({}),
            campaign_history: json!([]),
            human_mode: false,
            human_assigned_to: None,
            human_taken_at: None,
            human_released_at: None,
            close_reason: None,
            close_reason_detail: None,
            closed_at: None,
            notes: None,
            last_contacted: None,
            search_text: String::new(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn a_profile_round_trips_through_metadata() {
        let p = Profile {
            name: Some("Ana Soto".into()),
            phone: Some("+56912345678".into()),
            location: Some("Ñuñoa".into()),
            monthly_income: Some(1_200_000),
            budget: Some(Budget { amount: 3000.0, currency: Currency::Uf }),
            dicom_status: Some(DicomStatus::HasDebt),
            morosidad_amount: Some(200_000),
            property_type: Some(PropertyType::Departamento),
            bedrooms: Some(2),
            timeline: Some(Timeline::Days30),
            intent: Some(Intent::PropertySearch),
            calificacion: "potencial".parse().ok(),
            key_points: vec!["trabajador independiente".into()],
            ..Profile::default()
        };
        let mut meta = Map::new();
        store_profile(&mut meta, &p);
        assert_eq!(meta["budget"], json!({"amount": 3000.0, "currency": "UF"}));
        assert_eq!(meta["timeline"], "30days");
        assert_eq!(profile_of(&lead(), &meta), p);
    }

    #[test]
    fn legacy_and_conflicting_values_are_read() {
        let meta = json!({"dicom_status": "dirty", "contact_email": "ana@correo.cl", "monthly_income": "x"});
        let p = profile_of(&lead(), meta.as_object().unwrap());
        assert_eq!(p.dicom_status, Some(DicomStatus::HasDebt));
        assert_eq!(p.email.as_deref(), Some("ana@correo.cl"));
        assert_eq!(p.monthly_income, None, "a malformed value is unknown");
    }
}
