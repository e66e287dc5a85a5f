//! What Sofía knows about a lead, and how one turn's extraction lands on it (SPEC §6 step 5,
//! reference §5.4): never overwriting a known value with a worse one, and letting the lead correct
//! themselves.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::{Budget, DicomStatus, Extraction, Field, Intent, PropertyType, Timeline};
use crate::leads::model::Calificacion;
use crate::text::fold;

/// `key_points` keeps at most this many notes (the newest).
pub const MAX_KEY_POINTS: usize = 30;

/// What is known about the lead (decrypted, parsed). Built by the service from the lead row + metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
    /// E.164; placeholders (`web_chat_pending`, `whatsapp_…`) count as unknown.
    pub phone: Option<String>,
    pub email: Option<String>,
    /// Canonical comuna or sector ("Ñuñoa").
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
    /// The last intent the lead showed.
    pub intent: Option<Intent>,
    /// Computed by the service (`leads::qualification`) after the merge.
    #[serde(default, with = "calificacion_serde")]
    pub calificacion: Option<Calificacion>,
    #[serde(default)]
    pub key_points: Vec<String>,
}

impl Profile {
    /// The name when it is a real one.
    pub fn real_name(&self) -> Option<&str> {
        self.name.as_deref().filter(|n| is_real_name(n))
    }

    /// "Juan" of "juan pérez", capitalised, for greetings.
    pub fn first_name(&self) -> Option<String> {
        let first = self.real_name()?.split_whitespace().next()?;
        let mut chars = first.chars();
        let head = chars.next()?;
        Some(head.to_uppercase().chain(chars).collect())
    }

    pub fn real_phone(&self) -> Option<&str> {
        self.phone.as_deref().filter(|p| is_real_phone(p))
    }

    pub fn real_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|e| is_real_email(e))
    }

    /// Whether Sofía already knows `field` (so she must not ask it).
    pub fn knows(&self, field: Field) -> bool {
        match field {
            Field::Name => self.real_name().is_some(),
            Field::Phone => self.real_phone().is_some(),
            Field::Email => self.real_email().is_some(),
            Field::Location => self.location.is_some(),
            Field::MonthlyIncome => self.monthly_income.is_some(),
            Field::Budget => self.budget.is_some(),
            // "No sé" is not an answer Sofía can work with; she suggests checking and asks again.
            Field::Dicom => matches!(self.dicom_status, Some(DicomStatus::Clean | DicomStatus::HasDebt)),
            Field::DebtAmount => self.morosidad_amount.is_some() || self.dicom_status == Some(DicomStatus::Clean),
            Field::PropertyType => self.property_type.is_some(),
            Field::Bedrooms => self.bedrooms.is_some(),
            Field::Timeline => self.timeline.is_some(),
            Field::AppointmentChoice => false,
        }
    }
}

/// One field that changed, for activity rows and events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: Field,
    pub old: Option<Value>,
    pub new: Value,
}

/// Merges this turn's extraction into the profile without overwriting a known value with a worse one
/// (None never erases; placeholders never win; a vaguer location never replaces a comuna; an explicit
/// correction — "perdón", "me equivoqué", "en realidad", "corrijo", "no, es …", or the same field stated
/// again with a different valid value when `expecting` it — replaces). key_points accumulate (deduped, capped ~30).
pub fn merge(profile: &Profile, ex: &Extraction, text: &str, expecting: &[Field]) -> (Profile, Vec<Change>) {
    let correction = is_correction(text);
    let may_replace = |f: Field| correction || expecting.contains(&f);
    let mut p = profile.clone();
    let mut changes = Vec::new();

    if let Some(new) = ex.name.as_deref().map(str::trim).filter(|n| is_real_name(n)) {
        let replace = match profile.real_name() {
            None => true,
            Some(old) if fold(old) == fold(new) => false,
            // "Juan" → "Juan Pérez" says more; "Juan Pérez" → "Juan" says less.
            Some(old) if fold(new).starts_with(&fold(old)) => true,
            Some(old) if fold(old).starts_with(&fold(new)) => correction,
            Some(_) => may_replace(Field::Name),
        };
        if replace {
            set(&mut changes, Field::Name, &mut p.name, new.to_string(), |v| json!(v));
        }
    }
    if let Some(new) = ex.phone.as_deref().filter(|v| is_real_phone(v)) {
        let replace = match profile.real_phone() {
            None => true,
            Some(old) => old != new && may_replace(Field::Phone),
        };
        if replace {
            set(&mut changes, Field::Phone, &mut p.phone, new.to_string(), |v| json!(v));
        }
    }
    if let Some(new) = ex.email.as_deref().map(str::to_lowercase).filter(|v| is_real_email(v)) {
        let replace = match profile.real_email() {
            None => true,
            Some(old) => !old.eq_ignore_ascii_case(&new) && may_replace(Field::Email),
        };
        if replace {
            set(&mut changes, Field::Email, &mut p.email, new, |v| json!(v));
        }
    }
    if let Some(new) = ex.location.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        let replace = match profile.location.as_deref() {
            None => true,
            Some(old) if fold(old) == fold(new) => false,
            Some(old) if is_vaguer(new, old) => correction,
            Some(_) if may_replace(Field::Location) => true,
            // "vivo en Maipú" after "busco en Ñuñoa" says where they live, not where they look.
            Some(_) => !only_home_or_work(ex, new),
        };
        if replace {
            set(&mut changes, Field::Location, &mut p.location, new.to_string(), |v| json!(v));
        }
    }
    if let Some(new) = ex.monthly_income.filter(|v| *v > 0) {
        let replace = match profile.monthly_income {
            None => true,
            Some(old) => old != new && may_replace(Field::MonthlyIncome),
        };
        if replace {
            set(&mut changes, Field::MonthlyIncome, &mut p.monthly_income, new, |v| json!(v));
        }
    }
    merge_dicom(profile, ex, &may_replace, correction, &mut p, &mut changes);
    // Preferences follow the lead's latest word.
    if let Some(new) = ex.budget.filter(|b| b.amount > 0.0 && profile.budget != Some(*b)) {
        set(
            &mut changes,
            Field::Budget,
            &mut p.budget,
            new,
            |b| json!({"amount": b.amount, "currency": b.currency.as_str()}),
        );
    }
    if let Some(new) = ex.property_type.filter(|t| profile.property_type != Some(*t)) {
        set(&mut changes, Field::PropertyType, &mut p.property_type, new, |v| json!(v.as_str()));
    }
    if let Some(new) = ex.bedrooms.filter(|b| *b > 0 && profile.bedrooms != Some(*b)) {
        set(&mut changes, Field::Bedrooms, &mut p.bedrooms, new, |v| json!(v));
    }
    if let Some(new) = ex.timeline.filter(|t| profile.timeline != Some(*t)) {
        set(&mut changes, Field::Timeline, &mut p.timeline, new, |v| json!(v.as_str()));
    }
    if ex.intent.is_some() {
        p.intent = ex.intent;
    }
    for point in &ex.key_points {
        let point = point.trim();
        if !point.is_empty() && !p.key_points.iter().any(|k| fold(k) == fold(point)) {
            p.key_points.push(point.to_string());
        }
    }
    if p.key_points.len() > MAX_KEY_POINTS {
        let extra = p.key_points.len() - MAX_KEY_POINTS;
        p.key_points.drain(..extra);
    }
    (p, changes)
}

/// DICOM: a definite answer replaces "no sé"; a revealed debt replaces "clean"; "clean" replaces a
/// debt only as a correction or an answer; becoming clean zeroes the debt amount.
fn merge_dicom(
    profile: &Profile,
    ex: &Extraction,
    may_replace: &dyn Fn(Field) -> bool,
    correction: bool,
    p: &mut Profile,
    changes: &mut Vec<Change>,
) {
    use DicomStatus::*;
    let amount = ex.morosidad_amount.filter(|a| *a > 0);
    if let Some(new) = ex.dicom_status {
        let replace = match (profile.dicom_status, new) {
            (None, _) => true,
            (Some(old), new) if old == new => false,
            (Some(Unknown), _) => true,
            // A debt paid or prescribed must be verified again.
            (Some(HasDebt), Unknown) => true,
            (Some(HasDebt), Clean) => may_replace(Field::Dicom),
            (Some(Clean), HasDebt) => amount.is_some() || may_replace(Field::Dicom),
            (Some(Clean), Unknown) => correction,
            (Some(_), _) => false,
        };
        if replace {
            set(changes, Field::Dicom, &mut p.dicom_status, new, |v| json!(v.as_str()));
        }
    }
    if p.dicom_status == Some(Clean) {
        if profile.morosidad_amount.is_some_and(|a| a > 0) {
            set(changes, Field::DebtAmount, &mut p.morosidad_amount, 0, |v| json!(v));
        }
        return;
    }
    if let Some(new) = amount {
        let dicom_changed = p.dicom_status != profile.dicom_status;
        let replace = match profile.morosidad_amount {
            None | Some(0) => true,
            Some(old) => old != new && (dicom_changed || may_replace(Field::DebtAmount) || may_replace(Field::Dicom)),
        };
        if replace {
            set(changes, Field::DebtAmount, &mut p.morosidad_amount, new, |v| json!(v));
        }
    }
}

fn set<T: Clone>(changes: &mut Vec<Change>, field: Field, slot: &mut Option<T>, new: T, to_json: impl Fn(&T) -> Value) {
    let old = slot.as_ref().map(&to_json);
    changes.push(Change { field, old, new: to_json(&new) });
    *slot = Some(new);
}

/// The lead corrects something they said: "perdón", "me equivoqué", "en realidad", "corrijo",
/// "no, es …".
pub fn is_correction(text: &str) -> bool {
    const MARKERS: &[&str] = &[
        "perdon",
        "disculpa",
        "disculpe",
        "me equivoque",
        "me confundi",
        "en realidad",
        "corrijo",
        "correccion",
        "corrigiendo",
        "mejor dicho",
        "quise decir",
        "lo correcto es",
        "el correcto es",
        "la correcta es",
        "estaba mal",
        "esta mal",
        "error mio",
    ];
    let folded = fold(text);
    let trimmed = folded.trim_start_matches(|c: char| !c.is_alphanumeric());
    if trimmed.starts_with("no,") || trimmed.starts_with("no ,") || trimmed.starts_with("no es ese") {
        return true;
    }
    let words = padded_words(&folded);
    MARKERS.iter().any(|m| words.contains(&format!(" {m} ")))
}

/// Folded text as " word word … " so markers match whole words.
pub(crate) fn padded_words(folded: &str) -> String {
    let spaced: String = folded.chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    format!(" {} ", spaced.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Placeholder names ("User", "Test User", "WhatsApp Contact", "New Contact", usernames…) are not real names.
pub fn is_real_name(name: &str) -> bool {
    const PLACEHOLDERS: &[&str] = &[
        "user",
        "test user",
        "test",
        "usuario",
        "usuario de prueba",
        "prueba",
        "whatsapp contact",
        "whatsapp user",
        "telegram user",
        "telegram contact",
        "new contact",
        "nuevo contacto",
        "contacto",
        "contact",
        "unknown",
        "desconocido",
        "sin nombre",
        "no name",
        "anonimo",
        "anonymous",
        "cliente",
        "lead",
        "visitante",
        "visitor",
        "guest",
        "invitado",
        "web chat",
        "webchat",
        "web chat user",
        "none",
        "null",
        "n a",
        "na",
    ];
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return false;
    }
    // Usernames and handles: "@jperez", "juan_p", "maria.gz", "user123", "+56912345678".
    if name.chars().any(|c| c.is_ascii_digit() || matches!(c, '@' | '_' | '.' | '/' | ':' | '+' | '#')) {
        return false;
    }
    if name.chars().filter(|c| c.is_alphabetic()).count() < 2 {
        return false;
    }
    let words = padded_words(&fold(name));
    let words = words.trim();
    !PLACEHOLDERS.contains(&words) && !words.starts_with("whatsapp ") && !words.starts_with("telegram ")
}

/// An E.164 phone, not a channel placeholder (`web_chat_pending`, `whatsapp_…`, `+569999…`).
pub fn is_real_phone(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else { return false };
    (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with("569999")
}

/// An address with a domain, not a no-reply or example placeholder.
pub fn is_real_email(email: &str) -> bool {
    let email = email.trim().to_ascii_lowercase();
    let Some((local, domain)) = email.split_once('@') else { return false };
    let placeholder = ["noreply", "no-reply", "placeholder"].iter().any(|p| local.contains(p))
        || domain.starts_with("example.")
        || domain == "placeholder.com";
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !placeholder
}

/// Places that only name a city, region or zone: they never replace a comuna or sector.
const VAGUE_PLACES: &[&str] = &[
    "santiago",
    "gran santiago",
    "santiago de chile",
    "region metropolitana",
    "rm",
    "chile",
    "zona oriente",
    "zona norte",
    "zona sur",
    "zona poniente",
    "zona centro",
    "sector oriente",
    "sector norte",
    "sector sur",
    "sector poniente",
    "sector centro",
    "oriente",
    "centro",
    "quinta region",
    "region de valparaiso",
    "gran valparaiso",
    "gran concepcion",
    "region del biobio",
];

/// Sectors and the comuna that contains them: the comuna is vaguer than its sector.
const SECTORS: &[(&str, &str)] = &[
    ("chicureo", "colina"),
    ("piedra roja", "colina"),
    ("la dehesa", "lo barnechea"),
    ("los trapenses", "lo barnechea"),
    ("san carlos de apoquindo", "las condes"),
    ("el golf", "las condes"),
    ("barrio italia", "providencia"),
    ("bellavista", "providencia"),
    ("lastarria", "santiago"),
    ("renaca", "vina del mar"),
    ("curauma", "valparaiso"),
];

/// Whether `new` names a wider area than `old` ("Santiago" after "Ñuñoa", "Colina" after "Chicureo").
fn is_vaguer(new: &str, old: &str) -> bool {
    let (new, old) = (fold(new), fold(old));
    let vague = |p: &str| VAGUE_PLACES.contains(&p);
    (vague(&new) && !vague(&old)) || SECTORS.iter().any(|(sector, comuna)| *sector == old && *comuna == new)
}

/// The extractor noted `place` only as where the lead lives or works.
fn only_home_or_work(ex: &Extraction, place: &str) -> bool {
    ex.key_points.iter().any(|k| *k == format!("vive en {place}") || *k == format!("trabaja en {place}"))
}

/// `Calificacion` as its lower-case API word.
mod calificacion_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::leads::model::Calificacion;

    pub fn serialize<S: Serializer>(value: &Option<Calificacion>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(c) => s.serialize_str(c.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Calificacion>, D::Error> {
        let raw: Option<String> = Option::deserialize(d)?;
        Ok(raw.and_then(|s| s.parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::engine::extract::Currency;

    fn ex() -> Extraction {
        Extraction::default()
    }

    fn known() -> Profile {
        Profile {
            name: Some("Juan Pérez".into()),
            phone: Some("+56912345678".into()),
            email: Some("juan@gmail.com".into()),
            location: Some("Ñuñoa".into()),
            monthly_income: Some(1_500_000),
            dicom_status: Some(DicomStatus::Clean),
            ..Profile::default()
        }
    }

    #[test]
    fn none_never_erases_and_an_empty_turn_changes_nothing() {
        let (p, changes) = merge(&known(), &ex(), "hola", &[]);
        assert_eq!(p, known());
        assert!(changes.is_empty());
    }

    #[test]
    fn new_values_fill_gaps_and_are_reported() {
        let e = Extraction {
            name: Some("Ana Soto".into()),
            phone: Some("+56987654321".into()),
            email: Some("ana@gmail.com".into()),
            location: Some("Maipú".into()),
            monthly_income: Some(900_000),
            dicom_status: Some(DicomStatus::HasDebt),
            morosidad_amount: Some(50_000),
            budget: Some(Budget { amount: 3000.0, currency: Currency::Uf }),
            property_type: Some(PropertyType::Casa),
            bedrooms: Some(3),
            timeline: Some(Timeline::Days90),
            intent: Some(Intent::PropertySearch),
            ..ex()
        };
        let (p, changes) = merge(&Profile::default(), &e, "…", &[]);
        assert_eq!(p.name.as_deref(), Some("Ana Soto"));
        assert_eq!(p.morosidad_amount, Some(50_000));
        assert_eq!(p.intent, Some(Intent::PropertySearch));
        let fields: Vec<Field> = changes.iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                Field::Name,
                Field::Phone,
                Field::Email,
                Field::Location,
                Field::MonthlyIncome,
                Field::Dicom,
                Field::DebtAmount,
                Field::Budget,
                Field::PropertyType,
                Field::Bedrooms,
                Field::Timeline
            ]
        );
        let budget = changes.iter().find(|c| c.field == Field::Budget).unwrap();
        assert_eq!(budget.new, json!({"amount": 3000.0, "currency": "UF"}));
        assert_eq!(budget.old, None);
        let dicom = changes.iter().find(|c| c.field == Field::Dicom).unwrap();
        assert_eq!(dicom.new, json!("has_debt"));
    }

    /// (known profile, extraction, text, expecting, field, expected value after the merge).
    #[test]
    fn known_values_change_only_on_a_correction_or_an_answer() {
        let email = |e: &str| Extraction { email: Some(e.into()), ..ex() };
        let cases: &[(&str, &[Field], Option<&str>)] = &[
            ("mi correo es otro@gmail.com", &[], Some("juan@gmail.com")),
            ("perdón, es otro@gmail.com", &[], Some("otro@gmail.com")),
            ("me equivoqué, otro@gmail.com", &[], Some("otro@gmail.com")),
            ("en realidad es otro@gmail.com", &[], Some("otro@gmail.com")),
            ("corrijo: otro@gmail.com", &[], Some("otro@gmail.com")),
            ("no, es otro@gmail.com", &[], Some("otro@gmail.com")),
            ("otro@gmail.com", &[Field::Email], Some("otro@gmail.com")),
            ("otro@gmail.com", &[Field::Phone], Some("juan@gmail.com")),
        ];
        for &(text, expecting, want) in cases {
            let (p, changes) = merge(&known(), &email("otro@gmail.com"), text, expecting);
            assert_eq!(p.email.as_deref(), want, "{text}");
            let reported = changes.iter().any(|c| c.field == Field::Email);
            assert_eq!(reported, want == Some("otro@gmail.com"), "{text}");
        }
        let income = Extraction { monthly_income: Some(900_000), ..ex() };
        assert_eq!(merge(&known(), &income, "gano 900 mil", &[]).0.monthly_income, Some(1_500_000));
        assert_eq!(merge(&known(), &income, "perdón, gano 900 mil", &[]).0.monthly_income, Some(900_000));
        let (p, changes) = merge(&known(), &income, "900 mil", &[Field::MonthlyIncome]);
        assert_eq!(p.monthly_income, Some(900_000));
        assert_eq!(changes[0].old, Some(json!(1_500_000)));
        let phone = Extraction { phone: Some("+56911112222".into()), ..ex() };
        assert_eq!(merge(&known(), &phone, "+56911112222", &[]).0.phone.as_deref(), Some("+56912345678"));
        assert_eq!(merge(&known(), &phone, "mejor dicho +56911112222", &[]).0.phone.as_deref(), Some("+56911112222"));
    }

    #[test]
    fn placeholders_never_win_and_are_replaced_by_real_values() {
        let placeholder = Profile {
            name: Some("WhatsApp Contact".into()),
            phone: Some("web_chat_pending".into()),
            email: Some("noreply@example.com".into()),
            ..Profile::default()
        };
        let e = Extraction {
            name: Some("Carla Muñoz".into()),
            phone: Some("+56955554444".into()),
            email: Some("carla@gmail.com".into()),
            ..ex()
        };
        let (p, changes) = merge(&placeholder, &e, "soy Carla Muñoz", &[]);
        assert_eq!(
            (p.name.as_deref(), p.phone.as_deref(), p.email.as_deref()),
            (Some("Carla Muñoz"), Some("+56955554444"), Some("carla@gmail.com"))
        );
        assert_eq!(changes[0].old, Some(json!("WhatsApp Contact")));
        // A placeholder extracted never replaces anything.
        let bad = Extraction { name: Some("Test User".into()), email: Some("no-reply@x.cl".into()), ..ex() };
        let (p, changes) = merge(&known(), &bad, "perdón", &[Field::Name]);
        assert_eq!(p, known());
        assert!(changes.is_empty());
    }

    #[test]
    fn a_fuller_name_replaces_a_shorter_one_but_not_the_reverse() {
        let juan = Profile { name: Some("Juan".into()), ..Profile::default() };
        let full = Extraction { name: Some("Juan Pérez".into()), ..ex() };
        assert_eq!(merge(&juan, &full, "Juan Pérez", &[]).0.name.as_deref(), Some("Juan Pérez"));
        let short = Extraction { name: Some("Juan".into()), ..ex() };
        assert_eq!(merge(&known(), &short, "soy Juan", &[Field::Name]).0.name.as_deref(), Some("Juan Pérez"));
        let other = Extraction { name: Some("Pedro Soto".into()), ..ex() };
        assert_eq!(merge(&known(), &other, "soy Pedro Soto", &[]).0.name.as_deref(), Some("Juan Pérez"));
        assert_eq!(merge(&known(), &other, "perdón, soy Pedro Soto", &[]).0.name.as_deref(), Some("Pedro Soto"));
    }

    #[test]
    fn a_vaguer_location_never_replaces_a_comuna() {
        let at = |l: &str| Extraction { location: Some(l.into()), ..ex() };
        let cases: &[(&str, &str, &str, &str)] = &[
            ("Ñuñoa", "Santiago", "algo en Santiago", "Ñuñoa"),
            ("Chicureo", "Colina", "en Colina", "Chicureo"),
            ("Santiago", "Ñuñoa", "en Ñuñoa", "Ñuñoa"),
            ("Colina", "Chicureo", "en Chicureo", "Chicureo"),
            ("Ñuñoa", "Providencia", "mejor en Providencia", "Providencia"),
            ("Ñuñoa", "Santiago", "perdón, en Santiago centro", "Santiago"),
        ];
        for &(old, new, text, want) in cases {
            let profile = Profile { location: Some(old.into()), ..Profile::default() };
            assert_eq!(merge(&profile, &at(new), text, &[]).0.location.as_deref(), Some(want), "{old} → {new}");
        }
        // Where they live is not where they look.
        let home = Extraction { location: Some("Maipú".into()), key_points: vec!["vive en Maipú".into()], ..ex() };
        assert_eq!(merge(&known(), &home, "vivo en Maipú", &[]).0.location.as_deref(), Some("Ñuñoa"));
        let fresh = Profile::default();
        assert_eq!(merge(&fresh, &home, "vivo en Maipú", &[]).0.location.as_deref(), Some("Maipú"));
    }

    #[test]
    fn dicom_answers_replace_worse_ones() {
        use DicomStatus::*;
        let with = |s: Option<DicomStatus>, debt: Option<i64>| Profile {
            dicom_status: s,
            morosidad_amount: debt,
            ..Profile::default()
        };
        let said =
            |s: DicomStatus, debt: Option<i64>| Extraction { dicom_status: Some(s), morosidad_amount: debt, ..ex() };
        type Case<'a> = (
            Option<DicomStatus>,
            Option<i64>,
            DicomStatus,
            Option<i64>,
            &'a str,
            &'a [Field],
            (Option<DicomStatus>, Option<i64>),
        );
        let cases: &[Case] = &[
            (Some(Unknown), None, Clean, None, "ya revisé, estoy limpio", &[], (Some(Clean), None)),
            (Some(Unknown), None, HasDebt, Some(300_000), "debo 300 mil", &[], (Some(HasDebt), Some(300_000))),
            (Some(Clean), None, Unknown, None, "no sé", &[], (Some(Clean), None)),
            (
                Some(Clean),
                None,
                HasDebt,
                Some(800_000),
                "tengo una deuda de 800 mil",
                &[],
                (Some(HasDebt), Some(800_000)),
            ),
            (Some(Clean), None, HasDebt, None, "sí", &[], (Some(Clean), None)),
            (Some(HasDebt), Some(2_000_000), Clean, None, "no tengo dicom", &[], (Some(HasDebt), Some(2_000_000))),
            (Some(HasDebt), Some(2_000_000), Clean, None, "perdón, no tengo dicom", &[], (Some(Clean), Some(0))),
            (Some(HasDebt), Some(2_000_000), Unknown, None, "pagué mi dicom", &[], (Some(Unknown), Some(2_000_000))),
            (
                Some(HasDebt),
                None,
                HasDebt,
                Some(400_000),
                "400 mil",
                &[Field::DebtAmount],
                (Some(HasDebt), Some(400_000)),
            ),
            (Some(HasDebt), Some(400_000), HasDebt, Some(600_000), "600 mil", &[], (Some(HasDebt), Some(400_000))),
            (
                Some(HasDebt),
                Some(400_000),
                HasDebt,
                Some(600_000),
                "en realidad 600",
                &[],
                (Some(HasDebt), Some(600_000)),
            ),
        ];
        for &(old, old_debt, new, new_debt, text, expecting, want) in cases {
            let (p, _) = merge(&with(old, old_debt), &said(new, new_debt), text, expecting);
            assert_eq!((p.dicom_status, p.morosidad_amount), want, "{text}");
        }
    }

    #[test]
    fn preferences_follow_the_latest_word() {
        let profile = Profile { property_type: Some(PropertyType::Casa), bedrooms: Some(3), ..Profile::default() };
        let e = Extraction { property_type: Some(PropertyType::Departamento), bedrooms: Some(2), ..ex() };
        let (p, changes) = merge(&profile, &e, "mejor un depto de 2", &[]);
        assert_eq!((p.property_type, p.bedrooms), (Some(PropertyType::Departamento), Some(2)));
        assert_eq!(changes[0].old, Some(json!("casa")));
        assert_eq!(changes[0].new, json!("departamento"));
    }

    #[test]
    fn key_points_accumulate_deduplicated_and_capped() {
        let profile = Profile { key_points: vec!["busca casa en Ñuñoa".into()], ..Profile::default() };
        let e = Extraction { key_points: vec!["Busca casa en Ñuñoa".into(), "primera vivienda".into()], ..ex() };
        let (p, changes) = merge(&profile, &e, "…", &[]);
        assert_eq!(p.key_points, ["busca casa en Ñuñoa", "primera vivienda"]);
        assert!(changes.is_empty());
        let many = Profile { key_points: (0..30).map(|i| format!("nota {i}")).collect(), ..Profile::default() };
        let (p, _) = merge(&many, &Extraction { key_points: vec!["nueva".into()], ..ex() }, "…", &[]);
        assert_eq!(p.key_points.len(), MAX_KEY_POINTS);
        assert_eq!(p.key_points.first().map(String::as_str), Some("nota 1"));
        assert_eq!(p.key_points.last().map(String::as_str), Some("nueva"));
    }

    #[test]
    fn corrections_are_recognised_by_their_words() {
        for text in [
            "perdón, es juan@gmail.com",
            "Perdon me equivoqué",
            "en realidad gano 900",
            "corrijo mi correo",
            "No, es +56911112222",
            "no , mi correo es otro",
            "quise decir Providencia",
            "mejor dicho 2 millones",
        ] {
            assert!(is_correction(text), "{text}");
        }
        for text in ["no tengo dicom", "no sé", "hola", "gano 900 mil", "me interesa Providencia", "no es urgente"] {
            assert!(!is_correction(text), "{text}");
        }
    }

    #[test]
    fn real_names_and_placeholders() {
        for name in ["Juan Pérez", "gabriel gonzalez", "María José", "Ñuño", "Ana", "O'Higgins Soto", "Jean-Luc"] {
            assert!(is_real_name(name), "{name}");
        }
        for name in [
            "",
            "  ",
            "User",
            "Test User",
            "test user",
            "WhatsApp Contact",
            "New Contact",
            "Usuario",
            "Cliente",
            "@jperez",
            "juan_perez",
            "maria.gz",
            "user123",
            "+56912345678",
            "WhatsApp +56912345678",
            "Telegram 88812",
            "J",
            "n/a",
        ] {
            assert!(!is_real_name(name), "{name}");
        }
    }

    #[test]
    fn real_phones_and_emails() {
        assert!(is_real_phone("+56912345678"));
        for p in ["web_chat_pending", "whatsapp_123", "+56999999999", "56912345678", "+56 9 1234 5678", ""] {
            assert!(!is_real_phone(p), "{p}");
        }
        assert!(is_real_email("carlos@test.cl"));
        for e in ["noreply@corredor.cl", "a@example.com", "juan@", "@gmail.com", "juan@gmail", "juan"] {
            assert!(!is_real_email(e), "{e}");
        }
    }

    #[test]
    fn known_fields_ignore_placeholders_and_unknown_dicom() {
        let p = Profile {
            name: Some("New Contact".into()),
            phone: Some("whatsapp_569".into()),
            dicom_status: Some(DicomStatus::Unknown),
            ..Profile::default()
        };
        assert!(!p.knows(Field::Name) && !p.knows(Field::Phone) && !p.knows(Field::Dicom));
        assert!(!p.knows(Field::DebtAmount));
        let clean = Profile { dicom_status: Some(DicomStatus::Clean), ..Profile::default() };
        assert!(clean.knows(Field::Dicom) && clean.knows(Field::DebtAmount));
        assert_eq!(known().first_name().as_deref(), Some("Juan"));
        let lower = Profile { name: Some("gabriel gonzalez".into()), ..Profile::default() };
        assert_eq!(lower.first_name().as_deref(), Some("Gabriel"));
    }

    #[test]
    fn the_profile_serialises_calificacion_as_its_api_word() {
        let p = Profile { calificacion: Some(Calificacion::NoCalificado), ..known() };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["calificacion"], json!("no_calificado"));
        assert_eq!(v["dicom_status"], json!("clean"));
        let back: Profile = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        let bare: Profile = serde_json::from_value(json!({})).unwrap();
        assert_eq!(bare, Profile::default());
    }
}
