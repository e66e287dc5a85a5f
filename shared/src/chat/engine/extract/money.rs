//! Money as Chileans write it ("$1.500.000", "1,5 millones", "800 lucas", "2 palos", "UF 4500",
//! "un millón y medio") and what each amount is: income, budget, debt, savings or an expense.
//! The role comes from the words around the amount ("gano", "presupuesto", "deuda de", "de pie"),
//! else from what Sofía asked for; an amount without either is left out.

use super::tokens::{Kind, Token, match_at};
use super::{Currency, Field};

/// How an amount was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unit {
    Clp,
    Uf,
    /// Dollars and the like: never a CLP figure.
    Foreign,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Amount {
    /// Pesos for CLP, units of UF for UF.
    pub value: f64,
    /// The currency as written ("$", "pesos", "UF"); `None` for a bare number.
    pub unit: Option<Unit>,
    /// The multiplier written with it (1 000 for "mil"/"lucas", 1 000 000 for "millones"/"palos").
    pub multiplier: f64,
    /// The lower bound when written as a range ("entre 2.000 y 2.500 UF").
    pub low: Option<f64>,
    /// Token span.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Income,
    Budget,
    Debt,
    Savings,
    Expense,
}

/// The money facts of one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Money {
    pub income: Option<i64>,
    pub budget: Option<(f64, Currency)>,
    pub debt: Option<i64>,
    pub notes: Vec<String>,
}

const INCOME_MIN: f64 = 100_000.0;
const INCOME_MAX: f64 = 100_000_000.0;

/// Reads every amount in the message and keeps the first of each role. Phones and emails are
/// already masked out of `tokens`.
pub(super) fn read_money(tokens: &[Token], expecting: &[Field]) -> Money {
    let amounts = merge_ranges(tokens, find_amounts(tokens));
    let mut money = Money::default();
    let mut previous_end = 0;
    for amount in &amounts {
        let role = role_of(tokens, amount, previous_end).or_else(|| role_by_context(amount, expecting));
        previous_end = amount.end;
        match role {
            Some(Role::Income) => take_income(&mut money, amount),
            Some(Role::Budget) => take_budget(&mut money, amount),
            Some(Role::Debt) => take_debt(&mut money, tokens, amount),
            Some(Role::Savings) => money.notes.push(format!("ahorro o pie de {}", describe(amount))),
            Some(Role::Expense) => money.notes.push(format!("paga o puede pagar {}", describe(amount))),
            None => {}
        }
    }
    money
}

fn take_income(money: &mut Money, amount: &Amount) {
    if money.income.is_some() {
        return;
    }
    match amount.unit {
        Some(Unit::Uf) => money.notes.push(format!("renta informada en UF: {}", describe(amount))),
        Some(Unit::Foreign) => {}
        Some(Unit::Clp) | None => {
            let value = amount.low.unwrap_or(amount.value);
            if (INCOME_MIN..=INCOME_MAX).contains(&value) {
                money.income = Some(value.round() as i64);
                if amount.low.is_some() {
                    money.notes.push(format!("renta entre {}", describe_range(amount)));
                }
            }
        }
    }
}

fn budget_currency(amount: &Amount) -> Option<Currency> {
    match amount.unit {
        Some(Unit::Uf) => Some(Currency::Uf),
        Some(Unit::Clp) => Some(Currency::Clp),
        Some(Unit::Foreign) => None,
        // "presupuesto de 3000": prices of homes are quoted in UF.
        None if amount.multiplier == 1.0 && amount.value < 100_000.0 => Some(Currency::Uf),
        None => Some(Currency::Clp),
    }
}

fn take_budget(money: &mut Money, amount: &Amount) {
    if money.budget.is_some() {
        return;
    }
    let Some(currency) = budget_currency(amount) else {
        return;
    };
    let plausible = match currency {
        Currency::Uf => (5.0..=1_000_000.0).contains(&amount.value),
        Currency::Clp => (100_000.0..=100_000_000_000.0).contains(&amount.value),
    };
    if !plausible {
        return;
    }
    money.budget = Some((amount.value, currency));
    if amount.low.is_some() {
        let written =
            Amount { unit: Some(if currency == Currency::Uf { Unit::Uf } else { Unit::Clp }), ..amount.clone() };
        money.notes.push(format!("presupuesto entre {}", describe_range(&written)));
    }
}

fn take_debt(money: &mut Money, tokens: &[Token], amount: &Amount) {
    if money.debt.is_some() || matches!(amount.unit, Some(Unit::Uf | Unit::Foreign)) {
        return;
    }
    if !(1_000.0..=10_000_000_000.0).contains(&amount.value) {
        return;
    }
    if debt_is_settled(tokens, amount) {
        money.notes.push(format!("deuda de {} pagada o prescrita (verificar DICOM)", describe(amount)));
        return;
    }
    money.debt = Some(amount.value.round() as i64);
}

/// "Pagué mi deuda de 500 mil", "una deuda prescrita de 300 mil": not a current debt.
fn debt_is_settled(tokens: &[Token], amount: &Amount) -> bool {
    let from = amount.start.saturating_sub(8);
    let to = (amount.end + 4).min(tokens.len());
    tokens.get(from..to).unwrap_or_default().iter().any(|t| {
        matches!(
            t.folded.as_str(),
            "pague" | "pagamos" | "pagada" | "pagado" | "salde" | "saldada" | "saldado" | "regularice" | "prescrita"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Reading amounts.

/// Parses "1.500.000", "1,5", "4.500", "1.5" (a dot followed by exactly three digits groups
/// thousands; a single dot or comma otherwise is a decimal point).
pub(super) fn parse_numeral(raw: &str) -> Option<f64> {
    let dots = raw.matches('.').count();
    let commas = raw.matches(',').count();
    match (dots, commas) {
        (0, 0) => raw.parse().ok(),
        (_, 0) => grouped(raw, '.'),
        (0, _) => grouped(raw, ','),
        _ => {
            // Both: the one written last is the decimal point ("1.500,5" / "1,500.5").
            let decimal = if raw.rfind('.') > raw.rfind(',') { '.' } else { ',' };
            let thousands = if decimal == '.' { ',' } else { '.' };
            raw.replace(thousands, "").replace(decimal, ".").parse().ok()
        }
    }
}

fn grouped(raw: &str, sep: char) -> Option<f64> {
    let groups: Vec<&str> = raw.split(sep).collect();
    let (head, tail) = groups.split_first()?;
    let thousands = (1..=3).contains(&head.len()) && tail.iter().all(|g| g.len() == 3);
    if thousands {
        groups.concat().parse().ok()
    } else if tail.len() == 1 {
        raw.replace(sep, ".").parse().ok()
    } else {
        None
    }
}

fn small_number(word: &str) -> Option<f64> {
    let v = match word {
        "cero" => 0,
        "un" | "uno" | "una" => 1,
        "dos" => 2,
        "tres" => 3,
        "cuatro" => 4,
        "cinco" => 5,
        "seis" => 6,
        "siete" => 7,
        "ocho" => 8,
        "nueve" => 9,
        "diez" => 10,
        "once" => 11,
        "doce" => 12,
        "trece" => 13,
        "catorce" => 14,
        "quince" => 15,
        "dieciseis" => 16,
        "diecisiete" => 17,
        "dieciocho" => 18,
        "diecinueve" => 19,
        "veinte" => 20,
        "veintiun" | "veintiuno" | "veintiuna" => 21,
        "veintidos" => 22,
        "veintitres" => 23,
        "veinticuatro" => 24,
        "veinticinco" => 25,
        "veintiseis" => 26,
        "veintisiete" => 27,
        "veintiocho" => 28,
        "veintinueve" => 29,
        "treinta" => 30,
        "cuarenta" => 40,
        "cincuenta" => 50,
        "sesenta" => 60,
        "setenta" => 70,
        "ochenta" => 80,
        "noventa" => 90,
        "cien" | "ciento" => 100,
        "doscientos" | "doscientas" => 200,
        "trescientos" | "trescientas" => 300,
        "cuatrocientos" | "cuatrocientas" => 400,
        "quinientos" | "quinientas" => 500,
        "seiscientos" | "seiscientas" => 600,
        "setecientos" | "setecientas" => 700,
        "ochocientos" | "ochocientas" => 800,
        "novecientos" | "novecientas" => 900,
        _ => return None,
    };
    Some(f64::from(v))
}

/// The most words one number written in words is read from: longer than any amount a person
/// writes ("novecientos noventa y nueve millones novecientos noventa y nueve mil novecientos
/// noventa y nueve" is 15), and it keeps a run of "mil mil mil …" from being re-read from every
/// word of it (quadratic in the message).
const MAX_NUMBER_WORDS: usize = 24;

/// A Spanish number written in words at token `i`: value, index past it, and whether it carried
/// "mil" or "millón" ("un millón y medio", "ochocientos mil", "dos millones doscientos mil").
/// Reads at most [`MAX_NUMBER_WORDS`] words.
pub(super) fn words_number(tokens: &[Token], i: usize) -> Option<(f64, usize, f64)> {
    let last = i.saturating_add(MAX_NUMBER_WORDS);
    let word = |j: usize| tokens.get(j).filter(|t| j < last && t.is_word()).map(|t| t.folded.as_str());
    let mut total = 0.0;
    let mut current = 0.0;
    let mut any = false;
    let mut multiplier: f64 = 1.0;
    let mut j = i;
    while let Some(w) = word(j) {
        if let Some(v) = small_number(w) {
            current += v;
            any = true;
            j += 1;
        } else if w == "y" && current >= 20.0 && word(j + 1).and_then(small_number).is_some_and(|v| v < 10.0) {
            j += 1;
        } else if w == "medio" && word(j + 1).is_some_and(is_million_word) {
            current += 0.5;
            any = true;
            j += 1;
        } else if w == "mil" {
            total += if current == 0.0 { 1.0 } else { current } * 1_000.0;
            current = 0.0;
            any = true;
            multiplier = multiplier.max(1_000.0);
            j += 1;
        } else if is_million_word(w) && !matches!(w, "palo" | "palos") {
            total = (total + if current == 0.0 { 1.0 } else { current }) * 1_000_000.0;
            current = 0.0;
            any = true;
            multiplier = 1_000_000.0;
            j += 1;
            if let Some(end) = match_at(tokens, j, "y medio") {
                total += 500_000.0;
                j = end;
            }
        } else {
            break;
        }
    }
    any.then_some((total + current, j, multiplier))
}

fn is_million_word(w: &str) -> bool {
    matches!(w, "millon" | "millones" | "mill" | "mills" | "palo" | "palos" | "melon" | "melones")
}

/// The multiplier written right after a number: "mil", "millones", "lucas", "palos", "k", "M".
fn multiplier_at(tokens: &[Token], i: usize) -> Option<f64> {
    let t = tokens.get(i)?;
    if !t.is_word() {
        return None;
    }
    match t.folded.as_str() {
        w if is_million_word(w) => Some(1_000_000.0),
        "mm" | "mio" | "mios" => Some(1_000_000.0),
        "m" if !t.spaced || t.raw == "M" => Some(1_000_000.0),
        "mil" | "lucas" | "luca" | "lukas" | "luka" | "k" => Some(1_000.0),
        _ => None,
    }
}

/// The currency written after an amount, and the index past it.
fn unit_after(tokens: &[Token], i: usize) -> Option<(Unit, usize)> {
    if let Some(end) = match_at(tokens, i, "de? pesos|clp") {
        return Some((Unit::Clp, end));
    }
    if let Some(end) = match_at(tokens, i, "uf|ufs") {
        return Some((Unit::Uf, end));
    }
    if tokens.get(i).is_some_and(|t| t.folded == "u")
        && tokens.get(i + 1).is_some_and(|t| t.is_punct("."))
        && tokens.get(i + 2).is_some_and(|t| t.folded == "f")
    {
        let end = if tokens.get(i + 3).is_some_and(|t| t.is_punct(".")) { i + 4 } else { i + 3 };
        return Some((Unit::Uf, end));
    }
    match_at(tokens, i, "dolares|dolar|usd|euros").map(|end| (Unit::Foreign, end))
}

/// The currency written before an amount: "$", "UF", "CLP", "US$".
fn unit_before(tokens: &[Token], i: usize) -> Option<(Unit, usize)> {
    let t = tokens.get(i)?;
    if t.is_punct("$") {
        return Some((Unit::Clp, i + 1));
    }
    match t.folded.as_str() {
        "uf" => Some((Unit::Uf, i + 1)),
        "clp" => Some((Unit::Clp, i + 1)),
        "usd" => Some((Unit::Foreign, i + 1)),
        "us" if tokens.get(i + 1).is_some_and(|n| n.is_punct("$")) => Some((Unit::Foreign, i + 2)),
        _ => None,
    }
}

/// A number that is part of a time, a date, a size or a percentage ("10:30", "12/12", "80 m2").
fn is_not_money_number(tokens: &[Token], i: usize) -> bool {
    let next = tokens.get(i + 1);
    let prev = i.checked_sub(1).and_then(|p| tokens.get(p));
    let prev2 = i.checked_sub(2).and_then(|p| tokens.get(p));
    let joined_to_number = |sep: &str| {
        (next.is_some_and(|t| t.is_punct(sep) && !t.spaced) && tokens.get(i + 2).is_some_and(Token::is_number))
            || (prev.is_some_and(|t| t.is_punct(sep)) && prev2.is_some_and(Token::is_number))
    };
    let size_unit = next.is_some_and(|t| match t.folded.as_str() {
        "mt" | "mts" | "metro" | "metros" | "km" | "cuadras" | "hectareas" => true,
        // "80 m" and "80m2" are metres; "2M" and "2m" are millions.
        "m" => t.raw == "m" && (t.spaced || tokens.get(i + 2).is_some_and(|n| n.raw == "2" && !n.spaced)),
        _ => false,
    });
    joined_to_number(":") || joined_to_number("/") || next.is_some_and(|t| t.is_punct("%")) || size_unit
}

/// A year after "año", "en", "para" ("el año 2026", "para 2027") is not money.
fn is_year(tokens: &[Token], i: usize, value: f64) -> bool {
    let prev = i.checked_sub(1).and_then(|p| tokens.get(p)).map(|t| t.folded.as_str());
    (1900.0..=2100.0).contains(&value)
        && value.fract() == 0.0
        && matches!(prev, Some("ano" | "en" | "para" | "del" | "el" | "hasta" | "desde"))
}

/// One amount starting at token `i`, if it is written as money.
fn amount_at(tokens: &[Token], i: usize) -> Option<Amount> {
    let (prefix_unit, n) = match unit_before(tokens, i) {
        Some((unit, next)) => (Some(unit), next),
        None => (None, i),
    };
    let head = tokens.get(n)?;
    let (mut value, mut j, words_multiplier) = if head.is_number() {
        if is_not_money_number(tokens, n) {
            return None;
        }
        (parse_numeral(head.raw)?, n + 1, 1.0)
    } else if head.kind == Kind::Word {
        words_number(tokens, n)?
    } else {
        return None;
    };
    let mut multiplier = words_multiplier;
    if words_multiplier == 1.0
        && let Some(m) = multiplier_at(tokens, j)
    {
        value *= m;
        multiplier = m;
        j += 1;
        if m == 1_000_000.0
            && let Some(end) = match_at(tokens, j, "y medio")
        {
            value += 500_000.0;
            j = end;
        }
    }
    if multiplier == 1_000_000.0
        && let Some((thousands, end)) = thousands_after(tokens, j)
    {
        value += thousands;
        j = end;
    }
    let suffix_unit = unit_after(tokens, j);
    if let Some((_, end)) = suffix_unit {
        j = end;
    }
    let unit = prefix_unit.or(suffix_unit.map(|(u, _)| u));
    let lucas = tokens.get(j - 1).is_some_and(|t| t.folded.starts_with("luca") || t.folded.starts_with("luka"));
    let unit = unit.or(lucas.then_some(Unit::Clp));
    let written_as_money = unit.is_some() || multiplier > 1.0;
    let bare_amount = head.is_number() && value >= 1_000.0 && !is_year(tokens, n, value);
    (written_as_money || bare_amount).then_some(Amount { value, unit, multiplier, low: None, start: i, end: j })
}

/// "… 200 mil" (or just "… 300", as in "1 millón 300") after "1 millón": the thousands that
/// complete it.
fn thousands_after(tokens: &[Token], j: usize) -> Option<(f64, usize)> {
    let head = tokens.get(j)?;
    let (value, end) = if head.is_number() {
        let v = parse_numeral(head.raw)?;
        match match_at(tokens, j + 1, "mil") {
            Some(end) => (v * 1_000.0, end),
            None if head.is_plain_int() && (100.0..1_000.0).contains(&v) => (v * 1_000.0, j + 1),
            None => return None,
        }
    } else {
        let (v, end, m) = words_number(tokens, j)?;
        if m != 1_000.0 {
            return None;
        }
        (v, end)
    };
    (value < 1_000_000.0).then_some((value, end))
}

fn find_amounts(tokens: &[Token]) -> Vec<Amount> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match amount_at(tokens, i) {
            Some(a) => {
                i = a.end;
                out.push(a);
            }
            None => i += 1,
        }
    }
    out
}

/// "entre 2.000 y 2.500 UF", "de 800 mil a 1 millón", "2000-2500 UF": one amount with a low bound.
fn merge_ranges(tokens: &[Token], amounts: Vec<Amount>) -> Vec<Amount> {
    let mut out: Vec<Amount> = Vec::new();
    for b in amounts {
        if let Some(a) = out.last_mut()
            && let Some(merged) = as_range(tokens, a, &b)
        {
            *a = merged;
            continue;
        }
        out.push(b);
    }
    out
}

fn as_range(tokens: &[Token], a: &Amount, b: &Amount) -> Option<Amount> {
    let between = tokens.get(a.end..b.start)?;
    let connector = match between {
        [t] => t.folded.as_str(),
        _ => return None,
    };
    let entre = a.start.checked_sub(1).and_then(|p| tokens.get(p)).is_some_and(|t| t.folded == "entre");
    let connects = matches!(connector, "a" | "-" | "hasta" | "al" | "o") || (connector == "y" && entre);
    if !connects || a.low.is_some() {
        return None;
    }
    let low = if a.multiplier == 1.0 && b.multiplier > 1.0 { a.value * b.multiplier } else { a.value };
    let unit = a.unit.or(b.unit);
    let same_unit = a.unit.is_none() || b.unit.is_none() || a.unit == b.unit;
    (same_unit && low < b.value).then_some(Amount {
        value: b.value,
        unit,
        multiplier: b.multiplier,
        low: Some(low),
        start: a.start,
        end: b.end,
    })
}

// ---------------------------------------------------------------------------------------------
// What an amount is.

const CLAUSE_STOPS: &[&str] = &[",", ".", ";", "!", "?", "¿", "(", ")", "pero"];

fn stops_clause(t: &Token) -> bool {
    CLAUSE_STOPS.contains(&t.folded.as_str())
}

/// Explicit words right after the amount: "2 millones de deuda", "500 mil de pie".
fn strong_cue_after(tokens: &[Token], end: usize) -> Option<Role> {
    let cues: &[(&str, Role)] = &[
        ("de|en deuda*|morosidad*|mora", Role::Debt),
        ("en el? dicom|boletin", Role::Debt),
        ("moros*|impag*", Role::Debt),
        ("de|del|para|como pie", Role::Savings),
        ("para el pie", Role::Savings),
        ("ahorrado*|juntado*", Role::Savings),
        ("de|en ahorro*", Role::Savings),
        ("de|en|del arriendo|dividendo*|cuota*|gasto*", Role::Expense),
        ("de sueldo*|renta*|salario*|ingreso*|pension*|jubilacion", Role::Income),
        ("de presupuesto", Role::Budget),
    ];
    cues.iter().find(|(p, _)| match_at(tokens, end, p).is_some()).map(|&(_, role)| role)
}

/// Weaker words right after the amount: "1.500.000 mensuales", "800 mil líquidos".
fn weak_cue_after(tokens: &[Token], end: usize) -> Option<Role> {
    let income = ["mensual*", "al mes", "por mes", "liquid*", "brut*", "de liquido*"];
    income.iter().any(|p| match_at(tokens, end, p).is_some()).then_some(Role::Income)
}

const PROPERTY_WORDS: &[&str] = &[
    "departamento",
    "departamentos",
    "depto",
    "deptos",
    "dpto",
    "depa",
    "casa",
    "casas",
    "propiedad",
    "propiedades",
    "parcela",
    "terreno",
    "oficina",
    "vivienda",
    "inmueble",
    "proyecto",
];

/// Words a property and its price may have between them: "casa de unos 120 millones".
const PRICE_LINKS: &[&str] = &[
    "de",
    "por",
    "en",
    "unos",
    "unas",
    "como",
    "aprox",
    "aproximadamente",
    "alrededor",
    "hasta",
    "entre",
    "sobre",
    "que",
    "cueste",
    "valga",
];

/// The cue a word gives to a later amount, nearest first.
fn cue_word(tokens: &[Token], j: usize, amount_start: usize) -> Option<Role> {
    let t = tokens.get(j)?;
    let w = t.folded.as_str();
    let prev = j.checked_sub(1).and_then(|p| tokens.get(p)).map(|t| t.folded.as_str());
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| w.starts_with(p));
    let is = |words: &[&str]| words.contains(&w);
    if is(&["gano", "ganamos", "gana", "ganando", "gane", "percibo", "percibimos", "pagan", "honorarios", "boleteo"])
        || starts(&["sueldo", "salario", "renta", "ingreso", "factur", "liquid", "remuneracion", "pension", "jubil"])
    {
        return Some(Role::Income);
    }
    if is(&["debo", "debe", "debemos", "adeudo", "mora", "dicom", "boletin"]) || starts(&["deuda", "moros", "protest"])
    {
        return Some(Role::Debt);
    }
    if (w == "pie" && prev != Some("a")) || is(&["ahorre", "subsidio"]) || starts(&["ahorro", "ahorrad", "juntad"]) {
        return Some(Role::Savings);
    }
    if w == "arriendo" && matches!(prev, Some("pago" | "pagando" | "pagamos" | "un")) {
        return Some(Role::Expense);
    }
    if is(&["pago", "pagando", "pagamos", "pagar", "gasto", "gastos"]) || starts(&["dividendo", "cuota"]) {
        return Some(Role::Expense);
    }
    if is(&["hasta", "maximo", "max", "tope", "invertir", "arriendo", "arrendar", "vale", "valga", "valen", "costar"])
        || starts(&["presupuest", "precio", "cuest", "valor", "inversion"])
    {
        return Some(Role::Budget);
    }
    // "busco algo de 120 millones" (but "gano algo de 800 mil" is an income).
    let looked_for = w == "algo" && matches!(prev, Some("busco" | "buscamos" | "buscando" | "quiero" | "necesito"));
    let priced_property = (PROPERTY_WORDS.contains(&w) || looked_for)
        && tokens.get(j + 1..amount_start).is_some_and(|between| {
            !between.is_empty() && between.iter().all(|b| PRICE_LINKS.contains(&b.folded.as_str()))
        });
    priced_property.then_some(Role::Budget)
}

/// The role the words around an amount give it: explicit words after it, then the nearest cue
/// before it in the same clause, then weaker words after it.
fn role_of(tokens: &[Token], amount: &Amount, previous_end: usize) -> Option<Role> {
    if let Some(role) = strong_cue_after(tokens, amount.end) {
        return Some(role);
    }
    let mut seen_words = 0;
    let mut j = amount.start;
    while j > previous_end && seen_words < 8 {
        j -= 1;
        let Some(t) = tokens.get(j) else { break };
        if stops_clause(t) {
            break;
        }
        if let Some(role) = cue_word(tokens, j, amount.start) {
            return Some(role);
        }
        if t.kind != Kind::Punct {
            seen_words += 1;
        }
    }
    weak_cue_after(tokens, amount.end)
}

/// Without words around it, an amount answers what Sofía asked; UF is always a price.
fn role_by_context(amount: &Amount, expecting: &[Field]) -> Option<Role> {
    if amount.unit == Some(Unit::Uf) {
        return Some(Role::Budget);
    }
    // After "¿estás en DICOM?", "sí, como 200 mil" gives the debt.
    [
        (Field::MonthlyIncome, Role::Income),
        (Field::DebtAmount, Role::Debt),
        (Field::Dicom, Role::Debt),
        (Field::Budget, Role::Budget),
    ]
    .into_iter()
    .find(|(f, _)| expecting.contains(f))
    .map(|(_, role)| role)
}

// ---------------------------------------------------------------------------------------------
// Writing amounts back for key points.

/// "$1.500.000".
pub(super) fn format_clp(value: f64) -> String {
    format!("${}", group_thousands(value.round() as i64))
}

/// "2.500 UF", "2.500,5 UF".
pub(super) fn format_uf(value: f64) -> String {
    let whole = value.trunc() as i64;
    let decimals = ((value.fract() * 100.0).round() as i64).abs();
    if decimals == 0 {
        format!("{} UF", group_thousands(whole))
    } else {
        let decimals = format!("{decimals:02}");
        format!("{},{} UF", group_thousands(whole), decimals.trim_end_matches('0'))
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn format_value(value: f64, unit: Option<Unit>) -> String {
    match unit {
        Some(Unit::Uf) => format_uf(value),
        _ => format_clp(value),
    }
}

fn describe(amount: &Amount) -> String {
    format_value(amount.value, amount.unit)
}

fn describe_range(amount: &Amount) -> String {
    let low = amount.low.unwrap_or(amount.value);
    format!("{} y {}", format_value(low, amount.unit), format_value(amount.value, amount.unit))
}

#[cfg(test)]
mod tests {
    use super::super::tokens::tokenize;
    use super::*;

    fn money_with(text: &str, expecting: &[Field]) -> Money {
        read_money(&tokenize(text), expecting)
    }

    fn money(text: &str) -> Money {
        money_with(text, &[])
    }

    fn income(text: &str) -> Option<i64> {
        money(text).income
    }

    fn first_amount(text: &str) -> Option<(f64, Option<Unit>)> {
        let tokens = tokenize(text);
        let amounts = merge_ranges(&tokens, find_amounts(&tokens));
        amounts.first().map(|a| (a.value, a.unit))
    }

    #[test]
    fn numerals_read_thousands_and_decimals_the_chilean_way() {
        let cases = [
            ("1.500.000", 1_500_000.0),
            ("1500000", 1_500_000.0),
            ("1,5", 1.5),
            ("1.5", 1.5),
            ("4.500", 4_500.0),
            ("2,500", 2_500.0),
            ("1.500,5", 1_500.5),
            ("1,500.5", 1_500.5),
            ("800", 800.0),
            ("12.5.3", f64::NAN),
        ];
        for (raw, want) in cases {
            match parse_numeral(raw) {
                Some(got) => assert_eq!(got, want, "{raw}"),
                None => assert!(want.is_nan(), "{raw}"),
            }
        }
    }

    #[test]
    fn amounts_in_every_written_form() {
        let cases: &[(&str, f64, Option<Unit>)] = &[
            ("$1.500.000", 1_500_000.0, Some(Unit::Clp)),
            ("1.500.000", 1_500_000.0, None),
            ("1500000", 1_500_000.0, None),
            ("1,5 millones", 1_500_000.0, None),
            ("1.5 millones", 1_500_000.0, None),
            ("un millón y medio", 1_500_000.0, None),
            ("millón y medio", 1_500_000.0, None),
            ("dos millones", 2_000_000.0, None),
            ("800 mil", 800_000.0, None),
            ("800 lucas", 800_000.0, Some(Unit::Clp)),
            ("ochocientas lucas", 800_000.0, Some(Unit::Clp)),
            ("2 palos", 2_000_000.0, None),
            ("1.5 palos", 1_500_000.0, None),
            ("un palo y medio", 1_500_000.0, None),
            ("2M", 2_000_000.0, None),
            ("2 M", 2_000_000.0, None),
            ("2MM", 2_000_000.0, None),
            ("2 millones y medio", 2_500_000.0, None),
            ("800k", 800_000.0, None),
            ("800 k", 800_000.0, None),
            ("950 mil pesos", 950_000.0, Some(Unit::Clp)),
            ("ochocientos mil", 800_000.0, None),
            ("un millón doscientos mil", 1_200_000.0, None),
            ("1 millón 200 mil", 1_200_000.0, None),
            ("1 millón 300", 1_300_000.0, None),
            ("2 palos 500", 2_500_000.0, None),
            ("medio millón", 500_000.0, None),
            ("3.000 UF", 3_000.0, Some(Unit::Uf)),
            ("UF 4500", 4_500.0, Some(Unit::Uf)),
            ("4.500 uf", 4_500.0, Some(Unit::Uf)),
            ("3000UF", 3_000.0, Some(Unit::Uf)),
            ("2.500 U.F.", 2_500.0, Some(Unit::Uf)),
            ("2 mil UF", 2_000.0, Some(Unit::Uf)),
            ("120 millones", 120_000_000.0, None),
            ("120 millones de pesos", 120_000_000.0, Some(Unit::Clp)),
            ("$ 800.000", 800_000.0, Some(Unit::Clp)),
            ("CLP 800000", 800_000.0, Some(Unit::Clp)),
            ("1000 dólares", 1_000.0, Some(Unit::Foreign)),
            ("US$ 2000", 2_000.0, Some(Unit::Foreign)),
            ("veinticinco millones", 25_000_000.0, None),
            ("trescientos cincuenta mil", 350_000.0, None),
            ("cuarenta y cinco mil", 45_000.0, None),
            ("$912.345", 912_345.0, Some(Unit::Clp)),
        ];
        for &(text, value, unit) in cases {
            assert_eq!(first_amount(text), Some((value, unit)), "{text}");
        }
    }

    #[test]
    fn a_number_in_words_is_read_from_at_most_its_longest_real_form() {
        let longest =
            "novecientos noventa y nueve millones novecientos noventa y nueve mil novecientos noventa y nueve";
        let tokens = tokenize(longest);
        assert!(tokens.len() <= MAX_NUMBER_WORDS);
        assert_eq!(words_number(&tokens, 0), Some((999_999_999.0, tokens.len(), 1_000_000.0)));
        // A run of number words as long as a hostile message is read a bounded stretch at a time,
        // not to its end from every word (which was quadratic in the message).
        let text = "mil ".repeat(4000);
        let run = tokenize(&text);
        let (_, end, _) = words_number(&run, 10).expect("a number");
        assert_eq!(end, 10 + MAX_NUMBER_WORDS);
    }

    #[test]
    fn numbers_that_are_not_money_are_not_amounts() {
        for text in [
            "2 dormitorios",
            "tengo dos hijos",
            "a las 10:30",
            "el 12/12",
            "80 m2",
            "un 10% de pie",
            "en 3 meses",
            "el año 2026",
            "para 2027",
            "opción 3",
            "una casa",
            "unos 1500 m2",
            "un terreno de 5000 m",
            "1000 mts",
            "3d2b",
        ] {
            assert_eq!(first_amount(text), None, "{text}");
        }
    }

    #[test]
    fn incomes_need_an_income_cue() {
        let cases: &[(&str, Option<i64>)] = &[
            ("gano $1.500.000", Some(1_500_000)),
            ("Gano 1.500.000 mensuales", Some(1_500_000)),
            ("Mi sueldo es de $800.000", Some(800_000)),
            ("gano 1500000", Some(1_500_000)),
            ("gano 1,5 millones", Some(1_500_000)),
            ("gano 1.5 millones", Some(1_500_000)),
            ("gano un millón y medio", Some(1_500_000)),
            ("gano dos millones", Some(2_000_000)),
            ("gano 800 mil", Some(800_000)),
            ("gano 800 lucas", Some(800_000)),
            ("gano 2 palos", Some(2_000_000)),
            ("gano 1.5 palos", Some(1_500_000)),
            ("gano 2M", Some(2_000_000)),
            ("gano 2 millones y medio", Some(2_500_000)),
            ("gano 800k", Some(800_000)),
            ("renta líquida de 1.200.000", Some(1_200_000)),
            ("sueldo 950 mil", Some(950_000)),
            ("Trabajo independiente, facturo 2 millones mensuales", Some(2_000_000)),
            ("gano 600 mil", Some(600_000)),
            ("me pagan 700 mil", Some(700_000)),
            ("mis ingresos son de 1.100.000", Some(1_100_000)),
            ("tengo un ingreso de 900 mil", Some(900_000)),
            ("800 mil líquidos", Some(800_000)),
            ("1.300.000 al mes", Some(1_300_000)),
            ("tengo 800 mil de sueldo", Some(800_000)),
            ("mi pensión es de 450 mil", Some(450_000)),
            ("sueldo: 800.000", Some(800_000)),
            ("gano entre 800 mil y 900 mil", Some(800_000)),
            ("tengo 800 mil", None),
            ("son 1.500.000", None),
            ("gano 50 mil", None),
            ("gano 800", None),
            ("gano 200 millones", None),
            ("gano 1000 dólares", None),
            ("gano algo de 800 mil", Some(800_000)),
        ];
        for &(text, want) in cases {
            assert_eq!(income(text), want, "{text}");
        }
    }

    #[test]
    fn eight_hundred_lucas_is_an_income() {
        assert_eq!(income("gano 800 lucas"), Some(800_000));
    }

    #[test]
    fn an_amount_answering_the_dicom_question_is_the_debt() {
        assert_eq!(money_with("sí, como 200 mil", &[Field::Dicom]).debt, Some(200_000));
        let both = money_with("800 mil", &[Field::MonthlyIncome, Field::Dicom]);
        assert_eq!((both.income, both.debt), (Some(800_000), None));
    }

    #[test]
    fn an_asked_income_needs_no_cue() {
        let ask = [Field::MonthlyIncome];
        assert_eq!(money_with("800 mil", &ask).income, Some(800_000));
        assert_eq!(money_with("1.500.000", &ask).income, Some(1_500_000));
        assert_eq!(money_with("como 2 palos", &ask).income, Some(2_000_000));
        assert_eq!(money_with("$450.000 aprox", &ask).income, Some(450_000));
        assert_eq!(money_with("800", &ask).income, None);
        assert_eq!(money_with("3000 UF", &ask).income, None);
        assert_eq!(money_with("3000 UF", &ask).budget, Some((3_000.0, Currency::Uf)));
    }

    #[test]
    fn budgets_need_a_budget_cue_or_uf() {
        let cases: &[(&str, Option<(f64, Currency)>)] = &[
            ("3.000 UF", Some((3_000.0, Currency::Uf))),
            ("UF 4500", Some((4_500.0, Currency::Uf))),
            ("4.500 uf", Some((4_500.0, Currency::Uf))),
            ("Tengo presupuesto de 3000 UF", Some((3_000.0, Currency::Uf))),
            ("presupuesto de 90 millones", Some((90_000_000.0, Currency::Clp))),
            ("hasta 3500 UF", Some((3_500.0, Currency::Uf))),
            ("busco una casa de 120 millones", Some((120_000_000.0, Currency::Clp))),
            ("un depto de unos 100 millones", Some((100_000_000.0, Currency::Clp))),
            ("que cueste hasta 2500 UF", Some((2_500.0, Currency::Uf))),
            ("mi presupuesto es 4000", Some((4_000.0, Currency::Uf))),
            ("el precio máximo 150 millones", Some((150_000_000.0, Currency::Clp))),
            ("busco arriendo de 500 mil", Some((500_000.0, Currency::Clp))),
            ("busco algo de 120 millones", Some((120_000_000.0, Currency::Clp))),
            ("gano algo de 800 mil", None),
            ("entre 2.000 y 2.500 UF", Some((2_500.0, Currency::Uf))),
            ("de 2000 a 2500 UF", Some((2_500.0, Currency::Uf))),
            ("120 millones", None),
            ("gano 3 millones", None),
            ("tengo 500 UF de pie", None),
            ("el pie es de 300 UF", None),
        ];
        for &(text, want) in cases {
            assert_eq!(money(text).budget, want, "{text}");
        }
    }

    #[test]
    fn a_price_and_an_income_in_one_message_are_both_read() {
        let m = money("Quiero una propiedad de 5000 UF pero gano 600 mil");
        assert_eq!(m.budget, Some((5_000.0, Currency::Uf)));
        assert_eq!(m.income, Some(600_000));
    }

    #[test]
    fn a_budget_range_keeps_the_upper_bound_and_notes_the_range() {
        let m = money("busco entre 2.000 y 2.500 UF");
        assert_eq!(m.budget, Some((2_500.0, Currency::Uf)));
        assert_eq!(m.notes, ["presupuesto entre 2.000 UF y 2.500 UF"]);
    }

    #[test]
    fn debts_are_read_from_their_words() {
        let cases: &[(&str, Option<i64>)] = &[
            ("Tengo una deuda pequeña de 50 mil pesos en una tienda", Some(50_000)),
            ("Estoy en DICOM por una deuda de 500 mil", Some(500_000)),
            ("Tengo deuda de 2 millones en DICOM pero quiero comprar igual", Some(2_000_000)),
            ("Estoy en DICOM con 1 millón de deuda", Some(1_000_000)),
            ("Tengo deuda en DICOM de 800 mil pesos", Some(800_000)),
            ("debo 800 mil", Some(800_000)),
            ("una deuda de 2 millones en DICOM", Some(2_000_000)),
            ("tengo 300 mil en DICOM", Some(300_000)),
            ("tengo 2 millones morosos", Some(2_000_000)),
            ("Pagué mi deuda de 500 mil", None),
            ("debo 5 UF", None),
        ];
        for &(text, want) in cases {
            assert_eq!(money(text).debt, want, "{text}");
        }
    }

    #[test]
    fn each_amount_takes_the_nearest_cue() {
        let m = money("gano 800 mil y tengo 2 millones de deuda");
        assert_eq!((m.income, m.debt), (Some(800_000), Some(2_000_000)));
        let m = money("tengo una deuda de 2 millones, gano 600 mil");
        assert_eq!((m.income, m.debt), (Some(600_000), Some(2_000_000)));
        let m = money("no tengo dicom, sueldo 900 mil");
        assert_eq!((m.income, m.debt), (Some(900_000), None));
        let m = money("pago 400 mil de arriendo y gano 1.200.000");
        assert_eq!(m.income, Some(1_200_000));
        assert_eq!(m.notes, ["paga o puede pagar $400.000"]);
    }

    #[test]
    fn savings_and_down_payments_are_notes_not_budgets() {
        let m = money("tengo 10 millones ahorrados para el pie");
        assert_eq!((m.budget, m.income), (None, None));
        assert_eq!(m.notes, ["ahorro o pie de $10.000.000"]);
        let m = money("tengo 500 UF de pie");
        assert_eq!(m.notes, ["ahorro o pie de 500 UF"]);
    }

    #[test]
    fn amounts_are_written_back_chilean_style() {
        assert_eq!(format_clp(1_500_000.0), "$1.500.000");
        assert_eq!(format_clp(950.0), "$950");
        assert_eq!(format_uf(2_500.0), "2.500 UF");
        assert_eq!(format_uf(2_500.5), "2.500,5 UF");
        assert_eq!(format_uf(1_234_567.25), "1.234.567,25 UF");
    }
}
