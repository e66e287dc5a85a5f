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
    /// [`word_hash`] of `folded`, so phrase matching compares integers before strings.
    pub hash: u64,
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
        let folded = fold(raw);
        let hash = word_hash(&folded);
        tokens.push(Token { raw, folded, hash, kind, spaced });
        spaced = false;
    }
    tokens
}

fn is_combining(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

/// A cheap hash of a folded word (FNV-1a), for fast inequality in phrase matching.
pub(super) fn word_hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One alternative of a pattern element: a folded word, or a prefix (`moros*`).
struct Alt {
    word: Box<str>,
    hash: u64,
    prefix: bool,
}

/// One element of a phrase pattern.
struct Elem {
    alternatives: Vec<Alt>,
    optional: bool,
    /// One bit per whole-word alternative (`hash % 64`): a token whose bit is clear matches none
    /// of them, which rejects most positions with one AND.
    bloom: u64,
    /// Some alternative is a prefix (`moros*`), which the bloom bits cannot rule out.
    has_prefix: bool,
}

impl Elem {
    fn may_match(&self, token: &Token) -> bool {
        self.has_prefix || self.bloom & (1 << (token.hash % 64)) != 0
    }
}

fn parse_pattern(pattern: &str) -> Vec<Elem> {
    pattern
        .split_whitespace()
        .map(|w| {
            let (w, optional) = match w.strip_suffix('?') {
                Some(rest) if !rest.is_empty() => (rest, true),
                _ => (w, false),
            };
            let alternatives: Vec<Alt> = w
                .split('|')
                .map(|alt| match alt.strip_suffix('*') {
                    Some(prefix) if !prefix.is_empty() => Alt { word: prefix.into(), hash: 0, prefix: true },
                    _ => Alt { word: alt.into(), hash: word_hash(alt), prefix: false },
                })
                .collect();
            let bloom = alternatives.iter().filter(|a| !a.prefix).fold(0u64, |m, a| m | 1 << (a.hash % 64));
            let has_prefix = alternatives.iter().any(|a| a.prefix);
            Elem { alternatives, optional, bloom, has_prefix }
        })
        .collect()
}

/// Hashes the address of a `'static` pattern: its identity, stable for the process.
#[derive(Default)]
struct AddressHasher(u64);

impl std::hash::Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// A parsed pattern and the bits of the words that can start it.
struct Pattern {
    elems: &'static [Elem],
    /// Union of the blooms of the elements a match can start with (the first one, and the ones
    /// after it while they are optional).
    start_bloom: u64,
    /// A prefix or an all-optional pattern can start anywhere: no quick rejection.
    start_anywhere: bool,
}

impl Pattern {
    fn new(elems: &'static [Elem]) -> Self {
        let (mut start_bloom, mut start_anywhere) = (0u64, true);
        for e in elems {
            start_bloom |= e.bloom;
            if e.has_prefix {
                break;
            }
            if !e.optional {
                start_anywhere = false;
                break;
            }
        }
        Pattern { elems, start_bloom, start_anywhere }
    }

    fn may_start(&self, token: &Token) -> bool {
        self.start_anywhere || self.start_bloom & (1 << (token.hash % 64)) != 0
    }
}

const FAST_SLOTS: usize = 1024;

type FastSlot = std::cell::Cell<Option<((usize, usize), &'static Pattern)>>;

thread_local! {
    /// A per-thread direct-mapped cache in front of [`PARSED`] (slot by address), so a lookup is
    /// an array access: phrase matchers run per token position, hundreds of times per message.
    static FAST: [FastSlot; FAST_SLOTS] = const { [const { std::cell::Cell::new(None) }; FAST_SLOTS] };
}

type PatternIndex =
    std::collections::HashMap<(usize, usize), &'static Pattern, std::hash::BuildHasherDefault<AddressHasher>>;

/// Patterns parsed so far, one per `'static` pattern text for the life of the process.
static PARSED: std::sync::LazyLock<std::sync::RwLock<PatternIndex>> = std::sync::LazyLock::new(Default::default);

/// The parsed form of `pattern`.
fn compiled_pattern(pattern: &'static str) -> &'static Pattern {
    let key = (pattern.as_ptr() as usize, pattern.len());
    let slot = (key.0 >> 3 ^ key.1) % FAST_SLOTS;
    FAST.with(|fast| {
        if let Some((k, p)) = fast[slot].get()
            && k == key
        {
            return p;
        }
        let shared = PARSED.read().ok().and_then(|m| m.get(&key).copied());
        let p = shared.unwrap_or_else(|| {
            let elems: &'static [Elem] = Box::leak(parse_pattern(pattern).into_boxed_slice());
            let parsed: &'static Pattern = Box::leak(Box::new(Pattern::new(elems)));
            match PARSED.write() {
                Ok(mut m) => *m.entry(key).or_insert(parsed),
                Err(_) => parsed,
            }
        });
        fast[slot].set(Some((key, p)));
        p
    })
}

fn elem_matches(alt: &Alt, token: &Token) -> bool {
    if alt.prefix {
        token.kind != Kind::Punct && token.folded.starts_with(&*alt.word)
    } else {
        alt.hash == token.hash && *alt.word == *token.folded
    }
}

fn match_elems(tokens: &[Token], i: usize, elems: &[Elem]) -> Option<usize> {
    let Some((first, rest)) = elems.split_first() else {
        return Some(i);
    };
    if let Some(token) = tokens.get(i)
        && first.may_match(token)
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
pub(super) fn match_at(tokens: &[Token], i: usize, pattern: &'static str) -> Option<usize> {
    let p = compiled_pattern(pattern);
    match tokens.get(i) {
        Some(t) if !p.may_start(t) => None,
        _ => match_elems(tokens, i, p.elems),
    }
}

/// The first match of a phrase in `tokens[from..to]`, as a token span.
pub(super) fn find_in(tokens: &[Token], from: usize, to: usize, pattern: &'static str) -> Option<(usize, usize)> {
    find_compiled(tokens, from, to, compiled_pattern(pattern))
}

fn find_compiled(tokens: &[Token], from: usize, to: usize, p: &Pattern) -> Option<(usize, usize)> {
    (from..to.min(tokens.len()))
        .filter(|&i| p.may_start(&tokens[i]))
        .find_map(|i| match_elems(tokens, i, p.elems).filter(|&end| end <= to && end > i).map(|end| (i, end)))
}

pub(super) fn find(tokens: &[Token], pattern: &'static str) -> Option<(usize, usize)> {
    find_in(tokens, 0, tokens.len(), pattern)
}

pub(super) fn has(tokens: &[Token], pattern: &'static str) -> bool {
    find(tokens, pattern).is_some()
}

pub(super) fn has_any(tokens: &[Token], patterns: &[&'static str]) -> bool {
    // One pass over the message for the bits its words set; a pattern none of whose first words
    // is among them cannot match anywhere.
    let bits = tokens.iter().fold(0u64, |m, t| m | 1 << (t.hash % 64));
    patterns.iter().any(|p| {
        let p = compiled_pattern(p);
        (p.start_anywhere || p.start_bloom & bits != 0) && find_compiled(tokens, 0, tokens.len(), p).is_some()
    })
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
pub(super) fn has_unnegated(tokens: &[Token], patterns: &[&'static str]) -> bool {
    patterns.iter().any(|p| {
        let p = compiled_pattern(p);
        (0..tokens.len())
            .filter(|&i| p.may_start(&tokens[i]))
            .any(|i| match_elems(tokens, i, p.elems).is_some_and(|end| end > i) && !negated_before(tokens, i))
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
