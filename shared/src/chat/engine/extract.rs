//! The rule-based extractor (SPEC §6 step 5): reads one inbound lead message and returns the
//! facts it states — name, phone, email, comuna, income, budget, DICOM, debt, property wishes,
//! timeline, intent, an appointment choice and a few flags. Pure: the caller passes the time and
//! what Sofía asked last, and decides what to store (SPEC §15, reference §5.4).
//!
//! Submodules, one concern each: `tokens` (words, clauses, a small phrase matcher), `contact`
//! (phone, email), `names`, `gazetteer` (comunas and sectors), `money` (income, budget, debt),
//! `dicom`, `profile` (property type, bedrooms), `dates` (Spanish dates and times, appointment
//! choices) and `signals` (timeline, flags and the words behind the intent).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::leads::model::TZ;
use tokens::{Token, tokenize};

mod contact;
mod dates;
mod dicom;
mod gazetteer;
mod money;
mod names;
mod profile;
mod signals;
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// The most characters of one message the extractor reads; the rest is ignored. Every caller
/// passes less (a sanitised chat message, a transcript line), so this only bounds the work a
/// hostile or broken caller could cause.
pub const MAX_EXTRACT_CHARS: usize = 16_000;

/// `text` cut to its first [`MAX_EXTRACT_CHARS`] characters.
fn capped(text: &str) -> &str {
    match text.char_indices().nth(MAX_EXTRACT_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Reads one inbound message (its first [`MAX_EXTRACT_CHARS`] characters). Never fails: a message
/// with no facts gives `Extraction::default()`.
pub fn extract(text: &str, ctx: &ExtractCtx) -> Extraction {
    let text = capped(text);
    if text.trim().is_empty() {
        return Extraction::default();
    }
    let expects = |f: Field| ctx.expecting.contains(&f);
    let email = contact::find_email(text);
    let without_email = mask(text, email.as_ref().map(|(_, span)| span.clone()));
    let phone = contact::find_phone(&without_email);
    let masked = mask(&without_email, phone.as_ref().map(|(_, span)| span.clone()));
    let tokens = tokenize(&masked);
    let clauses = tokens::clauses(&tokens);
    let today = ctx.now.with_timezone(&TZ).date_naive();

    let money = money::read_money(&tokens, ctx.expecting);
    let dicom = dicom::read_dicom(&tokens, &clauses, expects(Field::Dicom));
    let places = gazetteer::find_places(&tokens, expects(Field::Location));
    let location = pick_location(&tokens, &places);
    let in_place: Vec<bool> = (0..tokens.len()).map(|i| places.iter().any(|m| m.start <= i && i < m.end)).collect();
    let types = profile::property_types(&tokens, &in_place);
    let bedrooms = profile::bedrooms(&tokens).or_else(|| {
        expects(Field::Bedrooms)
            .then(|| profile::bare_count(&tokens))
            .flatten()
            .map(|n| profile::Bedrooms { count: n, up_to: None })
    });
    let appointment = dates::appointment(&tokens, &clauses, ctx);
    let dicom_status = dicom.status.or(money.debt.map(|_| DicomStatus::HasDebt));

    let mut out = Extraction {
        name: names::find_name(&tokens, expects(Field::Name)),
        phone: phone.map(|(p, _)| p),
        email: email.map(|(e, _)| e),
        location: location.map(|m| m.name.to_string()),
        monthly_income: money.income,
        budget: money.budget.map(|(amount, currency)| Budget { amount, currency }),
        dicom_status,
        morosidad_amount: money.debt,
        property_type: types.first().copied(),
        bedrooms: bedrooms.map(|b| b.count),
        timeline: signals::timeline(&tokens, &clauses, today),
        intent: None,
        appointment,
        wants_human: signals::wants_human(&tokens),
        opt_out: signals::opt_out(&tokens),
        just_looking: signals::just_looking(&tokens),
        urgency: signals::urgency(&tokens, &clauses),
        question: signals::question(&tokens),
        key_points: Vec::new(),
    };
    out.intent = intent(&tokens, &out, dicom.mentioned);
    out.key_points = key_points(
        &tokens,
        &out,
        &Notes { types: &types, bedrooms, places: &places, money: &money.notes, dicom: &dicom.notes },
    );
    out
}

/// The message with a phone or email span replaced by a comma, so later rules neither read its
/// digits as money nor its words as a name, and the words around it stay apart.
fn mask(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or_default();
            let after = text.get(span.end..).unwrap_or_default();
            format!("{before} , {after}")
        }
        None => text.to_string(),
    }
}

/// Why a place is named, when it is not where the lead looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlaceRole {
    /// "vivo en Maipú", "soy de Renca".
    Home,
    /// "trabajo en Providencia".
    Work,
}

fn place_role(tokens: &[Token], m: &gazetteer::PlaceMatch) -> Option<PlaceRole> {
    let before = tokens.get(m.start.saturating_sub(3)..m.start).unwrap_or_default();
    if tokens::has_any(before, &["vivo|vivimos|resido en", "soy|somos de"]) {
        Some(PlaceRole::Home)
    } else if tokens::has(before, "trabajo|trabajamos en") {
        Some(PlaceRole::Work)
    } else {
        None
    }
}

/// The place the lead looks in: the first that is not only where they live or work.
fn pick_location<'p>(tokens: &[Token], places: &'p [gazetteer::PlaceMatch]) -> Option<&'p gazetteer::PlaceMatch> {
    places.iter().find(|m| place_role(tokens, m).is_none()).or_else(|| places.first())
}

/// Financing first (credit, pie, DICOM, income), then a visit, then a property search, then chat.
fn intent(tokens: &[Token], out: &Extraction, dicom_mentioned: bool) -> Option<Intent> {
    let money_talk = out.monthly_income.is_some() || out.morosidad_amount.is_some();
    if signals::talks_about_financing(tokens) || dicom_mentioned || money_talk {
        return Some(Intent::FinancingQuestion);
    }
    if out.appointment.is_some() || dates::talks_about_scheduling(tokens) {
        return Some(Intent::ScheduleVisit);
    }
    let property = out.property_type.is_some()
        || out.bedrooms.is_some()
        || out.budget.is_some()
        || signals::talks_about_properties(tokens)
        || (out.location.is_some() && signals::looks_for_something(tokens));
    if property {
        return Some(Intent::PropertySearch);
    }
    (signals::small_talk(tokens) || out.question).then_some(Intent::GeneralChat)
}

/// Notes gathered by the readers, for `key_points`.
struct Notes<'n> {
    types: &'n [PropertyType],
    bedrooms: Option<profile::Bedrooms>,
    places: &'n [gazetteer::PlaceMatch],
    money: &'n [String],
    dicom: &'n [String],
}

/// "busca departamento de 2 dormitorios en Las Condes".
fn search_summary(out: &Extraction, notes: &Notes) -> Option<String> {
    if notes.types.is_empty() && notes.bedrooms.is_none() {
        return None;
    }
    let kind = if notes.types.is_empty() {
        "propiedad".to_string()
    } else {
        notes.types.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" o ")
    };
    let rooms = match notes.bedrooms {
        Some(profile::Bedrooms { count, up_to: Some(max) }) => format!(" de {count} a {max} dormitorios"),
        Some(profile::Bedrooms { count: 1, up_to: None }) => " de 1 dormitorio".to_string(),
        Some(profile::Bedrooms { count, up_to: None }) => format!(" de {count} dormitorios"),
        None => String::new(),
    };
    let place = out.location.as_ref().map(|l| format!(" en {l}")).unwrap_or_default();
    Some(format!("busca {kind}{rooms}{place}"))
}

const NOTE_RULES: &[(&[&str], &str)] = &[
    (
        &[
            "independiente|independientes",
            "boleta|boletas|boleteo|honorarios",
            "factur*",
            "emprend*",
            "pyme|microempres*",
            "negocio|empresa propio|propia",
            "por mi cuenta",
            "cuenta propia",
        ],
        "trabajador independiente",
    ),
    (&["contrato indefinido"], "contrato indefinido"),
    (&["dependiente", "contrato a plazo|fijo"], "trabajador dependiente"),
    (&["jubilad*|pensionad*"], "jubilado o pensionado"),
    (&["no trabajo", "cesante|desempleado|desempleada", "sin trabajo|pega", "no tengo trabajo|pega"], "sin trabajo"),
    (&["no tengo|tenemos ingresos formales", "ingresos informales", "trabajo informal"], "sin ingresos formales"),
    (&["no tengo|tenemos ingresos"], "sin ingresos"),
    (&["no tengo|uso whatsapp|wsp", "no|ni|sin whatsapp|wsp"], "no tiene WhatsApp"),
    (&["solo tengo|uso telegram"], "solo usa Telegram"),
    (&["no tengo|uso correo|email|mail", "ni|sin correo|email|mail"], "no tiene email"),
    (&["prefiero|mejor por? email|correo|mail"], "prefiere contacto por email"),
    (&["prefiero|mejor por? whatsapp|wsp"], "prefiere WhatsApp"),
    (&["prefiero que me llamen|llames", "prefiero una? llamada", "llamenme|llamame"], "prefiere que lo llamen"),
    (&["invertir|inversion|inversionista"], "compra para inversión"),
    (&["para vivir"], "compra para vivir"),
    (&["primera vivienda|propiedad|casa", "primer depto|departamento|hogar"], "primera vivienda"),
    (&["busco|buscamos|quiero|necesito arrendar|arriendo"], "busca arriendo"),
    (&["tengo|tenemos el? subsidio"], "tiene subsidio habitacional"),
    (&["no tengo|tenemos pie", "sin pie"], "sin pie"),
    (&["preaprob*", "pre aprobado|aprobada"], "tiene crédito preaprobado"),
    (&["vi|vimos el|un|su anuncio|aviso|publicacion"], "vio un anuncio"),
];

fn key_points(tokens: &[Token], out: &Extraction, notes: &Notes) -> Vec<String> {
    let mut points: Vec<String> = Vec::new();
    points.extend(search_summary(out, notes));
    if profile::wants_studio(tokens) {
        points.push("busca monoambiente".to_string());
    }
    if let Some(baths) = profile::bathrooms(tokens) {
        points.push(if baths == 1 { "1 baño".to_string() } else { format!("{baths} baños") });
    }
    for (patterns, note) in NOTE_RULES {
        // "sin ingresos formales" already says "sin ingresos".
        let said = points.iter().any(|p| p.starts_with(note));
        if !said && tokens::has_any(tokens, patterns) {
            points.push((*note).to_string());
        }
    }
    if signals::prefers_writing(tokens) {
        points.push("prefiere no recibir llamadas".to_string());
    }
    if tokens::has(tokens, "subsidio*") && out.question && !points.iter().any(|p| p.contains("subsidio")) {
        points.push("consulta por subsidio".to_string());
    }
    points.extend(notes.money.iter().cloned());
    points.extend(notes.dicom.iter().cloned());
    points.extend(place_notes(tokens, notes.places));
    let mut seen = Vec::new();
    points.retain(|p| {
        let fresh = !seen.contains(p);
        seen.push(p.clone());
        fresh
    });
    points
}

/// "vive en Maipú", "trabaja en Providencia"; "comunas mencionadas: …" when several.
fn place_notes(tokens: &[Token], places: &[gazetteer::PlaceMatch]) -> Vec<String> {
    let mut notes = Vec::new();
    for m in places {
        match place_role(tokens, m) {
            Some(PlaceRole::Home) => notes.push(format!("vive en {}", m.name)),
            Some(PlaceRole::Work) => notes.push(format!("trabaja en {}", m.name)),
            None => {}
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for m in places {
        if !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    if names.len() > 1 {
        notes.push(format!("comunas mencionadas: {}", names.join(", ")));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, TimeZone};

    /// Tuesday 2025-11-11, 09:00 in Santiago (UTC−3).
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 11, 11, 12, 0, 0).unwrap()
    }

    fn santiago(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        let date = NaiveDate::from_ymd_opt(y, m, d).unwrap();
        dates::local_to_utc(date, NaiveTime::from_hms_opt(h, min, 0).unwrap()).unwrap()
    }

    fn read(text: &str) -> Extraction {
        extract(text, &ExtractCtx::new(now()))
    }

    fn read_expecting(text: &str, expecting: &[Field]) -> Extraction {
        extract(text, &ExtractCtx { now: now(), expecting, offered_slots: &[] })
    }

    fn without_key_points(mut e: Extraction) -> Extraction {
        e.key_points.clear();
        e
    }

    fn clp(amount: f64) -> Option<Budget> {
        Some(Budget { amount, currency: Currency::Clp })
    }

    fn uf(amount: f64) -> Option<Budget> {
        Some(Budget { amount, currency: Currency::Uf })
    }

    fn none() -> Extraction {
        Extraction::default()
    }

    #[test]
    fn an_empty_message_extracts_nothing() {
        assert_eq!(read(""), Extraction::default());
        assert_eq!(read("   "), Extraction::default());
    }

    /// Name, phone and email as the reference's regex fallback returns them.
    type Contact<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

    /// reference §12.3, `tests/services/test_regex_fallback.py`.
    #[test]
    fn regex_fallback_cases_of_the_reference() {
        let cases: &[(&str, Contact)] = &[
            ("mi numero es 954100504", (None, Some("+56954100504"), None)),
            ("telefono 56954100504", (None, Some("+56954100504"), None)),
            ("llámame al +56954100504", (None, Some("+56954100504"), None)),
            ("mi cel es 9 5410 0504", (None, Some("+56954100504"), None)),
            ("hola, busco departamento", (None, None, None)),
            ("me llamo gabriel gonzalez", (Some("gabriel gonzalez"), None, None)),
            ("soy María Fernanda", (Some("María Fernanda"), None, None)),
            ("mi nombre es Juan Pérez", (Some("Juan Pérez"), None, None)),
            ("gabriel gonzalez, y mi numero es 954100504", (Some("gabriel gonzalez"), Some("+56954100504"), None)),
            ("soy Gabriel y mi numero es 954100504", (Some("Gabriel"), Some("+56954100504"), None)),
            ("hola, busco casa en maipu", (None, None, None)),
            ("mi correo es juan@gmail.com", (None, None, Some("juan@gmail.com"))),
            ("no tengo correo", (None, None, None)),
            (
                "me llamo Carlos Ruiz, mi cel es 912345678 y mi email carlos@test.cl",
                (Some("Carlos Ruiz"), Some("+56912345678"), Some("carlos@test.cl")),
            ),
            ("", (None, None, None)),
            ("hola, tienes propiedades en maipu", (None, None, None)),
        ];
        for &(text, want) in cases {
            let e = read(text);
            assert_eq!((e.name.as_deref(), e.phone.as_deref(), e.email.as_deref()), want, "{text}");
        }
    }

    #[test]
    fn the_reference_messages_without_contact_data_state_nothing_else_either() {
        assert_eq!(read(""), none());
        let e = read("hola, tienes propiedades en maipu");
        assert_eq!((e.name, e.phone, e.email, e.location.as_deref()), (None, None, None, Some("Maipú")));
        assert_eq!(read("no tengo correo").key_points, ["no tiene email"]);
    }

    /// reference §12.2: every lead message of the conversation corpus, with all it must yield
    /// (key points are checked in their own test).
    #[test]
    fn the_conversation_corpus_yields_its_facts() {
        use DicomStatus::*;
        use Intent::*;
        let name = [Field::Name];
        let contact = [Field::Phone, Field::Email, Field::Location];
        let finance = [Field::MonthlyIncome, Field::Dicom];
        let cases: Vec<(&str, &[Field], Extraction)> = vec![
            (
                "Hola, me interesa un departamento",
                &[],
                Extraction { property_type: Some(PropertyType::Departamento), intent: Some(PropertySearch), ..none() },
            ),
            ("Buenas, vi el anuncio en el portal", &[], Extraction { intent: Some(GeneralChat), ..none() }),
            ("Hola quiero información", &[], Extraction { intent: Some(GeneralChat), ..none() }),
            (
                "Buenas tardes, ¿tienen casas en Las Condes?",
                &[],
                Extraction {
                    location: Some("Las Condes".into()),
                    property_type: Some(PropertyType::Casa),
                    intent: Some(PropertySearch),
                    question: true,
                    ..none()
                },
            ),
            (
                "Necesito comprar un departamento urgente",
                &[],
                Extraction {
                    property_type: Some(PropertyType::Departamento),
                    timeline: Some(Timeline::Immediate),
                    intent: Some(PropertySearch),
                    urgency: true,
                    ..none()
                },
            ),
            ("Me llamo Juan Pérez", &name, Extraction { name: Some("Juan Pérez".into()), ..none() }),
            ("Soy María González", &name, Extraction { name: Some("María González".into()), ..none() }),
            ("Carlos", &name, Extraction { name: Some("Carlos".into()), ..none() }),
            ("Mi número es +56912345678", &contact, Extraction { phone: Some("+56912345678".into()), ..none() }),
            ("Mi correo es juan@gmail.com", &contact, Extraction { email: Some("juan@gmail.com".into()), ..none() }),
            ("No tengo WhatsApp, prefiero email", &contact, none()),
            ("+56987654321", &contact, Extraction { phone: Some("+56987654321".into()), ..none() }),
            (
                "mi-email@hotmail.com, teléfono +56911223344",
                &contact,
                Extraction { phone: Some("+56911223344".into()), email: Some("mi-email@hotmail.com".into()), ..none() },
            ),
            ("Solo tengo Telegram, no WhatsApp ni email", &contact, none()),
            ("prefiero que me llamen", &contact, none()),
            (
                "Tengo presupuesto de 3000 UF",
                &finance,
                Extraction { budget: uf(3000.0), intent: Some(PropertySearch), ..none() },
            ),
            (
                "no sé cuánto cuesta un departamento, ¿cuánto debería tener?",
                &finance,
                Extraction {
                    property_type: Some(PropertyType::Departamento),
                    intent: Some(PropertySearch),
                    question: true,
                    ..none()
                },
            ),
            (
                "Mi sueldo es de $800.000",
                &finance,
                Extraction { monthly_income: Some(800_000), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Gano 1.500.000 mensuales",
                &finance,
                Extraction { monthly_income: Some(1_500_000), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Trabajo independiente, facturo 2 millones mensuales",
                &finance,
                Extraction { monthly_income: Some(2_000_000), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Quiero una propiedad de 5000 UF pero gano 600 mil",
                &finance,
                Extraction {
                    monthly_income: Some(600_000),
                    budget: uf(5000.0),
                    intent: Some(FinancingQuestion),
                    ..none()
                },
            ),
            (
                "No tengo DICOM, estoy al día con todo",
                &finance,
                Extraction { dicom_status: Some(Clean), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Tengo una deuda pequeña de 50 mil pesos en una tienda",
                &finance,
                Extraction {
                    dicom_status: Some(HasDebt),
                    morosidad_amount: Some(50_000),
                    intent: Some(FinancingQuestion),
                    ..none()
                },
            ),
            (
                "Sí, tengo DICOM limpio",
                &finance,
                Extraction { dicom_status: Some(Clean), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "No sé si tengo DICOM, nunca lo he revisado",
                &finance,
                Extraction { dicom_status: Some(Unknown), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Estoy en DICOM por una deuda de 500 mil",
                &finance,
                Extraction {
                    dicom_status: Some(HasDebt),
                    morosidad_amount: Some(500_000),
                    intent: Some(FinancingQuestion),
                    ..none()
                },
            ),
            (
                "Tengo deuda de 2 millones en DICOM pero quiero comprar igual",
                &finance,
                Extraction {
                    dicom_status: Some(HasDebt),
                    morosidad_amount: Some(2_000_000),
                    intent: Some(FinancingQuestion),
                    ..none()
                },
            ),
            (
                "¿Qué es el DICOM exactamente?",
                &finance,
                Extraction { intent: Some(FinancingQuestion), question: true, ..none() },
            ),
            (
                "Pagué mi DICOM hace un mes",
                &finance,
                Extraction { dicom_status: Some(Unknown), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Solo tengo DICOM por una deuda prescrita de hace 10 años",
                &finance,
                Extraction { dicom_status: Some(Unknown), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Estoy en DICOM pero igual quiero el crédito",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Tengo deudas en mora, ¿puedo acceder a crédito?",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), question: true, ..none() },
            ),
            (
                "Estoy en DICOM con 1 millón de deuda",
                &finance,
                Extraction {
                    dicom_status: Some(HasDebt),
                    morosidad_amount: Some(1_000_000),
                    intent: Some(FinancingQuestion),
                    ..none()
                },
            ),
            (
                "Tengo morosidad en un banco",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "¿Necesito DICOM limpio para comprar?",
                &finance,
                Extraction { intent: Some(FinancingQuestion), question: true, ..none() },
            ),
            (
                "Tengo dos créditos morosos en DICOM",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Estoy en DICOM, ¿me pueden dar subsidio?",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), question: true, ..none() },
            ),
            (
                "Tengo deuda en DICOM de 800 mil pesos",
                &finance,
                Extraction {
                    dicom_status: Some(HasDebt),
                    morosidad_amount: Some(800_000),
                    intent: Some(FinancingQuestion),
                    ..none()
                },
            ),
            (
                "No tengo ingresos formales y tengo DICOM",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), ..none() },
            ),
            (
                "Mi esposa tiene DICOM pero yo no",
                &finance,
                Extraction { dicom_status: Some(Clean), intent: Some(FinancingQuestion), ..none() },
            ),
            ("Quiero visitar el proyecto esta semana", &[], Extraction { intent: Some(ScheduleVisit), ..none() }),
            (
                "¿Puedo ir el sábado?",
                &[],
                Extraction {
                    intent: Some(ScheduleVisit),
                    appointment: Some(AppointmentChoice::Day(NaiveDate::from_ymd_opt(2025, 11, 15).unwrap())),
                    question: true,
                    ..none()
                },
            ),
            (
                "A las 10 del sábado me viene bien",
                &[],
                Extraction {
                    intent: Some(ScheduleVisit),
                    appointment: Some(AppointmentChoice::At(santiago(2025, 11, 15, 10, 0))),
                    ..none()
                },
            ),
            (
                "¿Puedo llevar a mi pareja a la visita?",
                &[],
                Extraction { intent: Some(ScheduleVisit), question: true, ..none() },
            ),
            (
                "No puedo la próxima semana, ¿tienen para la siguiente?",
                &[Field::AppointmentChoice],
                Extraction {
                    intent: Some(ScheduleVisit),
                    appointment: Some(AppointmentChoice::Decline),
                    question: true,
                    ..none()
                },
            ),
            (
                "¿Cuántos metros cuadrados tienen los departamentos?",
                &[],
                Extraction {
                    property_type: Some(PropertyType::Departamento),
                    intent: Some(PropertySearch),
                    question: true,
                    ..none()
                },
            ),
            (
                "¿Tienen estacionamiento incluido?",
                &[],
                Extraction { intent: Some(PropertySearch), question: true, ..none() },
            ),
            ("¿El precio incluye IVA?", &[], Extraction { intent: Some(PropertySearch), question: true, ..none() }),
            (
                "¿Cuándo estarían listos los departamentos?",
                &[],
                Extraction {
                    property_type: Some(PropertyType::Departamento),
                    intent: Some(PropertySearch),
                    question: true,
                    ..none()
                },
            ),
            (
                "¿Cuánto es el pie mínimo?",
                &[],
                Extraction { intent: Some(FinancingQuestion), question: true, ..none() },
            ),
            (
                "No trabajo, no tengo ingresos y no tengo DICOM limpio",
                &finance,
                Extraction { dicom_status: Some(HasDebt), intent: Some(FinancingQuestion), ..none() },
            ),
        ];
        assert_eq!(cases.len(), 51);
        for (text, expecting, want) in cases {
            assert_eq!(without_key_points(read_expecting(text, expecting)), want, "{text}");
        }
    }

    #[test]
    fn the_conversation_corpus_notes_its_key_points() {
        let cases: &[(&str, &[&str])] = &[
            ("Hola, me interesa un departamento", &["busca departamento"]),
            ("Buenas, vi el anuncio en el portal", &["vio un anuncio"]),
            ("Buenas tardes, ¿tienen casas en Las Condes?", &["busca casa en Las Condes"]),
            ("No tengo WhatsApp, prefiero email", &["no tiene WhatsApp", "prefiere contacto por email"]),
            (
                "Solo tengo Telegram, no WhatsApp ni email",
                &["no tiene WhatsApp", "solo usa Telegram", "no tiene email"],
            ),
            ("prefiero que me llamen", &["prefiere que lo llamen"]),
            ("Trabajo independiente, facturo 2 millones mensuales", &["trabajador independiente"]),
            ("Pagué mi DICOM hace un mes", &["pagó o regularizó su deuda recientemente (verificar DICOM)"]),
            ("Solo tengo DICOM por una deuda prescrita de hace 10 años", &["deuda prescrita (verificar DICOM)"]),
            ("Estoy en DICOM, ¿me pueden dar subsidio?", &["consulta por subsidio"]),
            ("No tengo ingresos formales y tengo DICOM", &["sin ingresos formales"]),
            ("Mi esposa tiene DICOM pero yo no", &["su esposa tiene DICOM"]),
            ("No trabajo, no tengo ingresos y no tengo DICOM limpio", &["sin trabajo", "sin ingresos"]),
            ("Mi sueldo es de $800.000", &[]),
            ("Quiero una propiedad de 5000 UF pero gano 600 mil", &[]),
        ];
        for &(text, want) in cases {
            assert_eq!(read(text).key_points, want, "{text}");
        }
    }

    #[test]
    fn a_rich_first_message_yields_everything() {
        let text = "Hola, soy Ana Soto, busco depto 2D en Ñuñoa, gano 1,2 millones líquidos, no tengo DICOM, \
                    mi cel es +56 9 8765 4321 y mi correo Ana.Soto@Gmail.com";
        let e = read(text);
        let want = Extraction {
            name: Some("Ana Soto".into()),
            phone: Some("+56987654321".into()),
            email: Some("ana.soto@gmail.com".into()),
            location: Some("Ñuñoa".into()),
            monthly_income: Some(1_200_000),
            dicom_status: Some(DicomStatus::Clean),
            property_type: Some(PropertyType::Departamento),
            bedrooms: Some(2),
            intent: Some(Intent::FinancingQuestion),
            key_points: vec!["busca departamento de 2 dormitorios en Ñuñoa".into()],
            ..none()
        };
        assert_eq!(e, want);
    }

    #[test]
    fn key_points_summarise_the_search() {
        let cases: &[(&str, &[&str])] = &[
            (
                "busco departamento de 2 dormitorios en Las Condes",
                &["busca departamento de 2 dormitorios en Las Condes"],
            ),
            (
                "casa o depto de 3 o 4 piezas en La Florida",
                &["busca casa o departamento de 3 a 4 dormitorios en La Florida"],
            ),
            ("algo de 1 dormitorio", &["busca propiedad de 1 dormitorio"]),
            ("un 3d2b en Maipú", &["busca propiedad de 3 dormitorios en Maipú", "2 baños"]),
            (
                "busco monoambiente para invertir",
                &["busca departamento", "busca monoambiente", "compra para inversión"],
            ),
            (
                "vivo en Maipú pero busco casa en Ñuñoa",
                &["busca casa en Ñuñoa", "vive en Maipú", "comunas mencionadas: Maipú, Ñuñoa"],
            ),
            ("busco entre 2.000 y 2.500 UF", &["presupuesto entre 2.000 UF y 2.500 UF"]),
            ("tengo 10 millones ahorrados para el pie", &["ahorro o pie de $10.000.000"]),
            ("soy jubilado", &["jubilado o pensionado"]),
            ("tengo contrato indefinido", &["contrato indefinido"]),
            ("es mi primera vivienda", &["primera vivienda"]),
            ("hay proyectos en Padre las Casas?", &[]),
            ("no me llamen, mejor escríbanme", &["prefiere no recibir llamadas"]),
            (
                "Soy de la florida y trabajo en providencia",
                &["vive en La Florida", "trabaja en Providencia", "comunas mencionadas: La Florida, Providencia"],
            ),
            ("no tengo pie", &["sin pie"]),
        ];
        for &(text, want) in cases {
            assert_eq!(read(text).key_points, want, "{text}");
        }
    }

    #[test]
    fn a_nine_digit_mobile_is_never_an_income() {
        let income = [Field::MonthlyIncome];
        for text in ["912345678", "gano 912345678", "mi sueldo 912345678", "+56 9 1234 5678", "9 1234 5678"] {
            let e = read_expecting(text, &income);
            assert_eq!((e.phone.as_deref(), e.monthly_income), (Some("+56912345678"), None), "{text}");
        }
    }

    #[test]
    fn money_is_never_a_phone() {
        let income = [Field::MonthlyIncome];
        let cases: &[(&str, i64)] = &[
            ("$912.345", 912_345),
            ("gano $912.345", 912_345),
            ("gano 950.000", 950_000),
            ("$ 912345678 no, perdón, $912.345", 912_345),
        ];
        for &(text, want) in cases {
            let e = read_expecting(text, &income);
            assert_eq!((e.phone, e.monthly_income), (None, Some(want)), "{text}");
        }
    }

    #[test]
    fn a_phone_and_an_income_in_one_message_are_both_read() {
        let e = read("mi cel 912345678 y gano 800 mil");
        assert_eq!((e.phone.as_deref(), e.monthly_income), (Some("+56912345678"), Some(800_000)));
        let e = read("gano 1.500.000 y mi número es 9 8765 4321");
        assert_eq!((e.phone.as_deref(), e.monthly_income), (Some("+56987654321"), Some(1_500_000)));
    }

    #[test]
    fn every_income_form_of_the_brief() {
        let cases: &[(&str, i64)] = &[
            ("gano $1.500.000", 1_500_000),
            ("gano 1.500.000", 1_500_000),
            ("gano 1500000", 1_500_000),
            ("gano 1,5 millones", 1_500_000),
            ("gano 1.5 millones", 1_500_000),
            ("gano un millón y medio", 1_500_000),
            ("gano dos millones", 2_000_000),
            ("gano 800 mil", 800_000),
            ("gano 800 lucas", 800_000),
            ("gano 2 palos", 2_000_000),
            ("gano 1.5 palos", 1_500_000),
            ("gano 2M", 2_000_000),
            ("gano 2 millones y medio", 2_500_000),
            ("gano 800k", 800_000),
            ("renta líquida de 1.200.000", 1_200_000),
            ("sueldo 950 mil", 950_000),
            ("facturo 2 millones mensuales", 2_000_000),
            ("gano 600 mil", 600_000),
            ("me pagan 750 lucas", 750_000),
            ("mis ingresos son 1.100.000", 1_100_000),
            ("líquido 900 mil", 900_000),
        ];
        for &(text, want) in cases {
            assert_eq!(read(text).monthly_income, Some(want), "{text}");
        }
    }

    #[test]
    fn the_same_forms_answer_an_asked_income_without_a_cue() {
        let income = [Field::MonthlyIncome];
        let cases: &[(&str, Option<i64>)] = &[
            ("$1.500.000", Some(1_500_000)),
            ("1.500.000", Some(1_500_000)),
            ("1500000", Some(1_500_000)),
            ("1,5 millones", Some(1_500_000)),
            ("un millón y medio", Some(1_500_000)),
            ("dos millones", Some(2_000_000)),
            ("800 mil", Some(800_000)),
            ("800 lucas", Some(800_000)),
            ("2 palos", Some(2_000_000)),
            ("2M", Some(2_000_000)),
            ("800k", Some(800_000)),
            ("como 700 mil al mes", Some(700_000)),
            ("50 mil", None),
            ("500 millones", None),
            ("800", None),
        ];
        for &(text, want) in cases {
            assert_eq!(read_expecting(text, &income).monthly_income, want, "{text}");
        }
        assert_eq!(read("800 mil").monthly_income, None);
    }

    #[test]
    fn budgets_and_incomes_are_told_apart() {
        let cases: &[(&str, Option<i64>, Option<Budget>)] = &[
            ("Quiero una propiedad de 5000 UF pero gano 600 mil", Some(600_000), uf(5000.0)),
            ("3.000 UF", None, uf(3000.0)),
            ("UF 4500", None, uf(4500.0)),
            ("4.500 uf", None, uf(4500.0)),
            ("busco algo de 120 millones", None, clp(120_000_000.0)),
            ("presupuesto de 90 millones", None, clp(90_000_000.0)),
            ("hasta 3500 UF", None, uf(3500.0)),
            ("entre 2.000 y 2.500 UF", None, uf(2500.0)),
            ("tengo 500 UF de pie", None, None),
            ("el pie que tengo es de 20 millones", None, None),
            ("gano 2 millones y busco casa de 4000 UF", Some(2_000_000), uf(4000.0)),
        ];
        for &(text, income, budget) in cases {
            let e = read(text);
            assert_eq!((e.monthly_income, e.budget), (income, budget), "{text}");
        }
    }

    #[test]
    fn a_debt_amount_implies_debt() {
        let cases: &[(&str, i64)] = &[
            ("deuda de 50 mil", 50_000),
            ("una deuda de 2 millones en DICOM", 2_000_000),
            ("debo 800 mil", 800_000),
            ("1 millón de deuda", 1_000_000),
        ];
        for &(text, want) in cases {
            let e = read(text);
            assert_eq!((e.morosidad_amount, e.dicom_status), (Some(want), Some(DicomStatus::HasDebt)), "{text}");
        }
        let e = read_expecting("como 300 mil", &[Field::DebtAmount]);
        assert_eq!((e.morosidad_amount, e.dicom_status), (Some(300_000), Some(DicomStatus::HasDebt)));
    }

    #[test]
    fn a_bare_yes_or_no_answers_the_dicom_question() {
        let dicom = [Field::Dicom];
        assert_eq!(read_expecting("no", &dicom).dicom_status, Some(DicomStatus::Clean));
        assert_eq!(read_expecting("sí", &dicom).dicom_status, Some(DicomStatus::HasDebt));
        assert_eq!(read_expecting("no sé", &dicom).dicom_status, Some(DicomStatus::Unknown));
        assert_eq!(read("no").dicom_status, None);
        let e = read_expecting("no, y gano 900 mil", &[Field::MonthlyIncome, Field::Dicom]);
        assert_eq!((e.dicom_status, e.monthly_income), (Some(DicomStatus::Clean), Some(900_000)));
    }

    #[test]
    fn an_asked_comuna_or_bedrooms_may_be_a_bare_reply() {
        let e = read_expecting("la reina", &[Field::Location]);
        assert_eq!(e.location.as_deref(), Some("La Reina"));
        let e = read_expecting("pudahel", &[Field::Location]);
        assert_eq!(e.location.as_deref(), Some("Pudahuel"));
        assert_eq!(read_expecting("2", &[Field::Bedrooms]).bedrooms, Some(2));
        assert_eq!(read("2").bedrooms, None);
    }

    #[test]
    fn a_comuna_is_never_a_name() {
        let name = [Field::Name, Field::Location];
        let e = read_expecting("Maipú", &name);
        assert_eq!((e.name, e.location.as_deref()), (None, Some("Maipú")));
        let e = read("Soy de Maipú");
        assert_eq!((e.name, e.location.as_deref()), (None, Some("Maipú")));
        let e = read("Las Condes, busco depto");
        assert_eq!((e.name, e.location.as_deref()), (None, Some("Las Condes")));
    }

    #[test]
    fn an_offered_slot_is_chosen_by_ordinal_date_or_yes() {
        let slots = [santiago(2025, 11, 13, 10, 0), santiago(2025, 11, 14, 16, 0), santiago(2025, 11, 15, 10, 0)];
        let ctx = |text: &str| extract(text, &ExtractCtx { now: now(), expecting: &[], offered_slots: &slots });
        let cases: &[(&str, AppointmentChoice)] = &[
            ("la primera", AppointmentChoice::Slot(0)),
            ("el segundo", AppointmentChoice::Slot(1)),
            ("la última", AppointmentChoice::Slot(2)),
            ("el jueves a las 10", AppointmentChoice::Slot(0)),
            ("A las 10 del sábado me viene bien", AppointmentChoice::Slot(2)),
            ("el viernes", AppointmentChoice::Slot(1)),
            ("sí", AppointmentChoice::Accept),
            ("dale, perfecto", AppointmentChoice::Accept),
            ("ninguno me sirve", AppointmentChoice::Decline),
        ];
        for &(text, want) in cases {
            let e = ctx(text);
            assert_eq!(e.appointment, Some(want), "{text}");
            assert_eq!(e.intent, Some(Intent::ScheduleVisit), "{text}");
        }
    }

    #[test]
    fn flags_are_raised_by_their_words() {
        let e = read("quiero hablar con una persona");
        assert!(e.wants_human && !e.opt_out);
        let e = read("No me escriban más, borren mis datos");
        assert!(e.opt_out && !e.wants_human);
        let e = read("solo estoy cotizando");
        assert!(e.just_looking);
        assert_eq!(e.timeline, Some(Timeline::JustLooking));
        let e = read("lo necesito lo antes posible");
        assert!(e.urgency);
        assert_eq!(e.timeline, Some(Timeline::Immediate));
        let e = read("¿tienen departamentos en Providencia?");
        assert!(e.question);
        let e = read("Me llamo Juan");
        assert!(!(e.wants_human || e.opt_out || e.just_looking || e.urgency || e.question));
    }

    #[test]
    fn a_bare_hola_is_general_chat() {
        assert_eq!(read("hola").intent, Some(Intent::GeneralChat));
        assert_eq!(read("Mi número es +56912345678").intent, None);
    }

    #[test]
    fn enums_serialise_with_their_lead_metadata_names() {
        use serde_json::{json, to_value};
        assert_eq!(to_value(DicomStatus::HasDebt).unwrap(), json!("has_debt"));
        assert_eq!(to_value(Timeline::Days30).unwrap(), json!("30days"));
        assert_eq!(to_value(Timeline::Days90).unwrap(), json!("90days"));
        assert_eq!(to_value(Timeline::JustLooking).unwrap(), json!("just_looking"));
        assert_eq!(to_value(PropertyType::Departamento).unwrap(), json!("departamento"));
        assert_eq!(to_value(Intent::FinancingQuestion).unwrap(), json!("financing_question"));
        assert_eq!(to_value(Field::MonthlyIncome).unwrap(), json!("monthly_income"));
        assert_eq!(
            to_value(Budget { amount: 3000.0, currency: Currency::Uf }).unwrap(),
            json!({"amount": 3000.0, "currency": "UF"})
        );
        assert_eq!(to_value(AppointmentChoice::Slot(1)).unwrap(), json!({"kind": "slot", "value": 1}));
        assert_eq!(to_value(AppointmentChoice::Accept).unwrap(), json!({"kind": "accept"}));
        let e = read("Tengo presupuesto de 3000 UF");
        let v = to_value(&e).unwrap();
        assert_eq!(v["budget"], json!({"amount": 3000.0, "currency": "UF"}));
        assert_eq!(v["key_points"], json!([]));
        let back: Extraction = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn as_str_matches_the_serde_name() {
        use serde_json::{Value, to_value};
        let check = |value: Value, s: &str| assert_eq!(value, Value::String(s.to_string()));
        for d in [DicomStatus::Clean, DicomStatus::HasDebt, DicomStatus::Unknown] {
            check(to_value(d).unwrap(), d.as_str());
        }
        for t in [Timeline::Immediate, Timeline::Days30, Timeline::Days90, Timeline::JustLooking] {
            check(to_value(t).unwrap(), t.as_str());
        }
        for p in [PropertyType::Departamento, PropertyType::Casa, PropertyType::Oficina, PropertyType::Terreno] {
            check(to_value(p).unwrap(), p.as_str());
        }
        for i in [Intent::PropertySearch, Intent::ScheduleVisit, Intent::FinancingQuestion, Intent::GeneralChat] {
            check(to_value(i).unwrap(), i.as_str());
        }
        for c in [Currency::Uf, Currency::Clp] {
            check(to_value(c).unwrap(), c.as_str());
        }
        let fields = [
            Field::Name,
            Field::Phone,
            Field::Email,
            Field::Location,
            Field::MonthlyIncome,
            Field::Budget,
            Field::Dicom,
            Field::DebtAmount,
            Field::PropertyType,
            Field::Bedrooms,
            Field::Timeline,
            Field::AppointmentChoice,
        ];
        for f in fields {
            check(to_value(f).unwrap(), f.as_str());
        }
        let choices = [
            AppointmentChoice::Slot(0),
            AppointmentChoice::At(now()),
            AppointmentChoice::Day(NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()),
            AppointmentChoice::Accept,
            AppointmentChoice::Decline,
        ];
        for c in choices {
            assert_eq!(to_value(c).unwrap()["kind"], Value::String(c.as_str().to_string()));
            let back: AppointmentChoice = serde_json::from_value(to_value(c).unwrap()).unwrap();
            assert_eq!(back, c);
        }
    }
}
