//! An incremental parser of `text/event-stream` (the WHATWG server-sent events format), fed with
//! the body's bytes as they arrive, however the network cut them: a line may span chunks, a chunk
//! may hold several events, a UTF-8 character may be split between two chunks, and lines may end in
//! `\n`, `\r\n` or `\r`.
//!
//! Only what LLM streams use is kept: `event` and `data` (several `data` lines join with `\n`);
//! `id`, `retry` and comment lines (`: keep-alive`, OpenRouter's `: OPENROUTER PROCESSING`) are
//! skipped. An event is dispatched by a blank line; an event still pending when the body ends is
//! dispatched too, since some servers close the stream right after the last `data:` line.

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field (`None` for the default `message` type).
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes not yet ending in a line break.
    buf: Vec<u8>,
    /// The event being built.
    event: Option<String>,
    data: String,
    has_data: bool,
    /// Whether the start of the stream (and a possible byte-order mark) was seen.
    started: bool,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the body; returns the events they complete, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        if !self.started {
            if self.buf.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.buf) {
                return Vec::new();
            }
            if self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            self.started = true;
        }
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.buf.len() {
            match self.buf[i] {
                b'\n' => {
                    self.line(start, i, &mut events);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    // A `\r` at the end of the chunk may be the first half of `\r\n`: wait for more.
                    if i + 1 == self.buf.len() {
                        break;
                    }
                    self.line(start, i, &mut events);
                    i += if self.buf[i + 1] == b'\n' { 2 } else { 1 };
                    start = i;
                }
                _ => i += 1,
            }
        }
        self.buf.drain(..start);
        events
    }

    /// Ends the stream: the last line (without a line break) and the event pending, if any.
    pub fn finish(&mut self) -> Option<Event> {
        let mut events = Vec::new();
        if !self.buf.is_empty() {
            let end = if self.buf.ends_with(b"\r") { self.buf.len() - 1 } else { self.buf.len() };
            self.line(0, end, &mut events);
            self.buf.clear();
        }
        events.extend(self.dispatch());
        events.pop()
    }

    /// Bytes waiting for a line break (lets a caller refuse an endless line).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn line(&mut self, start: usize, end: usize, events: &mut Vec<Event>) {
        if start == end {
            events.extend(self.dispatch());
            return;
        }
        // A whole line: line breaks never occur inside a UTF-8 sequence, so no character is cut.
        let line = String::from_utf8_lossy(&self.buf[start..end]);
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_string()),
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(Event { event, data: std::mem::take(&mut self.data) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out: Vec<Event> = chunks.iter().flat_map(|c| p.push(c)).collect();
        out.extend(p.finish());
        out
    }

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    const STREAM: &str = "data: {\"t\":\"Hola, \"}\n\n: keep-alive\n\ndata: {\"t\":\"Ñuñoa\"}\r\n\r\nevent: done\ndata: a\ndata:b\r\rdata: [DONE]\n\n";

    #[test]
    fn events_are_parsed_whole() {
        let events = parse_in(&[STREAM.as_bytes()]);
        assert_eq!(data(&events), ["{\"t\":\"Hola, \"}", "{\"t\":\"Ñuñoa\"}", "a\nb", "[DONE]"]);
        assert_eq!(events[2].event.as_deref(), Some("done"));
        assert_eq!(events[0].event, None);
    }

    #[test]
    fn any_split_of_the_bytes_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        let whole = parse_in(&[bytes]);
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let split = parse_in(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(split, whole, "split at {i} and {j}");
            }
        }
        // One byte at a time, too (splits every "ñ" and every "\r\n").
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_in(&singles), whole);
    }

    #[test]
    fn a_stream_closed_without_a_blank_line_still_yields_its_last_event() {
        assert_eq!(data(&parse_in(&[b"data: one\n\ndata: [DONE]"])), ["one", "[DONE]"]);
        assert_eq!(data(&parse_in(&[b"data: one\n\ndata: two\n"])), ["one", "two"]);
        assert_eq!(data(&parse_in(&[b"data: one\r"])), ["one"]);
    }

    #[test]
    fn comments_ids_and_empty_events_are_skipped() {
        let events = parse_in(&[b": OPENROUTER PROCESSING\n\nid: 7\nretry: 100\n\nevent: ping\n\ndata\n\n"]);
        // `data` without a colon is a data line with an empty value.
        assert_eq!(events, [Event { event: None, data: String::new() }]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored_even_when_split() {
        let events = parse_in(&[b"\xEF", b"\xBB", b"\xBFdata: x\n\n"]);
        assert_eq!(data(&events), ["x"]);
    }

    #[test]
    fn pending_bytes_are_reported() {
        let mut p = Parser::new();
        assert!(p.push(b"data: partial").is_empty());
        assert_eq!(p.buffered(), 13);
        assert_eq!(p.push(b"\n\n").len(), 1);
        assert_eq!(p.buffered(), 0);
    }
}
