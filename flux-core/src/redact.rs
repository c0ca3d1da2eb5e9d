//! Redaction of secret values from a byte stream that arrives in arbitrary chunks.
//!
//! A secret may be split across two chunks, so the redactor holds back a tail that could be
//! the beginning of a secret until the next chunk (or the end) decides it.

/// What replaces a secret value.
pub const MASK: &[u8] = b"[redacted]";
/// Shortest secret value accepted: shorter ones would mask ordinary output.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces every occurrence of the secrets in a chunked stream with [`MASK`].
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is masked whole.
    secrets: Vec<Vec<u8>>,
    held: Vec<u8>,
}

impl Redactor {
    pub fn new<I, S>(secrets: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        secrets.dedup();
        Redactor {
            secrets,
            held: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Takes the next chunk; returns what can be emitted now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(data);
        self.drain(false)
    }

    /// Ends the stream; returns whatever was held back, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        self.drain(true)
    }

    fn drain(&mut self, last: bool) -> Vec<u8> {
        let buf = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'scan: while i < buf.len() {
            let rest = &buf[i..];
            if !last
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                // Could be the start of a secret cut by the chunk boundary (possibly a longer
                // one than a secret that already matches): decide when more arrives.
                self.held = rest.to_vec();
                return out;
            }
            for s in &self.secrets {
                if rest.starts_with(s) {
                    out.extend_from_slice(MASK);
                    i += s.len();
                    continue 'scan;
                }
            }
            out.push(buf[i]);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secrets: &[&str], chunks: &[&str]) -> String {
        let mut r = Redactor::new(secrets.iter().map(|s| s.as_bytes()));
        let mut out = Vec::new();
        for c in chunks {
            out.extend(r.push(c.as_bytes()));
        }
        out.extend(r.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn secrets_are_masked_even_across_chunk_boundaries() {
        assert_eq!(run(&["hunter22"], &["pw=hunter22\n"]), "pw=[redacted]\n");
        assert_eq!(run(&["hunter22"], &["pw=hun", "ter22!"]), "pw=[redacted]!");
        assert_eq!(
            run(&["hunter22"], &["h", "u", "n", "t", "e", "r", "2", "2"]),
            "[redacted]"
        );
        assert_eq!(run(&["hunter22"], &["hunter2", "x"]), "hunter2x");
        assert_eq!(
            run(&["hunter22"], &["hunt"]),
            "hunt",
            "a prefix at the end is released"
        );
        assert_eq!(
            run(&["abcd", "abcdef"], &["xabcdefy abcd"]),
            "x[redacted]y [redacted]"
        );
        assert_eq!(run(&[], &["plain ", "text"]), "plain text");
        assert_eq!(run(&["aaaa"], &["aaaaaaaaa"]), "[redacted][redacted]a");
        // A secret that begins with a shorter one is masked whole, even when cut right after
        // the shorter one.
        assert_eq!(
            run(&["admin", "admin123"], &["admin", "123\n"]),
            "[redacted]\n"
        );
        assert_eq!(
            run(&["admin", "admin123"], &["admin", "12x"]),
            "[redacted]12x"
        );
    }

    #[test]
    fn nothing_is_held_back_without_a_possible_secret() {
        let mut r = Redactor::new(["s3cret"]);
        assert_eq!(r.push(b"hello "), b"hello ");
        assert_eq!(r.push(b"world s3"), b"world ");
        assert_eq!(r.push(b"cr"), b"");
        assert_eq!(r.push(b"et."), b"[redacted].");
    }
}
