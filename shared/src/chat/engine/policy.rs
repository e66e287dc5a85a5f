//! The guard on what Sofía may say (SPEC §6 step 7, reference §12.2 DICOM metric): no credit
//! promises or approvals, and no down-payment, instalment or credit figures. Checked on every
//! outgoing text and on knowledge-base snippets before they are quoted.

use crate::text::fold;

/// Phrases that promise credit whatever the context (folded, whole words).
const PROMISES: &[(&str, &str)] = &[
    ("puedes acceder al credito", "credit_promise"),
    ("puedes acceder a credito", "credit_promise"),
    ("puedes acceder a un credito", "credit_promise"),
    ("puedes acceder al subsidio", "credit_promise"),
    ("puedes acceder a subsidio", "credit_promise"),
    ("puedes acceder al financiamiento", "credit_promise"),
    ("podrias acceder al credito", "credit_promise"),
    ("podrias acceder a un credito", "credit_promise"),
    ("podras acceder al credito", "credit_promise"),
    ("calificas", "qualification_claim"),
    ("calificarias", "qualification_claim"),
    ("vas a calificar", "qualification_claim"),
    ("califica para", "qualification_claim"),
    ("calificas para", "qualification_claim"),
    ("calificar para el credito", "qualification_claim"),
    ("preaprobado", "pre_approval"),
    ("preaprobada", "pre_approval"),
    ("preaprobados", "pre_approval"),
    ("preaprobadas", "pre_approval"),
    ("preaprobacion", "pre_approval"),
    ("preaprobar", "pre_approval"),
    ("pre aprobado", "pre_approval"),
    ("pre aprobada", "pre_approval"),
    ("pre aprobados", "pre_approval"),
    ("pre aprobadas", "pre_approval"),
    ("pre aprobacion", "pre_approval"),
    ("pre aprobar", "pre_approval"),
    ("te podemos financiar", "financing_promise"),
    ("podemos financiarte", "financing_promise"),
    ("te financiamos", "financing_promise"),
    ("te vamos a financiar", "financing_promise"),
    ("financiar igual", "financing_promise"),
    ("financiarte igual", "financing_promise"),
    ("te podemos aprobar", "approval_promise"),
    ("te van a aprobar", "approval_promise"),
    ("te aprueban", "approval_promise"),
    ("te aprobaran", "approval_promise"),
    ("credito aprobado", "approval_promise"),
    ("credito asegurado", "approval_promise"),
    ("te van a dar el credito", "credit_promise"),
    ("te daran el credito", "credit_promise"),
    ("te dan el credito", "credit_promise"),
    ("igual puedes", "credit_promise"),
    ("igual podrias", "credit_promise"),
    ("cartera propia", "in_house_financing"),
    ("financiamiento directo", "in_house_financing"),
];

/// With an active debt, any talk of approval is a promise.
const DEBT_APPROVAL: &[&str] = &["aprobado", "aprobada", "aprobados", "aprobadas", "aprobacion", "aprobar", "aprueban"];

/// Words that, next to a figure, quote a down payment, an instalment or a credit amount.
const MONEY_TERMS: &[&str] = &[
    "pie",
    "cuota",
    "cuotas",
    "dividendo",
    "dividendos",
    "credito",
    "creditos",
    "hipotecario",
    "hipotecaria",
    "financiamiento",
    "financiar",
    "financiamos",
    "financian",
    "prestamo",
    "prestan",
    "tasa",
];

/// Words after a number that make it money or a share.
const AMOUNT_UNITS: &[&str] =
    &["uf", "mil", "millon", "millones", "lucas", "palos", "pesos", "clp", "por", "porciento"];

/// Number words that, before "por ciento" or "%", give a share.
const NUMBER_WORDS: &[&str] =
    &["cinco", "diez", "quince", "veinte", "treinta", "cuarenta", "cincuenta", "ochenta", "noventa"];

/// Whether an outgoing text breaks the rules: credit promises ("puedes acceder al crédito", "calificas", "pre-aprobado",
/// "aprobado" in debt context, "te podemos financiar", "igual puedes", "cartera propia"… reference §12.2 DICOM metric)
/// or quotes down-payment/instalment figures (pie/cuota/dividendo with a % or an amount).
pub fn violation(text: &str, debt_context: bool) -> Option<&'static str> {
    let words = tokens(text);
    let joined = format!(" {} ", words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" "));
    if let Some((_, rule)) = PROMISES.iter().find(|(p, _)| joined.contains(&format!(" {p} "))) {
        return Some(rule);
    }
    if debt_context && words.iter().any(|w| DEBT_APPROVAL.contains(&w.text.as_str())) {
        return Some("approval_in_debt_context");
    }
    figure_near_money_term(&words)
}

#[derive(Debug)]
struct Word {
    text: String,
    /// Contains a digit or is a `%` / `$` sign.
    figure: bool,
}

/// Folded words; "pre-aprobado" becomes "pre aprobado", "20%" gives "20" and "%", "$300.000" gives
/// "$" and "300.000".
fn tokens(text: &str) -> Vec<Word> {
    let folded = fold(text);
    let mut out = Vec::new();
    let mut cur = String::new();
    let flush = |cur: &mut String, out: &mut Vec<Word>| {
        let t = cur.trim_matches(|c: char| c == '.' || c == ',').to_string();
        if !t.is_empty() {
            out.push(Word { figure: t.chars().any(|c| c.is_ascii_digit()), text: t });
        }
        cur.clear();
    };
    for c in folded.chars() {
        match c {
            c if c.is_alphanumeric() => cur.push(c),
            // Inside numbers: "300.000", "1,5".
            '.' | ',' if cur.chars().last().is_some_and(|l| l.is_ascii_digit()) => cur.push(c),
            '%' | '$' => {
                flush(&mut cur, &mut out);
                out.push(Word { text: c.to_string(), figure: true });
            }
            _ => flush(&mut cur, &mut out),
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// "pie del 20%", "20% de pie", "cuota de $300.000", "dividendo de 15 UF", "crédito de 3.000 UF".
fn figure_near_money_term(words: &[Word]) -> Option<&'static str> {
    for (i, w) in words.iter().enumerate() {
        if !MONEY_TERMS.contains(&w.text.as_str()) {
            continue;
        }
        let prev = i.checked_sub(1).and_then(|p| words.get(p)).map(|p| p.text.as_str());
        // "a pie del metro", "a 5 minutos a pie".
        if w.text == "pie" && prev == Some("a") {
            continue;
        }
        let from = i.saturating_sub(4);
        let to = (i + 7).min(words.len());
        let window = words.get(from..to).unwrap_or_default();
        // "cuota de gastos comunes" is not an instalment of a credit.
        if window.windows(2).any(|p| p[0].text == "gastos" && p[1].text == "comunes") {
            continue;
        }
        if window.iter().enumerate().any(|(j, x)| is_amount(window, j, x)) {
            return Some(if matches!(w.text.as_str(), "pie" | "cuota" | "cuotas" | "dividendo" | "dividendos") {
                "payment_figure"
            } else {
                "credit_figure"
            });
        }
    }
    None
}

fn is_amount(window: &[Word], j: usize, x: &Word) -> bool {
    let next = window.get(j + 1).map(|n| n.text.as_str());
    let after = window.get(j + 2).map(|n| n.text.as_str());
    if x.text == "%" || x.text == "$" {
        return true;
    }
    let percent_words =
        next == Some("por") && after == Some("ciento") || next == Some("porciento") || next == Some("%");
    if NUMBER_WORDS.contains(&x.text.as_str()) && percent_words {
        return true;
    }
    if !x.figure {
        return false;
    }
    // A bare digit counts when it is money or a share, or a big figure on its own ("300.000").
    let digits: String = x.text.chars().filter(char::is_ascii_digit).collect();
    next.is_some_and(|n| AMOUNT_UNITS.contains(&n)) || digits.len() >= 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_forbidden_promise_of_the_dicom_metric_is_caught() {
        let cases: &[(&str, &str)] = &[
            ("Igual puedes acceder al crédito hipotecario", "credit_promise"),
            ("Con tu renta puedes acceder al crédito sin problema", "credit_promise"),
            ("Tranquilo, puedes acceder al subsidio", "credit_promise"),
            ("Con esos ingresos calificas para un crédito", "qualification_claim"),
            ("Creo que calificas", "qualification_claim"),
            ("Quedarías pre-aprobado en el banco", "pre_approval"),
            ("Estás preaprobada", "pre_approval"),
            ("Te ayudamos con la pre-aprobación", "pre_approval"),
            ("Podemos pre-aprobar tu crédito", "pre_approval"),
            ("Los créditos pre-aprobados salen rápido", "pre_approval"),
            ("No te preocupes, te podemos financiar", "financing_promise"),
            ("Podemos financiar igual la compra", "financing_promise"),
            ("Te podemos aprobar de todas formas", "approval_promise"),
            ("Igual puedes comprar con DICOM", "credit_promise"),
            ("Tenemos cartera propia para casos como el tuyo", "in_house_financing"),
            ("Tu crédito aprobado sale en una semana", "approval_promise"),
        ];
        for &(text, rule) in cases {
            assert_eq!(violation(text, false), Some(rule), "{text}");
            assert!(violation(text, true).is_some(), "{text}");
        }
    }

    #[test]
    fn approval_talk_is_forbidden_only_with_a_debt() {
        for text in ["Con esa deuda igual te pueden dar la aprobación", "Quedarías aprobado", "El banco puede aprobar"]
        {
            assert_eq!(violation(text, true), Some("approval_in_debt_context"), "{text}");
            assert_eq!(violation(text, false), None, "{text}");
        }
    }

    #[test]
    fn down_payment_and_instalment_figures_are_caught() {
        let cases: &[(&str, &str)] = &[
            ("El pie mínimo es del 10%", "payment_figure"),
            ("Necesitas un 20% de pie", "payment_figure"),
            ("El pie es de 200 UF", "payment_figure"),
            ("La cuota quedaría en $350.000", "payment_figure"),
            ("Las cuotas son de 15 UF mensuales", "payment_figure"),
            ("El dividendo sería de unos 500 mil pesos", "payment_figure"),
            ("un dividendo aprox. de 450.000", "payment_figure"),
            ("Con diez por ciento de pie partes", "payment_figure"),
            ("El banco financia hasta un 80% del crédito", "credit_figure"),
            ("Te prestan un crédito de 3.000 UF", "credit_figure"),
            ("El financiamiento llega al 90%", "credit_figure"),
        ];
        for &(text, rule) in cases {
            assert_eq!(violation(text, false), Some(rule), "{text}");
        }
    }

    #[test]
    fn the_sentences_sofia_needs_pass() {
        let allowed = [
            "Hola, soy Sofía de Inmobiliaria Andes 😊 ¿Con quién tengo el gusto?",
            "¿Cuál es tu renta líquida mensual aproximada? ¿Y tienes deudas morosas o estás en DICOM?",
            "Te recomiendo regularizar esa deuda antes de avanzar; cuando regularices, escríbenos y retomamos.",
            "El pie, las cuotas y el crédito dependen de la evaluación del banco; eso lo revisa contigo un ejecutivo en la videollamada.",
            "¡Listo, Juan! Tu reunión quedó para el jueves 10 de diciembre a las 10:00.",
            "Trae tu carnet y tus 3 últimas liquidaciones de sueldo.",
            "1) jueves 10 de diciembre, 10:00\n2) viernes 11 de diciembre, 16:00\n3) sábado 12 de diciembre, 10:00",
            "El proyecto queda a 5 minutos a pie del metro.",
            "Los gastos comunes rondan los $80.000 y la cuota de gastos comunes se paga mensual.",
            "Revisa tu situación en Equifax o en el boletín comercial (dicom.cl).",
            "Un crédito hipotecario requiere una evaluación del banco.",
            "El departamento tiene 2 dormitorios y 65 m² útiles.",
            "Para agendar necesito tu teléfono, así un ejecutivo te confirma la visita.",
        ];
        for text in allowed {
            assert_eq!(violation(text, true), None, "{text}");
            assert_eq!(violation(text, false), None, "{text}");
        }
    }

    #[test]
    fn words_inside_others_do_not_trigger() {
        // "calificación" is not "calificas"; "aprobado" is fine without a debt.
        assert_eq!(violation("Tu calificación la revisa un ejecutivo", true), None);
        assert_eq!(violation("El proyecto fue aprobado por la municipalidad", false), None);
        assert_eq!(violation("Depende de tu pie", false), None);
    }
}
