//! The offline embedder (SPEC §2): deterministic 768-dimension feature hashing, good enough for
//! lexical semantic search over a broker's knowledge base with no API key.
//!
//! The text is accent-folded and lower-cased ("Ñuñoa" = "nunoa"), split into words, and Spanish
//! stopwords are dropped. Four blocks of features are hashed into the same 768 dimensions:
//!
//! | block | features | share |
//! |---|---|---|
//! | words | unigrams, lightly stemmed (plural removed, then cut to 5 letters: "entregan" = "entrega") | 0.4 |
//! | bigrams | consecutive stemmed words ("gasto comun") | 0.1 |
//! | trigrams | character trigrams of each word with boundary marks ("^pe", "per", …, "os$") | 0.2 |
//! | concepts | a small Chilean real-estate thesaurus ("perro", "gato" → `mascota`; "depto" → `departamento`) | 0.3 |
//!
//! Each block is L2-normalised on its own (counts weighted `1 + ln tf`) and scaled by the square root
//! of its share, so the cosine of two texts is close to the share-weighted mix of the blocks'
//! cosines. A feature's slot and sign come from its 64-bit FNV-1a hash (stable across processes,
//! platforms and releases, unlike `DefaultHasher`); the sign halves the bias that collisions add.
//! The result is L2-normalised.
//!
//! Why stems and a thesaurus beyond SPEC's unigrams + bigrams + trigrams: a short question shares few
//! exact words with an 800-character chunk, so raw features leave paraphrases ("¿puedo tener perro?"
//! against "se permiten mascotas: perros y gatos…") near the noise floor of hashing, under the
//! 0.3 default threshold. Changing any of this changes every vector: bump [`MODEL`] so stored
//! vectors of the old scheme are no longer compared, and re-embed.

use std::collections::BTreeMap;

use crate::text::fold;

use super::DIMENSIONS;

/// The model name stored with local vectors. Bump it whenever the features or weights change.
pub const MODEL: &str = "hash-768-v1";

/// Share of each block in the similarity (they sum to 1).
const WORD_SHARE: f64 = 0.4;
const BIGRAM_SHARE: f64 = 0.1;
const TRIGRAM_SHARE: f64 = 0.2;
const CONCEPT_SHARE: f64 = 0.3;

/// Stems are cut to this many letters (a light stemmer that suits Spanish morphology).
const STEM_LEN: usize = 5;

/// Spanish function words and filler verbs of questions, accent-folded.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "ahi", "al", "algo", "algun", "alguna", "algunas", "alguno", "algunos", "alla", "ante", "antes", "aqui",
    "asi", "aun", "cada", "como", "con", "contra", "cual", "cuales", "cualquier", "cuando", "cuanta", "cuantas",
    "cuanto", "cuantos", "de", "del", "desde", "donde", "dos", "durante", "e", "el", "ella", "ellas", "ello",
    "ellos", "en", "entre", "era", "eran", "eres", "es", "esa", "esas", "ese", "eso", "esos", "esta", "estado",
    "estamos", "estan", "estar", "estas", "este", "esto", "estos", "estoy", "favor", "fue", "fueron", "fui",
    "gracias", "ha", "haber", "hace", "hacer", "han", "has", "hasta", "hay", "he", "hola", "igual", "la", "las",
    "le", "les", "lo", "los", "mas", "me", "mi", "mis", "mucho", "muchos", "muy", "nada", "ni", "no", "nos",
    "nosotros", "nuestra", "nuestras", "nuestro", "nuestros", "o", "os", "otra", "otras", "otro", "otros", "para",
    "pero", "poco", "podria", "por", "porque", "puede", "pueden", "puedo", "pues", "que", "queria", "quien",
    "quienes", "quiero", "se", "sea", "sean", "ser", "seria", "si", "sido", "siempre", "sin", "sobre", "sois",
    "solo", "son", "soy", "su", "sus", "tal", "tambien", "tan", "tanto", "te", "tenemos", "tener", "tengo", "tiene",
    "tienen", "toda", "todas", "todo", "todos", "tu", "tus", "u", "un", "una", "unas", "uno", "unos", "usted",
    "ustedes", "vosotros", "y", "ya", "yo",
];

/// Words (accent-folded, plural removed) that share a concept feature: the synonyms, abbreviations
/// and colloquialisms of the topics a Chilean brokerage's knowledge base covers.
#[rustfmt::skip]
const CONCEPTS: &[(&str, &[&str])] = &[
    ("mascota", &["mascota", "perro", "perrito", "gato", "gatito", "animal", "pet"]),
    ("departamento", &["departamento", "depto", "dpto", "depa", "departamentito", "edificio"]),
    ("estacionamiento", &["estacionamiento", "estacionar", "parking", "auto", "vehiculo", "garage", "garaje",
                          "cochera", "bicicleta", "bicicletero", "bici"]),
    ("bodega", &["bodega", "baulera", "deposito", "almacenaje", "guardar"]),
    ("horario", &["horario", "hora", "abren", "abierto", "abierta", "atienden", "atencion", "atender"]),
    ("visita", &["visita", "visitar", "piloto", "recorrido", "showroom"]),
    ("entrega", &["entrega", "entregan", "entregar", "entregado", "entregada", "recepcion", "listo", "lista",
                  "terminado", "terminada"]),
    ("dia_semana", &["lunes", "martes", "miercoles", "jueves", "viernes", "sabado", "domingo", "semana", "finde",
                     "feriado"]),
    ("reserva", &["reserva", "reservar", "reservo", "reservan", "apartar", "separar"]),
    ("promesa", &["promesa", "compraventa", "escritura", "escriturar", "notario", "notaria"]),
    ("credito", &["credito", "hipotecario", "hipotecaria", "hipoteca", "financiamiento", "financiar", "prestamo",
                  "dividendo", "banco", "tasa"]),
    ("pie", &["pie", "enganche", "abono"]),
    ("subsidio", &["subsidio", "ds1", "ds19", "ds49", "serviu", "minvu", "postulacion", "postular"]),
    ("dicom", &["dicom", "moroso", "morosa", "morosidad", "deuda", "boletin", "equifax"]),
    ("ubicacion", &["ubicacion", "ubicado", "ubicada", "direccion", "metro", "barrio", "sector", "cerca", "comuna"]),
    ("amenities", &["amenities", "amenidad", "piscina", "gimnasio", "quincho", "cowork", "lavanderia", "terraza"]),
    ("gasto_comun", &["gasto", "mantencion", "administracion", "conserjeria", "expensa"]),
];

/// The vector of `text`: 768 components, L2 norm 1 (never all zeros).
pub fn embed(text: &str) -> Vec<f32> {
    let folded = fold(text);
    let tokens: Vec<&str> = folded.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).collect();
    let content: Vec<&str> = tokens.iter().copied().filter(|t| is_content_word(t)).collect();
    // A text of stopwords only ("¿y eso?") is still something: use every word it has.
    let words = if content.is_empty() { tokens } else { content };

    let mut blocks: [(char, f64, BTreeMap<String, u32>); 4] = [
        ('w', WORD_SHARE, BTreeMap::new()),
        ('b', BIGRAM_SHARE, BTreeMap::new()),
        ('t', TRIGRAM_SHARE, BTreeMap::new()),
        ('c', CONCEPT_SHARE, BTreeMap::new()),
    ];
    let stems: Vec<String> = words.iter().map(|w| stem(w)).collect();
    for (word, stem) in words.iter().zip(&stems) {
        *blocks[0].2.entry(stem.clone()).or_default() += 1;
        let marked: Vec<char> = std::iter::once('^').chain(word.chars()).chain(std::iter::once('$')).collect();
        for tri in marked.windows(3) {
            *blocks[2].2.entry(tri.iter().collect()).or_default() += 1;
        }
        if let Some(concept) = concept_of(&depluralize(word)) {
            *blocks[3].2.entry(concept.to_string()).or_default() += 1;
        }
    }
    for pair in stems.windows(2) {
        *blocks[1].2.entry(format!("{} {}", pair[0], pair[1])).or_default() += 1;
    }

    let mut v = vec![0f64; DIMENSIONS];
    for (tag, share, counts) in &blocks {
        let weights: Vec<(&String, f64)> = counts.iter().map(|(f, n)| (f, 1.0 + f64::from(*n).ln())).collect();
        let norm = weights.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        let scale = share.sqrt() / norm;
        for (feature, w) in weights {
            let (slot, sign) = slot(*tag, feature);
            v[slot] += sign * w * scale;
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm == 0.0 {
        // Nothing to hash (punctuation only), or features that cancelled out exactly: a fixed
        // slot of the text itself keeps the vector usable for cosine distance.
        let (slot, _) = slot('r', &folded);
        v[slot] = 1.0;
        return v.iter().map(|x| *x as f32).collect();
    }
    v.iter().map(|x| (x / norm) as f32).collect()
}

fn is_content_word(t: &str) -> bool {
    let single_letter = t.chars().count() == 1 && !t.chars().all(|c| c.is_ascii_digit());
    !single_letter && STOPWORDS.binary_search(&t).is_err()
}

/// Drops a Spanish plural ending: "perros" → "perro", "comunes" → "comun".
fn depluralize(word: &str) -> String {
    let chars: Vec<char> = word.chars().collect();
    let n = chars.len();
    if n > 4 && word.ends_with("es") && matches!(chars[n - 3], 'l' | 'r' | 'n' | 'd' | 'z' | 'j') {
        chars[..n - 2].iter().collect()
    } else if n > 3 && word.ends_with('s') && !word.ends_with("ss") {
        chars[..n - 1].iter().collect()
    } else {
        word.to_string()
    }
}

/// The word feature: numbers as written, words without plural and cut to [`STEM_LEN`] letters.
fn stem(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_digit()) {
        return word.to_string();
    }
    depluralize(word).chars().take(STEM_LEN).collect()
}

fn concept_of(word: &str) -> Option<&'static str> {
    CONCEPTS.iter().find(|(_, words)| words.contains(&word)).map(|(concept, _)| *concept)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The slot and sign of a feature of block `tag` (`w:perro`): low bits pick the slot, the top bit the sign.
fn slot(tag: char, feature: &str) -> (usize, f64) {
    let mut prefix = [0u8; 4];
    let tag = tag.encode_utf8(&mut prefix).as_bytes();
    let h = fnv1a(tag.iter().copied().chain([b':']).chain(feature.bytes()));
    let slot = (h % DIMENSIONS as u64) as usize;
    (slot, if h >> 63 == 1 { -1.0 } else { 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum()
    }

    #[test]
    fn stopwords_are_sorted_for_binary_search() {
        assert!(STOPWORDS.windows(2).all(|w| w[0] < w[1]), "STOPWORDS must stay sorted and unique");
    }

    #[test]
    fn accents_and_case_do_not_matter() {
        assert_eq!(embed("Ñuñoa"), embed("nunoa"));
        assert_eq!(embed("Departamento en ÑUÑOA, cerca del Metro"), embed("departamento en nunoa cerca del metro"));
    }

    #[test]
    fn vectors_have_768_components_and_unit_norm() {
        for text in ["Gastos comunes", "¿y eso?", "¿?", "m²", &"palabra ".repeat(2000)] {
            let v = embed(text);
            assert_eq!(v.len(), 768);
            let norm = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
        }
    }

    #[test]
    fn hashing_is_stable_across_processes_and_releases() {
        // FNV-1a of "w:perro" is fixed by the algorithm, not by the process.
        assert_eq!(fnv1a("w:perro".bytes()), 0x6917_b665_2d90_b5fc);
        // Computed once, and checked against an independent implementation of the same scheme.
        let v = embed("Departamento en Ñuñoa con estacionamiento y bodega, a pasos del metro. Departamento amplio.");
        for (i, expected) in [(585, -0.408_856_8), (430, -0.368_510_6), (530, 0.346_127_4), (155, -0.217_648_3)] {
            assert!((v[i] - expected).abs() < 1e-6, "component {i}: {} != {expected}", v[i]);
        }
        assert_eq!(v.iter().filter(|x| **x != 0.0).count(), 66);
    }

    #[test]
    fn related_texts_score_higher_than_unrelated_ones() {
        let pets = embed("Mascotas: se permiten perros y gatos de hasta 20 kilos en el edificio.");
        let question = embed("¿Puedo tener perro en el depto?");
        let parking = embed("El precio no incluye estacionamiento ni bodega; se compran por separado.");
        assert!(cosine(&question, &pets) > 0.2, "{}", cosine(&question, &pets));
        assert!(cosine(&question, &pets) > cosine(&question, &parking) + 0.1);
        assert!(cosine(&pets, &pets) > 0.999);
    }

    #[test]
    fn stems_join_plural_and_verb_forms() {
        assert_eq!(stem("perros"), stem("perro"));
        assert_eq!(stem("entregan"), stem("entrega"));
        assert_eq!(stem("comunes"), "comun");
        assert_eq!(stem("2027"), "2027");
        assert_eq!(concept_of(&depluralize("gatos")), Some("mascota"));
    }
}
