//! The lead's own DICOM status, read clause by clause: "no tengo DICOM" is clean, "estoy en
//! DICOM" has debt, "no sé si tengo DICOM" is unknown. Questions ("¿Necesito DICOM limpio?") state
//! nothing; a spouse's DICOM is not the lead's; a bare "no"/"sí" answers when Sofía asked.

use super::DicomStatus;
use super::tokens::{Clause, Kind, Token, find, match_at, words};

/// What the message says about DICOM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Dicom {
    pub status: Option<DicomStatus>,
    pub notes: Vec<String>,
    /// DICOM, debts or arrears are talked about at all (statement or question).
    pub mentioned: bool,
}

const UNKNOWN: &[&str] = &[
    "no se si tengo|estoy|aparezco|salgo",
    "no se si",
    "nunca lo he revisado|visto|chequeado",
    "no lo he revisado|visto|chequeado",
    "nunca he revisado|chequeado",
    "no he revisado|chequeado",
    "no estoy seguro|segura",
    "ni idea",
    "no tengo idea",
];

const SETTLED: &[&str] = &[
    "pague|pagamos mi|la|el|mis|las|todas? dicom|deuda*|deudas",
    "ya pague|pagamos|regularice|regularicé",
    "regularice|regularizamos",
    "sali|salimos del dicom",
    "deuda* prescrit*",
    "prescrit*",
];

/// Clean statements that contain a has-debt phrase and must be read first.
const HAS_DEBT_FIRST: &[&str] = &[
    "no tengo|tenemos el? dicom limpio",
    "no estoy|estamos limpio|limpia|limpios",
    "no tengo|tenemos los papeles limpios",
];

const CLEAN: &[&str] = &[
    "no tengo|tenemos|tiene dicom",
    "no estoy|estamos|aparezco|aparecemos|salgo en el? dicom|boletin",
    "nunca he estado en el? dicom",
    "sin dicom",
    "dicom limpio",
    "limpio|limpia|limpios de dicom|deudas",
    "estoy|estamos|ando limpio|limpia|limpios",
    "sin deuda|deudas|morosidad|morosidades",
    "no tengo|tenemos deuda|deudas|morosidad|morosidades",
    "no tengo|tenemos ninguna deuda",
    "no tengo|tenemos deudas|deuda morosa|morosas|impagas",
    "cero deudas",
    "ninguna|ninguno en el? dicom",
    "estoy|estamos|ando al dia",
    "al dia con todo",
    "no tengo|tenemos problemas de|con dicom",
    "papeles limpios",
];

const HAS_DEBT: &[&str] = &[
    "estoy|estamos|aparezco|aparecemos|salgo|ando en el? dicom|boletin",
    "tengo|tenemos dicom",
    "con dicom",
    "tengo|tenemos una|unas|algunas|varias|un|unos? deuda*",
    "tengo|tenemos deudas|deuda",
    "deuda|deudas morosa|morosas|impaga|impagas",
    "en mora",
    "moros*",
    "protest*",
    "debo",
];

const FAMILY: &[&str] = &[
    "esposa", "esposo", "marido", "senora", "pareja", "polola", "pololo", "mama", "papa", "madre", "padre", "hijo",
    "hija", "hermano", "hermana", "conyuge", "socio", "socia", "suegra", "suegro", "novia", "novio",
];

/// Words that negate the phrase right after them ("no tengo deudas", "nunca estuve en DICOM").
fn negated(tokens: &[Token], start: usize) -> bool {
    start
        .checked_sub(1)
        .and_then(|p| tokens.get(p))
        .is_some_and(|t| matches!(t.folded.as_str(), "no" | "nunca" | "ni" | "tampoco" | "sin" | "jamas"))
}

fn first_match(tokens: &[Token], patterns: &[&'static str], check_negation: bool) -> Option<(usize, usize)> {
    patterns
        .iter()
        .filter_map(|p| find(tokens, p))
        .filter(|&(start, _)| !check_negation || !negated(tokens, start))
        .min_by_key(|&(start, _)| start)
}

/// "mi esposa tiene DICOM": the family member it is about, if the clause is about one.
fn about_family<'t>(tokens: &'t [Token]) -> Option<&'t Token<'t>> {
    tokens.windows(2).find_map(|w| match w {
        [possessive, who]
            if matches!(possessive.folded.as_str(), "mi" | "su") && FAMILY.contains(&who.folded.as_str()) =>
        {
            Some(who)
        }
        _ => None,
    })
}

fn mentions_dicom(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| {
        let w = t.folded.as_str();
        w == "dicom"
            || w == "boletin"
            || w == "mora"
            || w.starts_with("deuda")
            || w.starts_with("moros")
            || w == "equifax"
    })
}

/// The status one statement clause gives, with its note.
fn clause_status(tokens: &[Token]) -> (Option<DicomStatus>, Option<String>) {
    let dicom_words = mentions_dicom(tokens);
    if first_match(tokens, SETTLED, false).is_some() && (dicom_words || tokens.iter().any(|t| t.folded == "pague")) {
        return (Some(DicomStatus::Unknown), Some(settled_note(tokens)));
    }
    if dicom_words && first_match(tokens, UNKNOWN, false).is_some() {
        return (Some(DicomStatus::Unknown), None);
    }
    if first_match(tokens, HAS_DEBT_FIRST, false).is_some() {
        return (Some(DicomStatus::HasDebt), None);
    }
    let clean = first_match(tokens, CLEAN, false);
    let debt = first_match(tokens, HAS_DEBT, true);
    match (clean, debt) {
        // Overlapping phrases ("tengo DICOM limpio"): the one that reads further wins; apart, the first.
        (Some((c, c_end)), Some((d, d_end))) => {
            let overlap = c < d_end && d < c_end;
            let debt_wins = if overlap { d_end > c_end } else { d < c };
            (Some(if debt_wins { DicomStatus::HasDebt } else { DicomStatus::Clean }), None)
        }
        (Some(_), None) => (Some(DicomStatus::Clean), None),
        (None, Some(_)) => (Some(DicomStatus::HasDebt), None),
        (None, None) => (None, None),
    }
}

fn settled_note(tokens: &[Token]) -> String {
    if tokens.iter().any(|t| t.folded.starts_with("prescrit")) {
        "deuda prescrita (verificar DICOM)".to_string()
    } else {
        "pagó o regularizó su deuda recientemente (verificar DICOM)".to_string()
    }
}

/// "yo no", "yo tampoco", "yo sí" after a clause about someone else's DICOM.
fn own_after_family(tokens: &[Token]) -> Option<DicomStatus> {
    match words(tokens).as_slice() {
        ["yo", "no", ..] | ["yo", "tampoco", ..] | ["no", "yo"] => Some(DicomStatus::Clean),
        ["yo", "si", ..] | ["yo", "tambien", ..] => Some(DicomStatus::HasDebt),
        _ => None,
    }
}

const BARE_CLEAN: &[&str] = &[
    "no",
    "nop",
    "nope",
    "no tengo",
    "no no",
    "nada",
    "ninguna",
    "ninguno",
    "para nada",
    "negativo",
    "nunca",
    "no estoy",
    "no tengo nada",
    "no gracias a dios",
    "no por suerte",
    "afortunadamente no",
    "por suerte no",
];
const BARE_DEBT: &[&str] = &[
    "si",
    "sip",
    "si tengo",
    "tengo",
    "si estoy",
    "afirmativo",
    "lamentablemente si",
    "si lamentablemente",
    "si tengo una",
];
const BARE_UNKNOWN: &[&str] = &[
    "no se",
    "no lo se",
    "ni idea",
    "no estoy seguro",
    "no estoy segura",
    "no tengo idea",
    "tal vez",
    "puede ser",
    "creo que si",
    "creo que no",
    "quizas",
];

/// A reply that is only "no", "sí" or "no sé" (punctuation and "gracias" aside).
fn bare_answer(tokens: &[Token]) -> Option<DicomStatus> {
    let said: Vec<&str> = words(tokens).into_iter().filter(|w| !matches!(*w, "gracias" | "jaja" | "ok")).collect();
    let said = said.join(" ");
    if BARE_UNKNOWN.contains(&said.as_str()) {
        Some(DicomStatus::Unknown)
    } else if BARE_CLEAN.contains(&said.as_str()) {
        Some(DicomStatus::Clean)
    } else if BARE_DEBT.contains(&said.as_str()) {
        Some(DicomStatus::HasDebt)
    } else {
        None
    }
}

/// "No, y gano 800 mil" / "sí, como 200 mil": a leading yes or no answers the DICOM question.
fn leading_answer(tokens: &[Token]) -> Option<DicomStatus> {
    let answered = tokens.get(1).is_some_and(|t| t.kind == Kind::Punct);
    if !answered {
        return None;
    }
    if match_at(tokens, 0, "no|nop").is_some() {
        Some(DicomStatus::Clean)
    } else if match_at(tokens, 0, "si|sip").is_some() {
        Some(DicomStatus::HasDebt)
    } else {
        None
    }
}

pub(super) fn read_dicom(tokens: &[Token], clauses: &[Clause], expecting: bool) -> Dicom {
    let mut dicom = Dicom { mentioned: mentions_dicom(tokens), ..Dicom::default() };
    let mut family_before = false;
    for clause in clauses {
        let part = clause.tokens(tokens);
        if clause.question {
            family_before = false;
            continue;
        }
        if family_before && let Some(own) = own_after_family(part) {
            dicom.status = Some(own);
            family_before = false;
            continue;
        }
        if let Some(who) = about_family(part).filter(|_| mentions_dicom(part)) {
            let what = if part.iter().any(|t| t.folded == "dicom") { "DICOM" } else { "deudas" };
            dicom.notes.push(format!("su {} tiene {what}", who.raw.to_lowercase()));
            family_before = true;
            continue;
        }
        family_before = false;
        let (status, note) = clause_status(part);
        if let Some(status) = status {
            dicom.status = Some(status);
        }
        dicom.notes.extend(note);
    }
    if dicom.status.is_none() && expecting {
        dicom.status = bare_answer(tokens).or_else(|| leading_answer(tokens));
    }
    dicom
}

#[cfg(test)]
mod tests {
    use super::super::tokens::{clauses, tokenize};
    use super::*;
    use DicomStatus::*;

    fn read(text: &str, expecting: bool) -> Dicom {
        let tokens = tokenize(text);
        read_dicom(&tokens, &clauses(&tokens), expecting)
    }

    fn status(text: &str) -> Option<DicomStatus> {
        read(text, false).status
    }

    #[test]
    fn clean_statements() {
        for text in [
            "no tengo DICOM",
            "No tengo DICOM, estoy al día con todo",
            "no estoy en DICOM",
            "no estoy en el dicom",
            "estoy limpio",
            "estoy limpia",
            "DICOM limpio",
            "Sí, tengo DICOM limpio",
            "sin deudas",
            "estoy al día",
            "no tengo deudas",
            "no tengo ninguna deuda",
            "nunca he estado en DICOM",
            "no aparezco en el boletín",
            "tenía DICOM pero ya estoy limpio",
            "no tengo morosidades",
            "tengo 3 deudas pero ninguna en DICOM",
        ] {
            assert_eq!(status(text), Some(Clean), "{text}");
        }
    }

    #[test]
    fn has_debt_statements() {
        for text in [
            "estoy en DICOM",
            "tengo DICOM",
            "tengo deudas en mora",
            "Tengo morosidad en un banco",
            "estoy en el boletín",
            "Estoy en DICOM pero igual quiero el crédito",
            "Tengo deudas en mora, ¿puedo acceder a crédito?",
            "Estoy en DICOM con 1 millón de deuda",
            "Tengo dos créditos morosos en DICOM",
            "Estoy en DICOM, ¿me pueden dar subsidio?",
            "Tengo deuda en DICOM de 800 mil pesos",
            "No tengo ingresos formales y tengo DICOM",
            "No trabajo, no tengo ingresos y no tengo DICOM limpio",
            "Tengo una deuda pequeña de 50 mil pesos en una tienda",
            "Estoy en DICOM por una deuda de 500 mil",
            "Tengo deuda de 2 millones en DICOM pero quiero comprar igual",
            "debo 800 mil",
            "soy moroso",
            "no estoy limpio",
        ] {
            assert_eq!(status(text), Some(HasDebt), "{text}");
        }
    }

    #[test]
    fn unknown_statements() {
        for text in [
            "No sé si tengo DICOM, nunca lo he revisado",
            "no sé si estoy en dicom",
            "ni idea si tengo deudas en dicom",
        ] {
            assert_eq!(status(text), Some(Unknown), "{text}");
        }
    }

    #[test]
    fn a_debt_paid_or_prescribed_must_be_verified() {
        let d = read("Pagué mi DICOM hace un mes", false);
        assert_eq!(d.status, Some(Unknown));
        assert_eq!(d.notes, ["pagó o regularizó su deuda recientemente (verificar DICOM)"]);
        let d = read("Solo tengo DICOM por una deuda prescrita de hace 10 años", false);
        assert_eq!(d.status, Some(Unknown));
        assert_eq!(d.notes, ["deuda prescrita (verificar DICOM)"]);
    }

    #[test]
    fn questions_about_dicom_state_nothing() {
        for text in
            ["¿Qué es el DICOM exactamente?", "¿Necesito DICOM limpio para comprar?", "qué pasa si tengo dicom?"]
        {
            let d = read(text, true);
            assert_eq!(d.status, None, "{text}");
            assert!(d.mentioned, "{text}");
        }
    }

    #[test]
    fn a_spouses_dicom_is_not_the_leads() {
        let d = read("Mi esposa tiene DICOM pero yo no", false);
        assert_eq!(d.status, Some(Clean));
        assert_eq!(d.notes, ["su esposa tiene DICOM"]);
        assert_eq!(status("mi marido está en DICOM, yo también"), Some(HasDebt));
        assert_eq!(status("mi pareja tiene dicom"), None);
        let d = read("mi esposa tiene deudas pero yo estoy limpio", false);
        assert_eq!((d.status, d.notes), (Some(Clean), vec!["su esposa tiene deudas".to_string()]));
    }

    #[test]
    fn a_bare_answer_counts_only_when_dicom_was_asked() {
        let cases: &[(&str, Option<DicomStatus>)] = &[
            ("no", Some(Clean)),
            ("No.", Some(Clean)),
            ("nop", Some(Clean)),
            ("no, gracias a dios", Some(Clean)),
            ("No, y gano 800 mil", Some(Clean)),
            ("sí, como 200 mil", Some(HasDebt)),
            ("sí", Some(HasDebt)),
            ("Si tengo", Some(HasDebt)),
            ("no sé", Some(Unknown)),
            ("ni idea", Some(Unknown)),
            ("hola", None),
        ];
        for &(text, want) in cases {
            assert_eq!(read(text, true).status, want, "{text}");
        }
        assert_eq!(status("no"), None);
        assert_eq!(status("sí"), None);
    }
}
