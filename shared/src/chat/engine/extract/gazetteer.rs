//! Chile's comunas and common sectors, and how a message names them: accent- and case-blind,
//! written together ("lascondes"), with a one-letter typo in longer names ("pudahel"), the
//! longest name first ("San Pedro de la Paz" before "San Pedro").

use super::tokens::{Kind, Token};

/// A place people write, resolved to its canonical name (with accents).
pub(super) struct Place {
    pub name: &'static str,
    /// Folded spellings, words separated by one space.
    pub forms: &'static [&'static str],
    /// The name is also an ordinary word or a person's name ("la reina", "colina", "castro"): it
    /// counts only after a place cue ("en", "comuna", "vivo en"), capitalised mid-sentence, as the
    /// whole reply, or when Sofía asked for the comuna.
    pub needs_cue: bool,
}

const fn place(name: &'static str, forms: &'static [&'static str]) -> Place {
    Place { name, forms, needs_cue: false }
}

const fn word_place(name: &'static str, forms: &'static [&'static str]) -> Place {
    Place { name, forms, needs_cue: true }
}

pub(super) const PLACES: &[Place] = &[
    // Provincia de Santiago (32 comunas).
    word_place("Santiago", &["santiago"]),
    place("Santiago", &["santiago centro", "stgo centro", "stgo", "centro de santiago", "santiago de chile"]),
    word_place("Cerrillos", &["cerrillos"]),
    place("Cerro Navia", &["cerro navia"]),
    place("Conchalí", &["conchali"]),
    word_place("El Bosque", &["el bosque"]),
    place("Estación Central", &["estacion central", "est central"]),
    place("Huechuraba", &["huechuraba"]),
    word_place("Independencia", &["independencia"]),
    word_place("La Cisterna", &["la cisterna"]),
    place("La Florida", &["la florida"]),
    word_place("La Granja", &["la granja"]),
    place("La Pintana", &["la pintana"]),
    word_place("La Reina", &["la reina"]),
    place("Las Condes", &["las condes"]),
    place("Lo Barnechea", &["lo barnechea", "barnechea"]),
    word_place("Lo Espejo", &["lo espejo"]),
    place("Lo Prado", &["lo prado"]),
    place("Macul", &["macul"]),
    place("Maipú", &["maipu"]),
    place("Ñuñoa", &["nunoa"]),
    place("Pedro Aguirre Cerda", &["pedro aguirre cerda"]),
    word_place("Pedro Aguirre Cerda", &["pac"]),
    place("Peñalolén", &["penalolen"]),
    place("Providencia", &["providencia"]),
    place("Pudahuel", &["pudahuel", "pudawel"]),
    place("Quilicura", &["quilicura"]),
    place("Quinta Normal", &["quinta normal"]),
    word_place("Recoleta", &["recoleta"]),
    word_place("Renca", &["renca"]),
    place("San Joaquín", &["san joaquin"]),
    place("San Miguel", &["san miguel"]),
    place("San Ramón", &["san ramon"]),
    place("Vitacura", &["vitacura"]),
    // Provincia Cordillera.
    place("Puente Alto", &["puente alto"]),
    place("Pirque", &["pirque"]),
    place("San José de Maipo", &["san jose de maipo", "cajon del maipo"]),
    // Provincia de Chacabuco.
    word_place("Colina", &["colina"]),
    word_place("Lampa", &["lampa"]),
    place("Tiltil", &["tiltil", "til til"]),
    // Provincia del Maipo.
    place("San Bernardo", &["san bernardo"]),
    word_place("Buin", &["buin"]),
    place("Calera de Tango", &["calera de tango"]),
    word_place("Paine", &["paine"]),
    // Provincia de Talagante.
    place("Talagante", &["talagante"]),
    word_place("El Monte", &["el monte"]),
    place("Isla de Maipo", &["isla de maipo"]),
    place("Padre Hurtado", &["padre hurtado"]),
    place("Peñaflor", &["penaflor"]),
    // Provincia de Melipilla.
    place("Melipilla", &["melipilla"]),
    place("Curacaví", &["curacavi"]),
    word_place("María Pinto", &["maria pinto"]),
    place("Alhué", &["alhue"]),
    word_place("San Pedro", &["san pedro"]),
    // Sectors of Gran Santiago, kept by their own name.
    place("Chicureo", &["chicureo"]),
    place("La Dehesa", &["la dehesa"]),
    place("Piedra Roja", &["piedra roja"]),
    place("Los Trapenses", &["los trapenses"]),
    place("San Carlos de Apoquindo", &["san carlos de apoquindo"]),
    place("Barrio Italia", &["barrio italia"]),
    place("Lastarria", &["lastarria", "barrio lastarria"]),
    word_place("Bellavista", &["bellavista", "barrio bellavista"]),
    word_place("El Golf", &["el golf", "barrio el golf"]),
    // Gran Valparaíso and the coast.
    place("Valparaíso", &["valparaiso", "valpo"]),
    place("Viña del Mar", &["vina del mar", "vina"]),
    place("Concón", &["concon"]),
    place("Quilpué", &["quilpue"]),
    place("Villa Alemana", &["villa alemana"]),
    place("Reñaca", &["renaca"]),
    place("Curauma", &["curauma"]),
    place("Casablanca", &["casablanca"]),
    word_place("Quintero", &["quintero"]),
    place("Puchuncaví", &["puchuncavi"]),
    place("Limache", &["limache"]),
    place("Olmué", &["olmue"]),
    place("Quillota", &["quillota"]),
    word_place("La Calera", &["la calera"]),
    word_place("San Antonio", &["san antonio"]),
    word_place("Cartagena", &["cartagena"]),
    place("El Quisco", &["el quisco"]),
    word_place("Algarrobo", &["algarrobo"]),
    place("El Tabo", &["el tabo"]),
    word_place("Santo Domingo", &["santo domingo"]),
    word_place("Los Andes", &["los andes"]),
    word_place("San Felipe", &["san felipe"]),
    // Gran Concepción and Biobío.
    place("Concepción", &["concepcion", "conce"]),
    place("Talcahuano", &["talcahuano"]),
    place("Hualpén", &["hualpen"]),
    place("San Pedro de la Paz", &["san pedro de la paz"]),
    place("Andalué", &["andalue"]),
    place("Chiguayante", &["chiguayante"]),
    place("Penco", &["penco"]),
    word_place("Tomé", &["tome"]),
    word_place("Coronel", &["coronel"]),
    place("Lota", &["lota"]),
    place("Hualqui", &["hualqui"]),
    word_place("Los Ángeles", &["los angeles"]),
    place("Chillán", &["chillan"]),
    place("Chillán Viejo", &["chillan viejo"]),
    // La Serena–Coquimbo.
    place("La Serena", &["la serena"]),
    place("Coquimbo", &["coquimbo"]),
    word_place("Ovalle", &["ovalle"]),
    // Temuco–Padre Las Casas and the lakes.
    place("Temuco", &["temuco"]),
    place("Padre Las Casas", &["padre las casas"]),
    place("Villarrica", &["villarrica"]),
    place("Pucón", &["pucon"]),
    // The north.
    place("Arica", &["arica"]),
    place("Iquique", &["iquique"]),
    place("Alto Hospicio", &["alto hospicio"]),
    place("Antofagasta", &["antofagasta", "antofa"]),
    place("Calama", &["calama"]),
    word_place("Mejillones", &["mejillones"]),
    place("Copiapó", &["copiapo"]),
    place("Vallenar", &["vallenar"]),
    // Rancagua–Machalí, Maule.
    place("Rancagua", &["rancagua"]),
    place("Machalí", &["machali"]),
    word_place("San Fernando", &["san fernando"]),
    place("Rengo", &["rengo"]),
    word_place("Graneros", &["graneros"]),
    place("Pichilemu", &["pichilemu"]),
    place("Talca", &["talca"]),
    place("Curicó", &["curico"]),
    word_place("Linares", &["linares"]),
    // The south.
    place("Puerto Montt", &["puerto montt", "pto montt"]),
    place("Puerto Varas", &["puerto varas", "pto varas"]),
    place("Osorno", &["osorno"]),
    place("Frutillar", &["frutillar"]),
    word_place("Castro", &["castro"]),
    place("Ancud", &["ancud"]),
    word_place("Valdivia", &["valdivia"]),
    place("Coyhaique", &["coyhaique", "coihaique"]),
    place("Punta Arenas", &["punta arenas"]),
    place("Puerto Natales", &["puerto natales"]),
];

/// Real words one letter away from a comuna ("porque" / Pirque): never read as typos.
const NOT_TYPOS: &[&str] =
    &["porque", "parque", "parques", "providencial", "frutilla", "frutillas", "condon", "calamar"];

/// Words that make the next name a place: "en La Reina", "comuna de Colina", "soy de Renca".
const PLACE_CUES: &[&str] = &["en", "comuna", "sector", "zona", "barrio", "por", "hacia", "desde", "cerca"];
const PLACE_CUES_BEFORE_DE: &[&str] =
    &["comuna", "sector", "zona", "cerca", "soy", "somos", "lado", "barrio", "alrededores"];

/// Words a bare reply may carry around the place name ("en Renca", "la comuna de Renca porfa").
const REPLY_FILLERS: &[&str] = &[
    "en", "la", "comuna", "de", "sector", "zona", "vivo", "soy", "somos", "yo", "porfa", "gracias", "hola", "y", "ok",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlaceMatch {
    pub name: &'static str,
    /// The name is also an ordinary word or a person's name.
    pub ambiguous: bool,
    /// Token span.
    pub start: usize,
    pub end: usize,
}

/// Every place the message names, left to right, longest name first at each position.
/// `expecting` says Sofía asked for the comuna, which also lets ordinary-word names count.
pub(super) fn find_places(tokens: &[Token], expecting: bool) -> Vec<PlaceMatch> {
    let mut out = Vec::new();
    let bare_reply = is_bare_reply(tokens);
    let mut i = 0;
    while i < tokens.len() {
        let found = tokens.get(i).filter(|t| t.is_word()).and_then(|_| best_at(tokens, i));
        match found {
            Some((place, end)) => {
                let counts = !place.needs_cue || expecting || bare_reply || has_cue(tokens, i, end);
                if counts {
                    out.push(PlaceMatch { name: place.name, ambiguous: place.needs_cue, start: i, end });
                }
                i = end;
            }
            None => i += 1,
        }
    }
    out
}

/// One spelling of a place, split once.
struct Form {
    place: &'static Place,
    words: Vec<&'static str>,
    /// The words written together ("lascondes"), for names typed without spaces.
    joined: String,
}

/// Every spelling, grouped by first letter (exact and typo matches keep the first letter).
static FORMS: std::sync::LazyLock<std::collections::HashMap<char, Vec<Form>>> = std::sync::LazyLock::new(|| {
    let mut by_first: std::collections::HashMap<char, Vec<Form>> = std::collections::HashMap::new();
    for place in PLACES {
        for form in place.forms {
            let Some(first) = form.chars().next() else { continue };
            let words: Vec<&'static str> = form.split(' ').collect();
            by_first.entry(first).or_default().push(Form { place, joined: words.concat(), words });
        }
    }
    by_first
});

/// The most words any spelling has.
const MAX_FORM_WORDS: usize = 6;

/// The place named at token `i` and the index past it: exact spellings first (longest), then typos.
fn best_at(tokens: &[Token], i: usize) -> Option<(&'static Place, usize)> {
    // Every spelling, exact or with a typo, starts with the letter the message has.
    let first = tokens.get(i)?.folded.chars().next()?;
    let candidates = FORMS.get(&first)?;
    let got = word_tokens_from(tokens, i, MAX_FORM_WORDS);
    let exact = candidates
        .iter()
        .filter_map(|f| exact_match(tokens, i, &got, f).map(|end| (f.place, end, f.joined.len() + f.words.len())))
        .max_by_key(|&(_, end, len)| (end, len));
    if let Some((p, end, _)) = exact {
        return Some((p, end));
    }
    // A typo is forgiven only in a written word of six letters or more.
    if !got.iter().any(|(_, g)| g.len() >= 6) {
        return None;
    }
    candidates
        .iter()
        .filter(|f| !f.place.needs_cue)
        .filter_map(|f| typo_match(tokens, i, &got, f).map(|(end, dist)| (f.place, end, dist)))
        .min_by_key(|&(_, end, dist)| (dist, std::cmp::Reverse(end)))
        .map(|(p, end, _)| (p, end))
}

/// Word tokens from `i`, skipping the dots of abbreviations ("pto. montt").
fn word_tokens_from<'t>(tokens: &'t [Token], i: usize, n: usize) -> Vec<(usize, &'t str)> {
    let mut out = Vec::with_capacity(n);
    let mut j = i;
    while out.len() < n {
        match tokens.get(j) {
            Some(t) if t.kind == Kind::Word => out.push((j, t.folded.as_str())),
            Some(t) if t.is_punct(".") && !out.is_empty() => {}
            _ => break,
        }
        j += 1;
    }
    out
}

fn exact_match(tokens: &[Token], i: usize, got: &[(usize, &str)], form: &Form) -> Option<usize> {
    let n = form.words.len();
    if got.len() >= n && got.iter().zip(&form.words).all(|((_, g), w)| g == w) {
        return got.get(n - 1).map(|(j, _)| j + 1);
    }
    let first = tokens.get(i)?;
    (n > 1 && first.folded == form.joined).then_some(i + 1)
}

/// Allowed edits for a word of this many letters: none below 6, one up to 9, two from 10.
fn typo_budget(len: usize) -> usize {
    match len {
        0..=5 => 0,
        6..=9 => 1,
        _ => 2,
    }
}

const ARTICLES: &[&str] = &["el", "la", "lo", "los", "las", "de", "del"];

/// A spelling with a typo: word by word (articles exact), or all the words written together.
fn typo_match(tokens: &[Token], i: usize, got: &[(usize, &str)], form: &Form) -> Option<(usize, usize)> {
    let n = form.words.len();
    if got.len() >= n {
        let mut total = 0;
        let mut ok = true;
        for ((_, g), w) in got.iter().zip(&form.words) {
            if g == w {
                continue;
            }
            match word_typo(g, w) {
                Some(d) if !ARTICLES.contains(w) => total += d,
                _ => {
                    ok = false;
                    break;
                }
            }
        }
        if ok && total > 0 {
            return got.get(n - 1).map(|(j, _)| (j + 1, total));
        }
    }
    if n > 1 {
        let first = tokens.get(i)?;
        return word_typo(&first.folded, &form.joined).map(|d| (i + 1, d));
    }
    None
}

/// Edits between a written word and a place word, when small enough to be a typo of it.
fn word_typo(written: &str, name: &str) -> Option<usize> {
    let name_len = name.chars().count();
    let budget = typo_budget(name_len);
    let written_len = written.chars().count();
    let plausible = budget > 0
        && written_len >= 6
        && written_len.abs_diff(name_len) <= budget
        && written.chars().next() == name.chars().next()
        && !NOT_TYPOS.contains(&written);
    if !plausible || bag_distance(written, name) > budget {
        return None;
    }
    let d = edit_distance(written, name);
    (d > 0 && d <= budget).then_some(d)
}

/// A cheap lower bound of the edit distance: letters of one word the other lacks (as multisets),
/// the larger of the two directions. Rules out most non-typos before the full distance.
fn bag_distance(a: &str, b: &str) -> usize {
    if !(a.is_ascii() && b.is_ascii()) {
        return 0;
    }
    let mut counts = [0i32; 128];
    for c in a.bytes() {
        counts[usize::from(c & 0x7f)] += 1;
    }
    for c in b.bytes() {
        counts[usize::from(c & 0x7f)] -= 1;
    }
    let (extra, missing) = counts.iter().fold((0, 0), |(e, m), &c| if c > 0 { (e + c, m) } else { (e, m - c) });
    extra.max(missing) as usize
}

/// Optimal string alignment distance (Levenshtein plus swapping two neighbours).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    // Place words are short ASCII after folding: compare bytes on the stack when both fit.
    const MAX: usize = 32;
    if a.is_ascii() && b.is_ascii() && a.len() < MAX && b.len() < MAX {
        return osa(a.as_bytes(), b.as_bytes());
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    osa(&a, &b)
}

fn osa<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    // Three rows suffice: the swap looks two rows back.
    let width = b.len() + 1;
    let mut rows = [vec![0usize; width], (0..width).collect::<Vec<_>>(), vec![0usize; width]];
    if a.is_empty() {
        return b.len();
    }
    let (mut prev2, mut prev, mut cur) = (0usize, 1usize, 2usize);
    for i in 1..=a.len() {
        rows[cur][0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[prev][j] + 1).min(rows[cur][j - 1] + 1).min(rows[prev][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[prev2][j - 2] + 1);
            }
            rows[cur][j] = best;
        }
        (prev2, prev, cur) = (prev, cur, prev2);
    }
    rows[prev][b.len()]
}

/// "en La Reina", "comuna de Colina", "soy de Renca", "por La Florida", or an article name
/// capitalised mid-sentence ("busco casa La Reina").
fn has_cue(tokens: &[Token], start: usize, end: usize) -> bool {
    let prev = start.checked_sub(1).and_then(|i| tokens.get(i)).map(|t| t.folded.as_str());
    let prev2 = start.checked_sub(2).and_then(|i| tokens.get(i)).map(|t| t.folded.as_str());
    let next = tokens.get(end).map(|t| t.folded.as_str());
    let cued_before = match (prev2, prev) {
        (_, Some(p)) if PLACE_CUES.contains(&p) => true,
        (Some(p2), Some("de" | "del")) => PLACE_CUES_BEFORE_DE.contains(&p2),
        _ => false,
    };
    cued_before || next == Some("comuna") || capitalised_mid_sentence(tokens, start, end)
}

/// Only names that open with an article: "Colina" or "Santiago" capitalised is as likely a person.
fn capitalised_mid_sentence(tokens: &[Token], start: usize, end: usize) -> bool {
    let opens_with_article = tokens.get(start).is_some_and(|t| ARTICLES.contains(&t.folded.as_str()));
    let sentence_start = start == 0
        || tokens
            .get(start - 1)
            .is_some_and(|t| t.kind == Kind::Punct && matches!(t.raw, "." | "!" | "?" | "¿" | "¡" | ":"));
    let all_caps = tokens.iter().filter(|t| t.is_word()).all(|t| !t.raw.chars().any(char::is_lowercase));
    let capitalised = tokens
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .filter(|t| t.is_word() && !ARTICLES.contains(&t.folded.as_str()))
        .all(|t| t.raw.chars().next().is_some_and(char::is_uppercase));
    opens_with_article && end > start + 1 && !sentence_start && !all_caps && capitalised
}

/// The message is only a place name, maybe with "en", "comuna de", "vivo en"… around it.
fn is_bare_reply(tokens: &[Token]) -> bool {
    let words = tokens.iter().filter(|t| t.kind != Kind::Punct).count();
    if words == 0 || words > 8 {
        return false;
    }
    let mut i = 0;
    let mut named = false;
    while let Some(t) = tokens.get(i) {
        if t.is_word()
            && let Some((_, end)) = best_at(tokens, i)
        {
            named = true;
            i = end;
            continue;
        }
        if t.kind != Kind::Punct && !REPLY_FILLERS.contains(&t.folded.as_str()) {
            return false;
        }
        i += 1;
    }
    named
}

#[cfg(test)]
mod tests {
    use super::super::tokens::tokenize;
    use super::*;

    #[test]
    fn no_spelling_has_more_words_than_the_matcher_reads() {
        for place in PLACES {
            for form in place.forms {
                assert!(form.split(' ').count() <= MAX_FORM_WORDS, "{form}");
            }
        }
    }
    use crate::text::fold;

    fn places(text: &str) -> Vec<&'static str> {
        find_places(&tokenize(text), false).into_iter().map(|m| m.name).collect()
    }

    fn first_place(text: &str) -> Option<&'static str> {
        places(text).first().copied()
    }

    fn asked(text: &str) -> Option<&'static str> {
        find_places(&tokenize(text), true).first().map(|m| m.name)
    }

    #[test]
    fn every_listed_place_resolves_from_its_folded_name_after_en() {
        for p in PLACES {
            let text = format!("busco en {}", fold(p.name));
            assert_eq!(first_place(&text), Some(p.name), "{text}");
        }
    }

    #[test]
    fn every_spelling_resolves_in_a_sentence() {
        for p in PLACES {
            for form in p.forms {
                let text = format!("quiero vivir en {form} pronto");
                assert_eq!(first_place(&text), Some(p.name), "{text}");
            }
        }
    }

    #[test]
    fn every_comuna_of_gran_santiago_is_listed() {
        let comunas = [
            "Santiago",
            "Cerrillos",
            "Cerro Navia",
            "Conchalí",
            "El Bosque",
            "Estación Central",
            "Huechuraba",
            "Independencia",
            "La Cisterna",
            "La Florida",
            "La Granja",
            "La Pintana",
            "La Reina",
            "Las Condes",
            "Lo Barnechea",
            "Lo Espejo",
            "Lo Prado",
            "Macul",
            "Maipú",
            "Ñuñoa",
            "Pedro Aguirre Cerda",
            "Peñalolén",
            "Providencia",
            "Pudahuel",
            "Quilicura",
            "Quinta Normal",
            "Recoleta",
            "Renca",
            "San Joaquín",
            "San Miguel",
            "San Ramón",
            "Vitacura",
            "Puente Alto",
            "Pirque",
            "San José de Maipo",
            "Colina",
            "Lampa",
            "Tiltil",
            "San Bernardo",
            "Buin",
            "Calera de Tango",
            "Paine",
            "Talagante",
            "El Monte",
            "Isla de Maipo",
            "Padre Hurtado",
            "Peñaflor",
        ];
        for c in comunas {
            assert!(PLACES.iter().any(|p| p.name == c), "{c}");
        }
        assert_eq!(comunas.len(), 47);
    }

    #[test]
    fn accents_case_and_joined_words_do_not_matter() {
        let cases = [
            ("nunoa", "Ñuñoa"),
            ("ÑUÑOA", "Ñuñoa"),
            ("Nunoa", "Ñuñoa"),
            ("nuñoa", "Ñuñoa"),
            ("vina", "Viña del Mar"),
            ("viña del mar", "Viña del Mar"),
            ("VIÑA DEL MAR", "Viña del Mar"),
            ("vinadelmar", "Viña del Mar"),
            ("stgo centro", "Santiago"),
            ("Stgo. Centro", "Santiago"),
            ("santiago centro", "Santiago"),
            ("las condes", "Las Condes"),
            ("lascondes", "Las Condes"),
            ("LAS CONDES", "Las Condes"),
            ("maipu", "Maipú"),
            ("Maipú", "Maipú"),
            ("penalolen", "Peñalolén"),
            ("estacion central", "Estación Central"),
            ("sanmiguel", "San Miguel"),
            ("pto. montt", "Puerto Montt"),
            ("pto montt", "Puerto Montt"),
            ("conce", "Concepción"),
            ("valpo", "Valparaíso"),
            ("antofa", "Antofagasta"),
            ("chicureo", "Chicureo"),
            ("La Dehesa", "La Dehesa"),
            ("lo barnechea", "Lo Barnechea"),
            ("barnechea", "Lo Barnechea"),
            ("cajón del maipo", "San José de Maipo"),
        ];
        for (written, want) in cases {
            let text = format!("tienen algo en {written}?");
            assert_eq!(first_place(&text), Some(want), "{text}");
        }
    }

    #[test]
    fn one_letter_typos_in_long_names_are_forgiven() {
        let cases = [
            ("pudahel", "Pudahuel"),
            ("pudawel", "Pudahuel"),
            ("pudajuel", "Pudahuel"),
            ("providensia", "Providencia"),
            ("probidencia", "Providencia"),
            ("penalolen", "Peñalolén"),
            ("peñalolem", "Peñalolén"),
            ("huechuraba", "Huechuraba"),
            ("uechuraba", "Huechuraba"),
            ("quilicura", "Quilicura"),
            ("quilicurra", "Quilicura"),
            ("vitacrua", "Vitacura"),
            ("las condez", "Las Condes"),
            ("lascondez", "Las Condes"),
            ("estacion centrall", "Estación Central"),
            ("talagannte", "Talagante"),
            ("valparaizo", "Valparaíso"),
            ("conchaly", "Conchalí"),
            ("quilpué", "Quilpué"),
            ("villa alemna", "Villa Alemana"),
        ];
        for (written, want) in cases {
            let text = format!("busco depto en {written}");
            let got = first_place(&text);
            if written.starts_with('u') {
                // The first letter must be right: a missing first letter is not forgiven.
                assert_eq!(got, None, "{text}");
            } else {
                assert_eq!(got, Some(want), "{text}");
            }
        }
    }

    #[test]
    fn short_names_and_ordinary_word_names_need_the_exact_spelling() {
        for text in ["busco en macol", "busco en maipo", "busco en renka", "en la rena", "en nunioa", "en colinas"] {
            assert_eq!(first_place(text), None, "{text}");
        }
    }

    #[test]
    fn the_longest_name_wins() {
        assert_eq!(places("vivo en San Pedro de la Paz"), ["San Pedro de la Paz"]);
        assert_eq!(places("en estación central"), ["Estación Central"]);
        assert_eq!(places("en chillán viejo"), ["Chillán Viejo"]);
        assert_eq!(places("una casa en San José de Maipo"), ["San José de Maipo"]);
        assert_eq!(places("vivo en San Pedro"), ["San Pedro"]);
    }

    #[test]
    fn names_that_are_ordinary_words_need_a_place_cue() {
        let no_place = [
            "ella es la reina de la casa",
            "La reina de la casa soy yo",
            "me gusta el bosque y la granja de mi tío",
            "la independencia económica es importante",
            "vi un espejo, lo espejo todo",
            "subimos una colina",
            "Tomé la decisión de comprar",
            "soy coronel de ejército",
            "mi apellido es castro",
            "me llamo Santiago",
            "un algarrobo en el patio",
            "tengo mejillones",
        ];
        for text in no_place {
            assert_eq!(places(text), Vec::<&str>::new(), "{text}");
        }
        let with_cue = [
            ("vivo en la reina", "La Reina"),
            ("en La Reina", "La Reina"),
            ("comuna la reina", "La Reina"),
            ("soy de la granja", "La Granja"),
            ("busco casa en Colina", "Colina"),
            ("busco casa La Reina", "La Reina"),
            ("depto El Bosque", "El Bosque"),
            ("casa por el bosque", "El Bosque"),
            ("depto cerca de independencia", "Independencia"),
            ("Recoleta comuna", "Recoleta"),
            ("vivo en santiago", "Santiago"),
            ("algo en Lo Espejo", "Lo Espejo"),
            ("depto en tomé", "Tomé"),
        ];
        for (text, want) in with_cue {
            assert_eq!(first_place(text), Some(want), "{text}");
        }
    }

    #[test]
    fn a_bare_reply_or_an_asked_comuna_counts_even_when_ambiguous() {
        assert_eq!(first_place("La Reina"), Some("La Reina"));
        assert_eq!(first_place("la reina"), Some("La Reina"));
        assert_eq!(first_place("la granja!"), Some("La Granja"));
        assert_eq!(first_place("En colina, gracias"), Some("Colina"));
        assert_eq!(asked("la reina de preferencia"), Some("La Reina"));
        assert_eq!(asked("santiago"), Some("Santiago"));
    }

    #[test]
    fn ordinary_sentences_name_no_place() {
        let sentences = [
            "hola, quiero información",
            "porque necesito un departamento",
            "queda cerca del parque",
            "me interesa comprar una casa con patio",
            "gracias por la información, muy amable",
            "no sé cuánto cuesta un departamento",
            "quiero ver la central de reservas",
            "la florería de la esquina",
            "tengo una pareja y dos hijos",
            "¿el precio incluye IVA?",
            "estoy en la oficina ahora",
            "¿puedo llevar a mi pareja a la visita?",
            "prefiero que me llamen",
            "ok perfecto, nos vemos",
            "Buenas tardes, ¿cómo están?",
            "trabajo como conductor",
            "con calma lo vemos",
            "se ve providencial",
            "el tubo del baño",
            "mi nombre es Juan Pérez",
            "Me llamo María José",
            "estoy en DICOM por una deuda de 500 mil",
            "Gano 1.500.000 mensuales",
            "tengo cuatro hijos y un perro",
        ];
        for text in sentences {
            assert_eq!(places(text), Vec::<&str>::new(), "{text}");
        }
    }

    #[test]
    fn several_places_are_all_reported_in_order() {
        assert_eq!(places("vivo en Maipú pero busco en Ñuñoa o Providencia"), ["Maipú", "Ñuñoa", "Providencia"]);
    }

    #[test]
    fn edit_distance_counts_swaps_as_one() {
        assert_eq!(edit_distance("vitacura", "vitacrua"), 1);
        assert_eq!(edit_distance("pudahuel", "pudawel"), 2);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
