//! A reader of server-sent events (the client side of `GET /v1/events`), fed bytes as they
//! arrive: [`Parser::feed`] returns every event completed by them.
//!
//! Guarantees: an event is returned once its blank line arrived, never half of one; comment
//! lines (keep-alives) and unknown fields are skipped; a line split across two pieces is joined.

/// One event of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    /// `message` when the event named none.
    pub event: String,
    pub data: String,
}

/// Longest line kept; a longer one is cut (no event of the API comes near it).
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    cur: SseMessage,
    has_data: bool,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Takes the next piece of the stream; returns the events it completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.line);
                let line = String::from_utf8_lossy(&line);
                let line = line.strip_suffix('\r').unwrap_or(&line).to_string();
                if let Some(m) = self.line_done(&line) {
                    out.push(m);
                }
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            }
        }
        out
    }

    fn line_done(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            let mut m = std::mem::take(&mut self.cur);
            let had = std::mem::take(&mut self.has_data);
            if !had && m.id.is_none() {
                return None;
            }
            if m.event.is_empty() {
                m.event = "message".into();
            }
            return Some(m);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.cur.id = Some(value.to_string()),
            "event" => self.cur.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.cur.data.push('\n');
                }
                self.cur.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let text = ": keep-alive\n\nid: 4.0\nevent: job.submitted\ndata: {\"a\":1}\n\nevent: end\ndata: x\ndata: y\n\n";
        for cut in 0..text.len() {
            let mut p = Parser::new();
            let mut got = p.feed(&text.as_bytes()[..cut]);
            got.extend(p.feed(&text.as_bytes()[cut..]));
            assert_eq!(
                got,
                vec![
                    SseMessage {
                        id: Some("4.0".into()),
                        event: "job.submitted".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseMessage {
                        id: None,
                        event: "end".into(),
                        data: "x\ny".into()
                    }
                ],
                "cut at {cut}"
            );
        }
    }
}
