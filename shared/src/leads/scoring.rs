//! The lead score (SPEC §7): 0–100, recomputed from what is known about the lead — never a running
//! sum of deltas — and explained term by term in `lead_score_components`.
//!
//! score = clamp(profile + financial + engagement + intent − penalties, 0, 100)
//! - profile: name 10, phone 10, email 5, location 10, budget 5 (the broker's `field_weights`);
//! - financial: income tier (≥ 3 000 000 → 30, ≥ 2 000 000 → 25, ≥ 1 000 000 → 18, ≥ 500 000 → 10)
//!   plus DICOM (clean +15; a debt within `max_acceptable_debt` +5);
//! - engagement: ≥ 5 inbound messages +5, fast responder +5, appointment booked +5;
//! - intent: −10…+10 (urgency, wants a visit, "solo mirando");
//! - penalties: opt-out ("no me llamen") −30, no contact for 60 days −5.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::model::Status;

/// What the score is computed from (already decrypted and parsed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoreInput {
    pub has_name: bool,
    pub has_phone: bool,
    pub has_email: bool,
    pub has_location: bool,
    pub has_budget: bool,
    pub monthly_income: Option<i64>,
    pub dicom: Option<Dicom>,
    pub morosidad_amount: Option<i64>,
    pub inbound_messages: u32,
    pub fast_responder: bool,
    pub appointment_booked: bool,
    /// `immediate` | `30days` | `90days` | `just_looking`
    pub timeline: Option<String>,
    /// `schedule_visit` and friends
    pub intent: Option<String>,
    pub opted_out: bool,
    pub last_contacted: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dicom {
    Clean,
    HasDebt,
    Unknown,
}

impl Dicom {
    /// Reads a stored `dicom_status` (`dirty` is the legacy spelling of `has_debt`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "clean" => Some(Dicom::Clean),
            "has_debt" | "dirty" => Some(Dicom::HasDebt),
            "unknown" => Some(Dicom::Unknown),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dicom::Clean => "clean",
            Dicom::HasDebt => "has_debt",
            Dicom::Unknown => "unknown",
        }
    }
}

/// One income tier: at least `min` CLP a month earns `points`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct IncomeTier {
    pub min: i64,
    pub points: f64,
    #[serde(default)]
    pub label: Option<String>,
}

/// The broker's scoring parameters (`broker_lead_configs`).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoringConfig {
    pub name: f64,
    pub phone: f64,
    pub email: f64,
    pub location: f64,
    pub budget: f64,
    /// Highest `min` first.
    pub income_tiers: Vec<IncomeTier>,
    pub dicom_clean_pts: f64,
    pub dicom_small_debt_pts: f64,
    pub max_acceptable_debt: i64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            name: 10.0,
            phone: 10.0,
            email: 5.0,
            location: 10.0,
            budget: 5.0,
            income_tiers: vec![
                IncomeTier { min: 3_000_000, points: 30.0, label: Some("excelente".into()) },
                IncomeTier { min: 2_000_000, points: 25.0, label: Some("alto".into()) },
                IncomeTier { min: 1_000_000, points: 18.0, label: Some("medio".into()) },
                IncomeTier { min: 500_000, points: 10.0, label: Some("bajo".into()) },
            ],
            dicom_clean_pts: 15.0,
            dicom_small_debt_pts: 5.0,
            max_acceptable_debt: 0,
        }
    }
}

impl ScoringConfig {
    /// From the stored `field_weights` and `scoring_config` JSON; missing or malformed keys keep
    /// their defaults (a broker's typo must not zero its scores).
    pub fn from_stored(field_weights: &Value, scoring_config: Option<&Value>, max_acceptable_debt: i64) -> Self {
        let mut c = Self { max_acceptable_debt: max_acceptable_debt.max(0), ..Self::default() };
        let weight = |k: &str, default: f64| field_weights.get(k).and_then(Value::as_f64).unwrap_or(default);
        c.name = weight("name", c.name);
        c.phone = weight("phone", c.phone);
        c.email = weight("email", c.email);
        c.location = weight("location", c.location);
        c.budget = weight("budget", c.budget);
        if let Some(sc) = scoring_config {
            if let Some(tiers) =
                sc.get("income_tiers").and_then(|t| serde_json::from_value::<Vec<IncomeTier>>(t.clone()).ok())
            {
                let mut tiers: Vec<IncomeTier> = tiers.into_iter().filter(|t| t.points > 0.0).collect();
                tiers.sort_by_key(|t| std::cmp::Reverse(t.min));
                c.income_tiers = tiers;
            }
            if let Some(v) = sc.get("dicom_clean_pts").and_then(Value::as_f64) {
                c.dicom_clean_pts = v;
            }
            if let Some(v) =
                sc.get("dicom_has_debt_pts").or_else(|| sc.get("dicom_small_debt_pts")).and_then(Value::as_f64)
            {
                c.dicom_small_debt_pts = v;
            }
        }
        c
    }
}

/// The score with every term that made it.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub total: f64,
    pub profile: f64,
    pub financial: f64,
    pub engagement: f64,
    pub intent: f64,
    pub penalties: f64,
    /// `{profile: {...}, financial: {...}, engagement: {...}, intent: {...}, penalties: {...}, total}`
    pub components: Value,
}

const INACTIVE_DAYS: i64 = 60;

/// Computes the score of `input` under `cfg` as of `now`.
pub fn score(input: &ScoreInput, cfg: &ScoringConfig, now: DateTime<Utc>) -> Score {
    let pick = |known: bool, pts: f64| if known { pts } else { 0.0 };
    let profile_terms = json!({
        "name": pick(input.has_name, cfg.name),
        "phone": pick(input.has_phone, cfg.phone),
        "email": pick(input.has_email, cfg.email),
        "location": pick(input.has_location, cfg.location),
        "budget": pick(input.has_budget, cfg.budget),
    });
    let profile = sum(&profile_terms);

    let income_pts = input
        .monthly_income
        .and_then(|income| cfg.income_tiers.iter().find(|t| income >= t.min))
        .map_or(0.0, |t| t.points);
    let debt = input.morosidad_amount.unwrap_or(0).max(0);
    let dicom_pts = match input.dicom {
        Some(Dicom::Clean) => cfg.dicom_clean_pts,
        Some(Dicom::HasDebt) if debt > 0 && debt <= cfg.max_acceptable_debt => cfg.dicom_small_debt_pts,
        _ => 0.0,
    };
    let financial_terms = json!({"income": income_pts, "dicom": dicom_pts});
    let financial = income_pts + dicom_pts;

    let engagement_terms = json!({
        "messages": pick(input.inbound_messages >= 5, 5.0),
        "fast_responder": pick(input.fast_responder, 5.0),
        "appointment": pick(input.appointment_booked, 5.0),
    });
    let engagement = sum(&engagement_terms);

    let urgency: f64 = match input.timeline.as_deref() {
        Some("immediate") => 5.0,
        Some("30days") => 3.0,
        Some("90days") => 1.0,
        _ => 0.0,
    };
    let visit = if input.intent.as_deref() == Some("schedule_visit") || input.appointment_booked { 5.0 } else { 0.0 };
    let looking: f64 = if input.timeline.as_deref() == Some("just_looking") { -10.0 } else { 0.0 };
    let intent = (urgency + visit + looking).clamp(-10.0, 10.0);
    let intent_terms = json!({"urgency": urgency, "visit": visit, "just_looking": looking, "total": intent});

    let last_touch = input.last_contacted.or(input.created_at);
    let inactive = last_touch.is_some_and(|t| now - t > chrono::Duration::days(INACTIVE_DAYS));
    let penalty_terms = json!({
        "opt_out": pick(input.opted_out, 30.0),
        "inactive": pick(inactive, 5.0),
    });
    let penalties = sum(&penalty_terms);

    let total = round1((profile + financial + engagement + intent - penalties).clamp(0.0, 100.0));
    let components = json!({
        "profile": with_total(profile_terms, profile),
        "financial": with_total(financial_terms, financial),
        "engagement": with_total(engagement_terms, engagement),
        "intent": intent_terms,
        "penalties": with_total(penalty_terms, penalties),
        "total": total,
    });
    Score { total, profile, financial, engagement, intent, penalties, components }
}

/// The temperature a score gives, unless the lead is closed: `converted` and `lost` follow the
/// stages `ganado` / `perdido` and scoring never overwrites them.
pub fn status(score: f64, stage: &str, current: &str, cold_max: i32, warm_max: i32) -> Status {
    match stage {
        "ganado" => return Status::Converted,
        "perdido" => return Status::Lost,
        _ => {}
    }
    match current {
        "converted" => Status::Converted,
        "lost" => Status::Lost,
        _ => Status::from_score(score, cold_max, warm_max),
    }
}

fn sum(terms: &Value) -> f64 {
    terms.as_object().map_or(0.0, |m| m.values().filter_map(Value::as_f64).sum())
}

fn with_total(mut terms: Value, total: f64) -> Value {
    if let Some(m) = terms.as_object_mut() {
        m.insert("total".into(), json!(total));
    }
    terms
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn full() -> ScoreInput {
        ScoreInput {
            has_name: true,
            has_phone: true,
            has_email: true,
            has_location: true,
            has_budget: false,
            monthly_income: Some(1_500_000),
            dicom: Some(Dicom::Clean),
            inbound_messages: 6,
            last_contacted: Some(now()),
            ..ScoreInput::default()
        }
    }

    #[test]
    fn an_unknown_lead_scores_zero() {
        let s = score(&ScoreInput::default(), &ScoringConfig::default(), now());
        assert_eq!(s.total, 0.0);
        assert_eq!(s.components["profile"]["total"], 0.0);
    }

    #[test]
    fn every_term_is_explained_and_adds_up() {
        let s = score(&full(), &ScoringConfig::default(), now());
        // profile 35 + financial 18 + 15 + engagement 5
        assert_eq!((s.profile, s.financial, s.engagement, s.intent, s.penalties), (35.0, 33.0, 5.0, 0.0, 0.0));
        assert_eq!(s.total, 73.0);
        assert_eq!(s.components["financial"]["income"], 18.0);
        assert_eq!(s.components["financial"]["dicom"], 15.0);
        assert_eq!(s.components["total"], 73.0);
    }

    #[test]
    fn income_tiers_follow_the_spec() {
        let cfg = ScoringConfig::default();
        for (income, pts) in
            [(3_000_000, 30.0), (2_500_000, 25.0), (1_000_000, 18.0), (999_999, 10.0), (500_000, 10.0), (499_999, 0.0)]
        {
            let s = score(&ScoreInput { monthly_income: Some(income), ..ScoreInput::default() }, &cfg, now());
            assert_eq!(s.financial, pts, "{income}");
        }
    }

    #[test]
    fn a_debt_earns_points_only_within_the_acceptable_amount() {
        let mut cfg = ScoringConfig::default();
        let debt = |amount| ScoreInput {
            dicom: Some(Dicom::HasDebt),
            morosidad_amount: Some(amount),
            ..ScoreInput::default()
        };
        assert_eq!(score(&debt(100_000), &cfg, now()).financial, 0.0, "default: no debt is acceptable");
        cfg.max_acceptable_debt = 200_000;
        assert_eq!(score(&debt(100_000), &cfg, now()).financial, 5.0);
        assert_eq!(score(&debt(300_000), &cfg, now()).financial, 0.0);
    }

    #[test]
    fn opting_out_and_inactivity_are_penalised_and_the_score_never_goes_below_zero() {
        let mut input = full();
        input.opted_out = true;
        input.last_contacted = Some(now() - chrono::Duration::days(61));
        let s = score(&input, &ScoringConfig::default(), now());
        assert_eq!(s.penalties, 35.0);
        assert_eq!(s.total, 38.0);
        let s = score(&ScoreInput { opted_out: true, ..ScoreInput::default() }, &ScoringConfig::default(), now());
        assert_eq!(s.total, 0.0);
    }

    #[test]
    fn intent_is_bounded_and_just_looking_costs_points() {
        let cfg = ScoringConfig::default();
        let hurry = ScoreInput {
            timeline: Some("immediate".into()),
            intent: Some("schedule_visit".into()),
            appointment_booked: true,
            ..ScoreInput::default()
        };
        assert_eq!(score(&hurry, &cfg, now()).intent, 10.0);
        let looking = ScoreInput { has_name: true, timeline: Some("just_looking".into()), ..ScoreInput::default() };
        assert_eq!(score(&looking, &cfg, now()).intent, -10.0);
        assert_eq!(score(&looking, &cfg, now()).total, 0.0);
    }

    #[test]
    fn the_total_is_clamped_at_one_hundred() {
        let input = ScoreInput {
            has_budget: true,
            monthly_income: Some(5_000_000),
            fast_responder: true,
            appointment_booked: true,
            timeline: Some("immediate".into()),
            ..full()
        };
        assert_eq!(score(&input, &ScoringConfig::default(), now()).total, 100.0);
    }

    #[test]
    fn broker_weights_and_tiers_replace_the_defaults_and_typos_keep_them() {
        let cfg = ScoringConfig::from_stored(
            &json!({"name": 20, "phone": "x"}),
            Some(
                &json!({"income_tiers": [{"min": 500000, "points": 40}, {"min": 2000000, "points": 50}], "dicom_clean_pts": 10}),
            ),
            0,
        );
        assert_eq!((cfg.name, cfg.phone), (20.0, 10.0));
        assert_eq!(cfg.income_tiers[0].min, 2_000_000, "tiers sorted highest first");
        let s = score(
            &ScoreInput { monthly_income: Some(800_000), dicom: Some(Dicom::Clean), ..ScoreInput::default() },
            &cfg,
            now(),
        );
        assert_eq!(s.financial, 50.0);
    }

    #[test]
    fn closed_leads_keep_their_status_and_thresholds_are_inclusive() {
        assert_eq!(status(90.0, "ganado", "hot", 20, 50), Status::Converted);
        assert_eq!(status(90.0, "perdido", "hot", 20, 50), Status::Lost);
        assert_eq!(status(90.0, "agendado", "lost", 20, 50), Status::Lost);
        assert_eq!(status(20.0, "entrada", "cold", 20, 50), Status::Cold);
        assert_eq!(status(20.1, "entrada", "cold", 20, 50), Status::Warm);
        assert_eq!(status(50.0, "entrada", "cold", 20, 50), Status::Warm);
        assert_eq!(status(50.5, "entrada", "cold", 20, 50), Status::Hot);
    }

    #[test]
    fn legacy_dicom_spellings_are_read() {
        assert_eq!(Dicom::parse("dirty"), Some(Dicom::HasDebt));
        assert_eq!(Dicom::parse(" Clean "), Some(Dicom::Clean));
        assert_eq!(Dicom::parse("maybe"), None);
    }
}
