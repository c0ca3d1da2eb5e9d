//! Field formatting of fluxd's text log: every field value (the message included) is written
//! with its control characters escaped (`\n`, `\r`, `\t`, `\u{..}`), so that no value taken from
//! a request (a token subject, a state name, an error text) can break a record over several
//! lines or forge a record of its own. The JSON format escapes by itself.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// [`FormatFields`] for the text format: `message key=value key=value`, control characters
/// escaped.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut v = FieldVisitor {
            out: Escaping(writer),
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

/// Writes through to the log line, escaping control characters and the Unicode line and
/// paragraph separators.
struct Escaping<W>(W);

impl<W: Write> Write for Escaping<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            self.write_char(c)?;
        }
        Ok(())
    }

    fn write_char(&mut self, c: char) -> fmt::Result {
        match c {
            '\n' => self.0.write_str("\\n"),
            '\r' => self.0.write_str("\\r"),
            '\t' => self.0.write_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                write!(self.0, "\\u{{{:x}}}", c as u32)
            }
            c => self.0.write_char(c),
        }
    }
}

struct FieldVisitor<W> {
    out: Escaping<W>,
    first: bool,
    result: fmt::Result,
}

impl<W: Write> FieldVisitor<W> {
    fn separate(&mut self) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.0.write_char(' ')?;
        }
        Ok(())
    }
}

impl<W: Write> Visit for FieldVisitor<W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        // Fields that the `log` bridge adds are part of the line's prefix, not its fields.
        if name.starts_with("log.") {
            return;
        }
        self.result = self.separate().and_then(|()| {
            if name == "message" {
                write!(self.out, "{value:?}")
            } else {
                let name = name.strip_prefix("r#").unwrap_or(name);
                write!(self.out, "{name}={value:?}")
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(sub, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_field_with_a_newline_stays_on_its_line_escaped() {
        let forged = "bootstrap-admin\n2026-12-01T19:30:00.000000Z  INFO fluxd: token revoked by=bootstrap-admin jti=FORGED";
        let out = logged(|| {
            tracing::info!(by = %forged, jti = "j1", "token issued");
        });
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert!(
            out.contains(
                "token issued by=bootstrap-admin\\n2026-12-01T19:30:00.000000Z  INFO fluxd: token revoked"
            ),
            "{out:?}"
        );
        assert!(out.contains(" jti=\"j1\""), "{out:?}");
    }

    #[test]
    fn messages_debug_values_and_spans_escape_every_control_character() {
        let out = logged(|| {
            let span = tracing::info_span!("req", path = %"/v1/x\r\nforged");
            let _g = span.enter();
            let msg = "line one\nline two";
            tracing::warn!(value = ?"tab\there", bell = %"\u{7}\u{1b}[31m\u{85}\u{2028}", "{msg}");
        });
        assert_eq!(out.lines().count(), 1, "{out:?}");
        assert!(out.contains("path=/v1/x\\r\\nforged"), "{out:?}");
        assert!(out.contains("line one\\nline two"), "{out:?}");
        // Debug already escapes a tab inside quotes; it stays readable.
        assert!(out.contains("value=\"tab\\there\""), "{out:?}");
        assert!(
            out.contains("bell=\\u{7}\\u{1b}[31m\\u{85}\\u{2028}"),
            "{out:?}"
        );
        assert!(!out.trim_end_matches('\n').chars().any(|c| c.is_control()));
    }
}
