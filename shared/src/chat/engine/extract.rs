//! The rule-based extractor (SPEC §6 step 5): reads one inbound lead message and returns the
//! facts it states — name, phone, email, comuna, income, budget, DICOM, debt, property wishes,
//! timeline, intent, an appointment choice and a few flags. Pure: the caller passes the time and
//! what Sofía asked last, and decides what to store (SPEC §15, reference §5.4).
//!
//! Submodules, one concern each: `tokens` (words and clauses), `contact` (phone, email),
//! `names`, `gazetteer` (comunas), `money` (income, budget, debt), `profile` (property type,
//! bedrooms), `signals` (DICOM, timeline, intent and flags), `dates` (Spanish dates and times,
//! appointment choices).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

mod contact;
mod dicom;
mod gazetteer;
mod money;
mod names;
mod profile;
mod tokens;

/// What the extractor needs besides the text.
#[derive(Debug, Clone, Copy)]
pub struct ExtractCtx<'a> {
    /// "mañana", "el martes" are relative to this instant, read in America/Santiago.
    pub now: DateTime<Utc>,
    /// What Sofía asked for in her last message (may be empty): lets a bare "Carlos", "no" or
    /// "800 mil" answer it.
    pub expecting: &'a [Field],
    /// The slots Sofía offered last, in order ("el segundo", "sí", "el jueves a las 10").
    pub offered_slots: &'a [DateTime<Utc>],
}

impl<'a> ExtractCtx<'a> {
    /// A context at `now` with nothing asked and nothing offered.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self { now, expecting: &[], offered_slots: &[] }
    }
}

/// A fact Sofía can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Name,
    Phone,
    Email,
    Location,
    MonthlyIncome,
    Budget,
    Dicom,
    DebtAmount,
    PropertyType,
    Bedrooms,
    Timeline,
    AppointmentChoice,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Phone => "phone",
            Field::Email => "email",
            Field::Location => "location",
            Field::MonthlyIncome => "monthly_income",
            Field::Budget => "budget",
            Field::Dicom => "dicom",
            Field::DebtAmount => "debt_amount",
            Field::PropertyType => "property_type",
            Field::Bedrooms => "bedrooms",
            Field::Timeline => "timeline",
            Field::AppointmentChoice => "appointment_choice",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Currency {
    #[serde(rename = "UF")]
    Uf,
    #[serde(rename = "CLP")]
    Clp,
}

impl Currency {
    pub fn as_str(self) -> &'static str {
        match self {
            Currency::Uf => "UF",
            Currency::Clp => "CLP",
        }
    }
}

/// A price the lead has in mind: `{"amount": 3000, "currency": "UF"}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub amount: f64,
    pub currency: Currency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DicomStatus {
    Clean,
    HasDebt,
    /// The lead does not know, or must verify (a debt paid recently, a prescribed one).
    Unknown,
}

impl DicomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DicomStatus::Clean => "clean",
            DicomStatus::HasDebt => "has_debt",
            DicomStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyType {
    Departamento,
    Casa,
    Oficina,
    /// Terreno, parcela, sitio, lote.
    Terreno,
}

impl PropertyType {
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyType::Departamento => "departamento",
            PropertyType::Casa => "casa",
            PropertyType::Oficina => "oficina",
            PropertyType::Terreno => "terreno",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Timeline {
    #[serde(rename = "immediate")]
    Immediate,
    #[serde(rename = "30days")]
    Days30,
    #[serde(rename = "90days")]
    Days90,
    #[serde(rename = "just_looking")]
    JustLooking,
}

impl Timeline {
    pub fn as_str(self) -> &'static str {
        match self {
            Timeline::Immediate => "immediate",
            Timeline::Days30 => "30days",
            Timeline::Days90 => "90days",
            Timeline::JustLooking => "just_looking",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    PropertySearch,
    ScheduleVisit,
    FinancingQuestion,
    GeneralChat,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::PropertySearch => "property_search",
            Intent::ScheduleVisit => "schedule_visit",
            Intent::FinancingQuestion => "financing_question",
            Intent::GeneralChat => "general_chat",
        }
    }
}

/// How the lead answered (or proposed) an appointment. Serialised as `{"kind": "slot", "value": 1}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum AppointmentChoice {
    /// 0-based index into `offered_slots` ("la primera", "el segundo", "opción 3", or a date and
    /// time that is one of the offered slots).
    Slot(usize),
    /// A concrete date and time ("el martes a las 10", "mañana 15:00").
    At(DateTime<Utc>),
    /// A day without a time ("el sábado", "pasado mañana").
    Day(NaiveDate),
    /// "sí", "dale", "perfecto", "me sirve" after an offer.
    Accept,
    /// "ninguno me sirve", "no puedo".
    Decline,
}

impl AppointmentChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            AppointmentChoice::Slot(_) => "slot",
            AppointmentChoice::At(_) => "at",
            AppointmentChoice::Day(_) => "day",
            AppointmentChoice::Accept => "accept",
            AppointmentChoice::Decline => "decline",
        }
    }
}

/// The facts one message states. Empty (`Default`) when it states none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extraction {
    /// As the lead wrote it ("Juan Pérez", "gabriel gonzalez"); all-caps words are title-cased.
    pub name: Option<String>,
    /// E.164 (`+56912345678`).
    pub phone: Option<String>,
    /// Lower-cased.
    pub email: Option<String>,
    /// Canonical comuna or sector name with accents ("Ñuñoa", "Viña del Mar", "Chicureo").
    pub location: Option<String>,
    /// CLP per month.
    pub monthly_income: Option<i64>,
    pub budget: Option<Budget>,
    pub dicom_status: Option<DicomStatus>,
    /// CLP.
    pub morosidad_amount: Option<i64>,
    pub property_type: Option<PropertyType>,
    pub bedrooms: Option<u8>,
    pub timeline: Option<Timeline>,
    pub intent: Option<Intent>,
    pub appointment: Option<AppointmentChoice>,
    /// "quiero hablar con una persona", "un humano", "un ejecutivo".
    pub wants_human: bool,
    /// "no me llamen", "no me interesa", "borren mis datos".
    pub opt_out: bool,
    /// "solo mirando", "solo estoy cotizando".
    pub just_looking: bool,
    /// "urgente", "lo antes posible", "este mes".
    pub urgency: bool,
    /// The message asks something (used to look up the knowledge base).
    pub question: bool,
    /// Short Spanish notes of notable facts ("trabajador independiente").
    pub key_points: Vec<String>,
}
