//! One message as tokens (words, numbers, punctuation), each with its folded form, plus a tiny phrase matcher and the split into clauses that every other rule reads.

use crate::text::fold;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Word,
    Number,
    Punct,
}

#[derive(Debug, Clone)]
pub(super) struct Token<'a> {
    /// The token as written.
    pub raw: &'a str,
    /// Lower-case and accent-free ("Ñuñoa" → "nunoa").
    pub folded: String,
    pub kind: Kind,
    /// White space separates this token from the previous one ("2 M" rather than "2M").
    pub spaced: bool,
}

impl Token<'_> {
    pub fn is_word(&self) -> bool {
        self.kind == Kind::Word
    }

    pub fn is_number(&self) -> bool {
        self.kind == Kind::Number
    }

    pub fn is_punct(&self, p: &str) -> bool {
        self.kind == Kind::Punct && self.raw == p
    }

    /// Digits only: a number without thousands or decimal separators.
    pub fn is_plain_int(&self) -> bool {
        self.is_number() && self.raw.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn int(&self) -> Option<u32> {
        if self.is_plain_int() { self.raw.parse().ok() } else { None }
    }
}

/// Splits a message into tokens. A number keeps its inner `.` and `,` ("1.500.000", "1,5");
/// letters glued to digits become their own token ("3d2b" → 3 d 2 b, "800k" → 800 k).
pub(super) fn tokenize(text: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let byte_at = |i: usize| chars.get(i).map_or(text.len(), |&(b, _)| b);
    let mut i = 0;
    let mut spaced = true;
    while let Some(&(_, c)) = chars.get(i) {
        if c.is_whitespace() {
            spaced = true;
            i += 1;
            continue;
        }
        let start = i;
        let kind = if c.is_alphabetic() {
            while chars.get(i).is_some_and(|&(_, c)| c.is_alphabetic() || is_combining(c)) {
                i += 1;
            }
            Kind::Word
        } else if c.is_ascii_digit() {
            while let Some(&(_, c)) = chars.get(i) {
                let inner_separator =
                    matches!(c, '.' | ',') && i > start && chars.get(i + 1).is_some_and(|&(_, n)| n.is_ascii_digit());
                if c.is_ascii_digit() || inner_separator {
                    i += 1;
                } else {
                    break;
                }
            }
            Kind::Number
        } else {
            i += 1;
            Kind::Punct
        };
        let (s, e) = (byte_at(start), byte_at(i));
        let raw = &text[s..e];
        tokens.push(Token { raw, folded: fold(raw), kind, spaced });
        spaced = false;
    }
    tokens
}

fn is_combining(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

/// One element of a phrase pattern.
struct Elem {
    alternatives: Vec<Box<str>>,
    optional: bool,
}

fn parse_pattern(pattern: &str) -> Vec<Elem> {
    pattern
        .split_whitespace()
        .map(|w| {
            let (w, optional) = match w.strip_suffix('?') {
                Some(rest) if !rest.is_empty() => (rest, true),
                _ => (w, false),
            };
            Elem { alternatives: w.split('|').map(Box::from).collect(), optional }
        })
        .collect()
}

thread_local! {
    /// Parsed patterns, per thread. The patterns are the rules' constants (and a few phrases built
    /// from them), so the cache stays small; parsing each on every call was most of the cost.
    static PATTERNS: std::cell::RefCell<std::collections::HashMap<Box<str>, std::rc::Rc<[Elem]>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The parsed form of `pattern`, from the cache.
fn compiled(pattern: &str) -> std::rc::Rc<[Elem]> {
    PATTERNS.with(|cache| {
        if let Some(elems) = cache.borrow().get(pattern) {
            return elems.clone();
        }
        let elems: std::rc::Rc<[Elem]> = parse_pattern(pattern).into();
        cache.borrow_mut().insert(pattern.into(), elems.clone());
        elems
    })
}

fn elem_matches(alt: &str, token: &Token) -> bool {
    match alt.strip_suffix('*') {
        Some(prefix) if !prefix.is_empty() => token.kind != Kind::Punct && token.folded.starts_with(prefix),
        _ => token.folded == alt,
    }
}

fn match_elems(tokens: &[Token], i: usize, elems: &[Elem]) -> Option<usize> {
    let Some((first, rest)) = elems.split_first() else {
        return Some(i);
    };
    if let Some(token) = tokens.get(i)
        && first.alternatives.iter().any(|alt| elem_matches(alt, token))
        && let Some(end) = match_elems(tokens, i + 1, rest)
    {
        return Some(end);
    }
    if first.optional { match_elems(tokens, i, rest) } else { None }
}

/// Matches a phrase at token `i` and returns the index just past it.
///
/// Pattern words are folded and separated by spaces; `a|b` offers alternatives, a trailing `?`
/// makes a word optional and a trailing `*` matches any word with that prefix. Punctuation
/// between words breaks a phrase ("no, tengo dicom" is not "no tengo dicom").
pub(super) fn match_at(tokens: &[Token], i: usize, pattern: &str) -> Option<usize> {
    match_elems(tokens, i, &compiled(pattern))
}

/// The first match of a phrase in `tokens[from..to]`, as a token span.
pub(super) fn find_in(tokens: &[Token], from: usize, to: usize, pattern: &str) -> Option<(usize, usize)> {
    let elems = compiled(pattern);
    (from..to.min(tokens.len()))
        .find_map(|i| match_elems(tokens, i, &elems).filter(|&end| end <= to && end > i).map(|end| (i, end)))
}

pub(super) fn find(tokens: &[Token], pattern: &str) -> Option<(usize, usize)> {
    find_in(tokens, 0, tokens.len(), pattern)
}

pub(super) fn has(tokens: &[Token], pattern: &str) -> bool {
    find(tokens, pattern).is_some()
}

pub(super) fn has_any(tokens: &[Token], patterns: &[&str]) -> bool {
    patterns.iter().any(|p| has(tokens, p))
}

/// A negation among the two words before token `i` ("no es urgente", "no estoy apurado").
fn negated_before(tokens: &[Token], i: usize) -> bool {
    tokens
        .get(i.saturating_sub(2)..i)
        .unwrap_or_default()
        .iter()
        .rev()
        .take_while(|t| t.kind != Kind::Punct)
        .any(|t| matches!(t.folded.as_str(), "no" | "sin" | "nunca" | "ni"))
}

/// A phrase that is not negated just before it.
pub(super) fn has_unnegated(tokens: &[Token], patterns: &[&str]) -> bool {
    patterns.iter().any(|p| {
        let elems = compiled(p);
        (0..tokens.len())
            .any(|i| match_elems(tokens, i, &elems).is_some_and(|end| end > i) && !negated_before(tokens, i))
    })
}

/// The folded words of a token slice, punctuation left out.
pub(super) fn words<'t>(tokens: &'t [Token]) -> Vec<&'t str> {
    tokens.iter().filter(|t| t.kind != Kind::Punct).map(|t| t.folded.as_str()).collect()
}

/// A stretch of a message between punctuation marks (or "pero").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Clause {
    pub start: usize,
    pub end: usize,
    /// Opened by `¿` or closed by `?`.
    pub question: bool,
}

impl Clause {
    pub fn tokens<'t, 'a>(&self, tokens: &'t [Token<'a>]) -> &'t [Token<'a>] {
        tokens.get(self.start..self.end).unwrap_or_default()
    }
}

fn breaks_clause(token: &Token) -> bool {
    match token.kind {
        Kind::Punct => matches!(token.raw, "," | "." | ";" | "!" | "¡" | "?" | "¿" | "(" | ")" | "\u{2026}"),
        Kind::Word => token.folded == "pero",
        Kind::Number => false,
    }
}

/// Splits tokens into clauses. A clause is a question when a `¿` opens it (and is not yet
/// closed) or when a `?` closes it: "Tengo deudas en mora, ¿puedo acceder a crédito?" has one
/// statement and one question.
pub(super) fn clauses(tokens: &[Token]) -> Vec<Clause> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut open_question = false;
    let mut clause_opened_by_question = false;
    for (i, token) in tokens.iter().enumerate() {
        if !breaks_clause(token) {
            continue;
        }
        if i > start {
            let closed_by_question = token.is_punct("?");
            out.push(Clause { start, end: i, question: clause_opened_by_question || closed_by_question });
        }
        if token.is_punct("¿") {
            open_question = true;
        } else if token.is_punct("?") {
            open_question = false;
        }
        clause_opened_by_question = open_question;
        start = i + 1;
    }
    if start < tokens.len() {
        out.push(Clause { start, end: tokens.len(), question: clause_opened_by_question });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raws(text: &str) -> Vec<&str> {
        tokenize(text).into_iter().map(|t| t.raw).collect()
    }

    #[test]
    fn numbers_keep_their_separators_and_letters_split_off() {
        assert_eq!(raws("$1.500.000"), ["$", "1.500.000"]);
        assert_eq!(raws("1,5 millones."), ["1,5", "millones", "."]);
        assert_eq!(raws("3d2b"), ["3", "d", "2", "b"]);
        assert_eq!(raws("800k"), ["800", "k"]);
        assert_eq!(raws("10:30"), ["10", ":", "30"]);
        assert_eq!(raws("12/12"), ["12", "/", "12"]);
        assert_eq!(raws("¿Ñuñoa?"), ["¿", "Ñuñoa", "?"]);
        assert_eq!(raws("fin."), ["fin", "."]);
    }

    #[test]
    fn tokens_know_whether_space_separates_them() {
        let t = tokenize("2M y 2 M");
        let spaced: Vec<bool> = t.iter().map(|t| t.spaced).collect();
        assert_eq!(spaced, [true, false, true, true, true]);
    }

    #[test]
    fn tokens_are_folded() {
        let t = tokenize("Peñalolén MAÑANA");
        assert_eq!(t[0].folded, "penalolen");
        assert_eq!(t[1].folded, "manana");
    }

    #[test]
    fn phrases_match_with_alternatives_options_and_prefixes() {
        let t = tokenize("no estoy en el DICOM");
        assert_eq!(find(&t, "no estoy en el? dicom"), Some((0, 5)));
        let t = tokenize("no estoy en DICOM");
        assert_eq!(find(&t, "no estoy en el? dicom"), Some((0, 4)));
        assert!(has(&tokenize("tengo morosidades"), "tengo moros*"));
        assert!(has(&tokenize("ya no me interesa"), "no me interesa|gusta"));
    }

    #[test]
    fn punctuation_breaks_a_phrase() {
        assert!(!has(&tokenize("no, tengo dicom"), "no tengo dicom"));
    }

    #[test]
    fn clauses_split_on_punctuation_and_pero_and_know_questions() {
        let t = tokenize("Tengo deudas en mora, ¿puedo acceder a crédito?");
        let c = clauses(&t);
        assert_eq!(c.len(), 2);
        assert!(!c[0].question);
        assert!(c[1].question);
        let t = tokenize("Mi esposa tiene DICOM pero yo no");
        let c = clauses(&t);
        assert_eq!(words(c[1].tokens(&t)), ["yo", "no"]);
        let t = tokenize("Necesito DICOM limpio para comprar?");
        assert!(clauses(&t)[0].question);
    }
}
