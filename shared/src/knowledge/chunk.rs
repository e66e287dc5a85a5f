//! Splitting an entry into chunks for embedding: about [`TARGET`] characters each, cut at a sentence
//! end where one falls in the second half of the window (else between words), and each chunk after
//! the first starts up to [`OVERLAP`] characters before the previous one ended (at a sentence start
//! when possible), so a fact that straddles a cut is whole in one of the two chunks.

/// Longest chunk, in characters.
pub const TARGET: usize = 800;
/// Characters a chunk repeats from the end of the previous one, at most.
pub const OVERLAP: usize = 150;

/// The chunks of `text`: one (the trimmed text) when it fits, else several, in order. Never empty
/// for a text with any non-space character.
pub fn split(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.trim().chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let mut chunks = Vec::new();
    let mut start = 0;
    loop {
        if chars.len() - start <= TARGET {
            push(&mut chunks, &chars[start..]);
            return chunks;
        }
        let hard_end = start + TARGET;
        let earliest = start + TARGET / 2;
        let end = (earliest..=hard_end)
            .rev()
            .find(|&i| is_sentence_end(&chars, i))
            .or_else(|| (earliest..=hard_end).rev().find(|&i| chars[i].is_whitespace()))
            .unwrap_or(hard_end);
        push(&mut chunks, &chars[start..end]);
        let from = end.saturating_sub(OVERLAP).max(start + 1);
        start = (from..end)
            .find(|&i| is_sentence_start(&chars, i))
            .or_else(|| (from..end).find(|&i| is_word_start(&chars, i)))
            .unwrap_or(end);
        while start < chars.len() && chars[start].is_whitespace() {
            start += 1;
        }
        if start >= chars.len() {
            return chunks;
        }
    }
}

fn push(chunks: &mut Vec<String>, part: &[char]) {
    let s: String = part.iter().collect();
    let s = s.trim();
    if !s.is_empty() {
        chunks.push(s.to_string());
    }
}

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | ';' | '\n')
}

/// A cut at `i` (exclusive) ends a sentence: a terminator just before, and a space (or the end) at `i`.
fn is_sentence_end(chars: &[char], i: usize) -> bool {
    i > 0 && is_terminator(chars[i - 1]) && chars.get(i).is_none_or(|c| c.is_whitespace())
}

fn is_word_start(chars: &[char], i: usize) -> bool {
    i > 0 && !chars[i].is_whitespace() && chars[i - 1].is_whitespace()
}

/// A word that follows a sentence end.
fn is_sentence_start(chars: &[char], i: usize) -> bool {
    if !is_word_start(chars, i) {
        return false;
    }
    let mut j = i;
    while j > 0 && chars[j - 1].is_whitespace() {
        j -= 1;
    }
    j > 0 && is_terminator(chars[j - 1]) || chars[j..i].contains(&'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_text() -> String {
        (1..=40)
            .map(|i| {
                format!("La frase número {i} explica un detalle distinto del proyecto y sus condiciones de venta.")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_short_text_is_one_chunk() {
        assert_eq!(split("  Horario: lunes a viernes.  "), vec!["Horario: lunes a viernes."]);
        assert!(split("   ").is_empty());
        assert_eq!(split(&"a".repeat(TARGET)).len(), 1);
    }

    #[test]
    fn a_long_text_is_cut_at_sentence_ends_with_overlap() {
        let text = long_text();
        let chunks = split(&text);
        assert!(chunks.len() >= 4, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(c.chars().count() <= TARGET, "chunk of {} chars", c.chars().count());
            assert!(c.starts_with("La frase"), "starts mid-sentence: {c:?}");
            assert!(c.ends_with('.'), "ends mid-sentence: {c:?}");
        }
        for pair in chunks.windows(2) {
            let head: String = pair[1].chars().take(40).collect();
            assert!(pair[0].contains(&head), "no overlap between {:?} and {:?}", pair[0], pair[1]);
        }
        for i in 1..=40 {
            let sentence = format!("La frase número {i} explica");
            assert!(chunks.iter().any(|c| c.contains(&sentence)), "sentence {i} is lost");
        }
    }

    #[test]
    fn without_sentence_ends_it_cuts_between_words() {
        let words: Vec<String> = (0..400).map(|i| format!("palabra{i}")).collect();
        let text = words.join(" ");
        let chunks = split(&text);
        assert!(chunks.len() > 1);
        for c in &chunks {
            assert!(c.chars().count() <= TARGET);
            for w in c.split(' ') {
                assert!(words.contains(&w.to_string()), "cut inside a word: {w:?}");
            }
        }
        assert!(chunks.last().unwrap().ends_with("palabra399"));
    }

    #[test]
    fn a_text_without_spaces_is_still_cut_and_covered() {
        let text = "x".repeat(2000);
        let chunks = split(&text);
        assert!(chunks.iter().all(|c| c.chars().count() <= TARGET));
        assert!(chunks.iter().map(|c| c.len()).sum::<usize>() >= 2000);
    }
}
