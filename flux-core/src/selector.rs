//! The selector language: which agents a job, a fan-out, a desired state or `fluxctl agents
//! list -l` is about. One pure parser and one matcher, used everywhere.
//!
//! The syntax is the Kubernetes label-selector syntax plus facts; requirements are joined by
//! commas and all must hold (an empty selector matches every agent):
//!
//! | requirement | matches an agent whose |
//! |---|---|
//! | `role=web`, `role==web` | label `role` is `web` |
//! | `env!=prod` | label `env` is not `prod`, or who has no label `env` |
//! | `role in (web,api)` | label `role` is one of these |
//! | `tier notin (db)` | label `tier` is none of these, or who has no label `tier` |
//! | `canary` / `!canary` | label `canary` is set / not set |
//! | `fact.os=linux`, `fact.cpus>=4`, `fact.memory_mb>8000` | fact compares so (`=`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `notin`) |
//!
//! Labels are the agent's declared labels together with its admin labels; an admin label wins
//! over a declared one of the same key, so an agent cannot override it. Facts are typed
//! ([`crate::model::FactKind`]): numbers compare numerically (`fact.cpus=04` is `fact.cpus=4`),
//! comparisons (`<` ...) apply to numeric facts only, and list facts (`fact.ips`) match `=`/`in`
//! when they hold a value and `!=`/`notin` when they hold none of them.
//!
//! **A missing fact never matches**, whatever the operator: `fact.cpus!=4` and
//! `fact.os notin (windows)` do not match an agent that reports no `cpus` or no `os` (so an old
//! agent that reports no facts is never chosen by a fact requirement). `fact.NAME` alone requires
//! the fact to be reported; `!fact.NAME` is refused. Keys beginning with `fact.` always name
//! facts; an unknown fact name is a parse error.
//!
//! Values are bare (`web`, `10.0.0.1`, `a-b_c.d/e:f`) or double-quoted with `\"` and `\\`
//! escapes, for values holding spaces, commas or parentheses (`owner="ops, west"`). Errors carry
//! the byte position where the expression goes wrong ([`ParseError`]).
//!
//! Stored records and requests also accept the map form `{"role": "web"}`, which means
//! `role=web` (each entry an equality): a [`Selector`] deserializes from either, and serializes as
//! a map when it is only equalities (so records and replies of map selectors keep their shape)
//! and as the expression string otherwise.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Agent, FactKind, FactValue, fact_kind, valid_ident};

/// Longest selector expression.
pub const MAX_SELECTOR_BYTES: usize = 4096;
/// Most requirements in a selector.
pub const MAX_REQUIREMENTS: usize = 64;
/// Most values in one `in (...)` list.
pub const MAX_VALUES: usize = 64;
/// Largest value (the largest label value).
pub const MAX_VALUE_BYTES: usize = 256;

/// What a requirement is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Label(String),
    /// A fact's name, without the `fact.` prefix (a known fact).
    Fact(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Label(k) => f.write_str(k),
            Key::Fact(n) => write!(f, "fact.{n}"),
        }
    }
}

/// What a requirement asks of its key's value. Values of numeric facts are kept in their
/// canonical form (`04` is kept as `4`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Exists,
    NotExists,
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Lt(u64),
    Le(u64),
    Gt(u64),
    Ge(u64),
}

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: Key,
    pub op: Op,
}

/// A parsed selector: requirements that must all hold, in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

/// A selector that does not parse: where (byte offset in the expression) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {pos}: {message}")]
pub struct ParseError {
    pub pos: usize,
    pub message: String,
}

/// What a selector is matched against: an agent's labels (declared and admin) and facts.
pub trait Subject {
    /// The label's value: the admin label if there is one, else the declared one.
    fn label(&self, key: &str) -> Option<&str>;
    fn fact(&self, name: &str) -> Option<FactValue<'_>>;
}

impl Subject for Agent {
    fn label(&self, key: &str) -> Option<&str> {
        self.admin_labels
            .get(key)
            .or_else(|| self.labels.get(key))
            .map(String::as_str)
    }
    fn fact(&self, name: &str) -> Option<FactValue<'_>> {
        self.facts.get(name)
    }
}

/// The labels an agent is matched by: its declared labels overlaid by its admin labels.
pub fn effective_labels(
    declared: &BTreeMap<String, String>,
    admin: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = declared.clone();
    all.extend(admin.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

impl Selector {
    /// Parses an expression (see the module doc).
    pub fn parse(input: &str) -> Result<Selector, ParseError> {
        Parser::new(input).selector()
    }

    /// The selector `k1=v1,k2=v2,...` of a map (keys beginning with `fact.` name facts).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Selector, ParseError> {
        let mut reqs = Vec::with_capacity(map.len());
        let mut pos = 0;
        for (k, v) in map {
            let key = check_key(k, pos)?;
            check_value(v, pos)?;
            let value = canonical_value(&key, v, pos)?;
            reqs.push(Requirement {
                key,
                op: Op::Eq(value),
            });
            pos += k.len() + v.len() + 2;
        }
        check_count(reqs.len(), 0)?;
        Ok(Selector { reqs })
    }

    /// The selector of requirements `key=value` on labels.
    pub fn labels<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Selector {
        Selector {
            reqs: pairs
                .into_iter()
                .map(|(k, v)| Requirement {
                    key: Key::Label(k.into()),
                    op: Op::Eq(v.into()),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.reqs
    }

    /// Whether the subject meets every requirement.
    pub fn matches(&self, s: &impl Subject) -> bool {
        self.reqs.iter().all(|r| r.matches(s))
    }

    /// The `(label, value)` pairs an agent must carry to match: its label equalities (and
    /// one-value `in` lists). An index of agents by label answers candidates from these.
    pub fn required_labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.reqs.iter().filter_map(|r| match (&r.key, &r.op) {
            (Key::Label(k), Op::Eq(v)) => Some((k.as_str(), v.as_str())),
            (Key::Label(k), Op::In(vs)) if vs.len() == 1 => Some((k.as_str(), vs[0].as_str())),
            _ => None,
        })
    }

    /// The map form, when the selector is only equalities on distinct keys written in key
    /// order (what [`Selector::from_map`] makes).
    pub fn as_map(&self) -> Option<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        let mut last: Option<String> = None;
        for r in &self.reqs {
            let Op::Eq(v) = &r.op else { return None };
            let k = r.key.to_string();
            if last.as_ref().is_some_and(|l| *l >= k) {
                return None;
            }
            last = Some(k.clone());
            map.insert(k, v.clone());
        }
        Some(map)
    }
}

impl Requirement {
    pub fn matches(&self, s: &impl Subject) -> bool {
        match &self.key {
            Key::Label(k) => {
                let v = s.label(k);
                match &self.op {
                    Op::Exists => v.is_some(),
                    Op::NotExists => v.is_none(),
                    Op::Eq(want) => v == Some(want.as_str()),
                    Op::Ne(want) => v != Some(want.as_str()),
                    Op::In(vs) => v.is_some_and(|v| vs.iter().any(|w| w == v)),
                    Op::NotIn(vs) => v.is_none_or(|v| vs.iter().all(|w| w != v)),
                    // Refused by the parser: comparisons are for numeric facts.
                    Op::Lt(_) | Op::Le(_) | Op::Gt(_) | Op::Ge(_) => false,
                }
            }
            Key::Fact(n) => s.fact(n).is_some_and(|v| fact_matches(v, &self.op)),
        }
    }
}

/// How a reported fact meets an operator (a missing fact never gets here: it never matches).
fn fact_matches(v: FactValue<'_>, op: &Op) -> bool {
    match v {
        FactValue::Number(x) => {
            let is = |w: &String| w.parse::<u64>().is_ok_and(|w| w == x);
            match op {
                Op::Exists => true,
                Op::NotExists => false,
                Op::Eq(w) => is(w),
                Op::Ne(w) => !is(w),
                Op::In(ws) => ws.iter().any(is),
                Op::NotIn(ws) => !ws.iter().any(is),
                Op::Lt(n) => x < *n,
                Op::Le(n) => x <= *n,
                Op::Gt(n) => x > *n,
                Op::Ge(n) => x >= *n,
            }
        }
        FactValue::Text(t) => match op {
            Op::Exists => true,
            Op::Eq(w) => t == w,
            Op::Ne(w) => t != w,
            Op::In(ws) => ws.iter().any(|w| w == t),
            Op::NotIn(ws) => ws.iter().all(|w| w != t),
            _ => false,
        },
        FactValue::List(l) => {
            let holds = |w: &String| l.iter().any(|x| x == w);
            match op {
                Op::Exists => true,
                Op::Eq(w) => holds(w),
                Op::Ne(w) => !holds(w),
                Op::In(ws) => ws.iter().any(holds),
                Op::NotIn(ws) => !ws.iter().any(holds),
                _ => false,
            }
        }
    }
}

// ---- printing

/// Whether a value can be written without quotes.
fn bare_ok(v: &str) -> bool {
    !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@+".contains(c))
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    if bare_ok(v) {
        return f.write_str(v);
    }
    f.write_str("\"")?;
    for c in v.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, vs: &[String]| -> fmt::Result {
            f.write_str("(")?;
            for (i, v) in vs.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write_value(f, v)?;
            }
            f.write_str(")")
        };
        match &self.op {
            Op::Exists => write!(f, "{}", self.key),
            Op::NotExists => write!(f, "!{}", self.key),
            Op::Eq(v) => {
                write!(f, "{}=", self.key)?;
                write_value(f, v)
            }
            Op::Ne(v) => {
                write!(f, "{}!=", self.key)?;
                write_value(f, v)
            }
            Op::In(vs) => {
                write!(f, "{} in ", self.key)?;
                list(f, vs)
            }
            Op::NotIn(vs) => {
                write!(f, "{} notin ", self.key)?;
                list(f, vs)
            }
            Op::Lt(n) => write!(f, "{}<{n}", self.key),
            Op::Le(n) => write!(f, "{}<={n}", self.key),
            Op::Gt(n) => write!(f, "{}>{n}", self.key),
            Op::Ge(n) => write!(f, "{}>={n}", self.key),
        }
    }
}

/// The canonical expression: parsing it gives the same selector.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.reqs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Selector {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Selector, ParseError> {
        Selector::parse(s)
    }
}

// ---- serde: a string or a map

impl Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_map() {
            Some(m) => m.serialize(s),
            None => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Map(BTreeMap<String, String>),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a selector is an expression string (\"role=web,fact.cpus>=4\") or a map of \
                 labels ({\"role\": \"web\"})",
            )
        })?;
        match form {
            Form::Text(t) => Selector::parse(&t),
            Form::Map(m) => Selector::from_map(&m),
        }
        .map_err(serde::de::Error::custom)
    }
}

// ---- parsing

fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        pos,
        message: message.into(),
    })
}

fn check_count(n: usize, pos: usize) -> Result<(), ParseError> {
    if n > MAX_REQUIREMENTS {
        return err(pos, format!("at most {MAX_REQUIREMENTS} requirements"));
    }
    Ok(())
}

/// A key as written: `fact.NAME` (a known fact) or a label name.
fn check_key(k: &str, pos: usize) -> Result<Key, ParseError> {
    if let Some(name) = k.strip_prefix("fact.") {
        if fact_kind(name).is_none() {
            let known: Vec<&str> = crate::model::FACT_NAMES.iter().map(|(n, _)| *n).collect();
            return err(
                pos,
                format!(
                    "unknown fact {:?} (facts: {})",
                    abbrev(name),
                    known.join(", ")
                ),
            );
        }
        return Ok(Key::Fact(name.to_string()));
    }
    if !valid_ident(k) {
        return err(
            pos,
            format!(
                "label name {:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ -",
                abbrev(k)
            ),
        );
    }
    Ok(Key::Label(k.to_string()))
}

fn check_value(v: &str, pos: usize) -> Result<(), ParseError> {
    if v.len() > MAX_VALUE_BYTES || v.chars().any(char::is_control) {
        return err(
            pos,
            format!("values are at most {MAX_VALUE_BYTES} bytes without control characters"),
        );
    }
    Ok(())
}

/// The value kept for `key`: a numeric fact's value is a number, kept in canonical form.
fn canonical_value(key: &Key, v: &str, pos: usize) -> Result<String, ParseError> {
    match key {
        Key::Fact(n) if fact_kind(n) == Some(FactKind::Number) => match v.parse::<u64>() {
            Ok(x) => Ok(x.to_string()),
            Err(_) => err(pos, format!("fact.{n} is a number, not {:?}", abbrev(v))),
        },
        _ => Ok(v.to_string()),
    }
}

fn abbrev(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn bare_char(c: char) -> bool {
    !c.is_whitespace()
        && !c.is_control()
        && !matches!(c, ',' | '(' | ')' | '"' | '=' | '!' | '<' | '>' | '\\')
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Parser<'a> {
        Parser { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start().len();
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.rest().starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let r = self.rest();
        let n = r.find(|c| !f(c)).unwrap_or(r.len());
        self.pos += n;
        &r[..n]
    }

    fn selector(mut self) -> Result<Selector, ParseError> {
        if self.s.len() > MAX_SELECTOR_BYTES {
            return err(
                MAX_SELECTOR_BYTES,
                format!("a selector is at most {MAX_SELECTOR_BYTES} bytes"),
            );
        }
        let mut reqs = Vec::new();
        self.ws();
        if self.pos == self.s.len() {
            return Ok(Selector { reqs });
        }
        loop {
            check_count(reqs.len() + 1, self.pos)?;
            reqs.push(self.requirement()?);
            self.ws();
            match self.peek() {
                None => return Ok(Selector { reqs }),
                Some(',') => {
                    self.pos += 1;
                    self.ws();
                }
                Some(c) => {
                    return err(self.pos, format!("expected ',' or the end, found {c:?}"));
                }
            }
        }
    }

    fn key(&mut self) -> Result<Key, ParseError> {
        let at = self.pos;
        let k = self.take_while(key_char);
        if k.is_empty() {
            return match self.peek() {
                None => err(at, "expected a label or fact name, found the end"),
                Some(c) => err(at, format!("expected a label or fact name, found {c:?}")),
            };
        }
        check_key(k, at)
    }

    fn requirement(&mut self) -> Result<Requirement, ParseError> {
        let at = self.pos;
        if self.eat("!") {
            self.ws();
            let key = self.key()?;
            if let Key::Fact(_) = key {
                return err(
                    at,
                    "!fact.NAME is not allowed: a missing fact never matches",
                );
            }
            return Ok(Requirement {
                key,
                op: Op::NotExists,
            });
        }
        let key = self.key()?;
        let after_key = self.pos;
        self.ws();
        let op_at = self.pos;
        let cmp = if self.eat("==") || self.eat("=") {
            Some("=")
        } else if self.eat("!=") {
            Some("!=")
        } else if self.eat("<=") {
            Some("<=")
        } else if self.eat(">=") {
            Some(">=")
        } else if self.eat("<") {
            Some("<")
        } else if self.eat(">") {
            Some(">")
        } else {
            None
        };
        if let Some(cmp) = cmp {
            self.ws();
            let v_at = self.pos;
            let v = self.value()?;
            let op = match cmp {
                "=" => Op::Eq(canonical_value(&key, &v, v_at)?),
                "!=" => Op::Ne(canonical_value(&key, &v, v_at)?),
                _ => {
                    let numeric =
                        matches!(&key, Key::Fact(n) if fact_kind(n) == Some(FactKind::Number));
                    if !numeric {
                        return err(
                            op_at,
                            format!("{cmp} compares numeric facts only (not {key})"),
                        );
                    }
                    let Ok(n) = v.parse::<u64>() else {
                        return err(v_at, format!("{key} is a number, not {:?}", abbrev(&v)));
                    };
                    match cmp {
                        "<" => Op::Lt(n),
                        "<=" => Op::Le(n),
                        ">" => Op::Gt(n),
                        _ => Op::Ge(n),
                    }
                }
            };
            return Ok(Requirement { key, op });
        }
        // `in (...)` / `notin (...)`: the word must stand apart from the key.
        let word = self.take_while(|c| c.is_ascii_alphabetic());
        let negate = match word {
            "in" => false,
            "notin" => true,
            "" => {
                self.pos = after_key;
                return Ok(Requirement {
                    key,
                    op: Op::Exists,
                });
            }
            _ => {
                return err(
                    op_at,
                    format!(
                        "expected an operator (=, ==, !=, <, <=, >, >=, in, notin), found {:?}",
                        abbrev(word)
                    ),
                );
            }
        };
        if op_at == after_key {
            return err(op_at, format!("expected a space before {word}"));
        }
        self.ws();
        if !self.eat("(") {
            return err(self.pos, format!("expected '(' after {word}"));
        }
        let mut vs = Vec::new();
        loop {
            self.ws();
            if vs.len() == MAX_VALUES {
                return err(self.pos, format!("at most {MAX_VALUES} values in a list"));
            }
            let v_at = self.pos;
            let v = self.value()?;
            vs.push(canonical_value(&key, &v, v_at)?);
            self.ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    break;
                }
                None => return err(self.pos, "expected ',' or ')', found the end"),
                Some(c) => return err(self.pos, format!("expected ',' or ')', found {c:?}")),
            }
        }
        let op = if negate { Op::NotIn(vs) } else { Op::In(vs) };
        Ok(Requirement { key, op })
    }

    /// A bare or quoted value (a bare one may be empty: `role=` asks for the empty value).
    fn value(&mut self) -> Result<String, ParseError> {
        let at = self.pos;
        let v = if self.eat("\"") {
            let mut v = String::new();
            loop {
                match self.peek() {
                    None => return err(at, "unterminated quoted value"),
                    Some('"') => {
                        self.pos += 1;
                        break;
                    }
                    Some('\\') => {
                        self.pos += 1;
                        match self.peek() {
                            Some(c @ ('"' | '\\')) => {
                                v.push(c);
                                self.pos += 1;
                            }
                            _ => return err(self.pos, "only \\\" and \\\\ escapes are allowed"),
                        }
                    }
                    Some(c) => {
                        v.push(c);
                        self.pos += c.len_utf8();
                    }
                }
            }
            v
        } else {
            self.take_while(bare_char).to_string()
        };
        check_value(&v, at)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Facts;
    use proptest::prelude::*;

    #[derive(Debug, Default)]
    struct S {
        labels: BTreeMap<String, String>,
        facts: Facts,
    }

    impl Subject for S {
        fn label(&self, key: &str) -> Option<&str> {
            self.labels.get(key).map(String::as_str)
        }
        fn fact(&self, name: &str) -> Option<FactValue<'_>> {
            self.facts.get(name)
        }
    }

    fn s(labels: &[(&str, &str)]) -> S {
        S {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            facts: Facts {
                os: Some("linux".into()),
                cpus: Some(8),
                memory_mb: Some(16000),
                ips: vec!["10.0.0.1".into(), "fd00::1".into()],
                ..Facts::default()
            },
        }
    }

    fn m(expr: &str, subject: &S) -> bool {
        Selector::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(subject)
    }

    #[test]
    fn every_form_matches_as_documented() {
        let web = s(&[("role", "web"), ("env", "dev"), ("canary", "")]);
        let db = s(&[("role", "db"), ("tier", "db")]);
        for (expr, on_web, on_db) in [
            ("", true, true),
            ("role=web", true, false),
            ("role==web", true, false),
            ("role = web", true, false),
            ("env!=prod", true, true),
            ("role in (web,api)", true, false),
            ("role in ( web , api )", true, false),
            ("tier notin (db)", true, false),
            ("canary", true, false),
            ("!canary", false, true),
            ("canary=", true, false),
            ("canary=\"\"", true, false),
            ("role=web,env=dev", true, false),
            ("role=web,env=prod", false, false),
            ("fact.os=linux", true, true),
            ("fact.os!=linux", false, false),
            ("fact.cpus>=4", true, true),
            ("fact.cpus>8", false, false),
            ("fact.cpus<=8,fact.cpus>=8", true, true),
            ("fact.cpus=08", true, true),
            ("fact.cpus in (2,8)", true, true),
            ("fact.memory_mb>8000", true, true),
            ("fact.memory_mb<8000", false, false),
            ("fact.ips=10.0.0.1", true, true),
            ("fact.ips!=10.0.0.1", false, false),
            ("fact.ips notin (10.9.9.9)", true, true),
            ("fact.ips in (10.9.9.9, fd00::1)", true, true),
            ("fact.os", true, true),
        ] {
            assert_eq!(m(expr, &web), on_web, "{expr} on web");
            assert_eq!(m(expr, &db), on_db, "{expr} on db");
        }
    }

    #[test]
    fn a_missing_fact_never_matches_whatever_the_operator() {
        let bare = S::default();
        for expr in [
            "fact.os=linux",
            "fact.os!=linux",
            "fact.os notin (windows)",
            "fact.os in (linux)",
            "fact.cpus>=0",
            "fact.cpus<100",
            "fact.cpus!=4",
            "fact.ips!=1.2.3.4",
            "fact.ips notin (1.2.3.4)",
            "fact.kernel",
        ] {
            assert!(!m(expr, &bare), "{expr} matched an agent without facts");
        }
        assert!(Selector::parse("!fact.os").is_err());
    }

    #[test]
    fn admin_labels_win_over_declared_ones() {
        let mut a: Agent = serde_json::from_value(serde_json::json!({
            "node_id": "a", "tenant": "t", "labels": {"role": "db", "zone": "a"},
            "slots": 1, "state": "online", "registered_at": 0, "last_seen": 0,
        }))
        .unwrap();
        a.admin_labels.insert("role".into(), "web".into());
        let sel = |e: &str| Selector::parse(e).unwrap().matches(&a);
        assert!(sel("role=web,zone=a"));
        assert!(!sel("role=db"));
        assert_eq!(
            effective_labels(&a.labels, &a.admin_labels)["role"],
            "web".to_string()
        );
    }

    #[test]
    fn errors_carry_the_byte_position() {
        for (expr, pos) in [
            ("role=web,", 9),
            ("role=web,,x", 9),
            ("role in web", 8),
            ("role in (a,b", 12),
            ("role=web zone=b", 9),
            ("fact.nope=1", 0),
            ("a=b,fact.cpus=many", 14),
            ("a=b,fact.cpus>many", 14),
            ("role>3", 4),
            ("fact.os<3", 7),
            ("role=\"abc", 5),
            ("role within (a)", 5),
            ("r\u{e9}le=x", 1),
            ("=x", 0),
            ("!fact.os", 0),
        ] {
            let e = Selector::parse(expr).expect_err(expr);
            assert_eq!(e.pos, pos, "{expr}: {e}");
        }
        let long = "a=b,".repeat(MAX_SELECTOR_BYTES);
        assert!(Selector::parse(&long).is_err());
        let many = vec!["a=b"; MAX_REQUIREMENTS + 1].join(",");
        assert!(
            Selector::parse(&many)
                .unwrap_err()
                .message
                .contains("at most")
        );
    }

    #[test]
    fn the_map_form_is_equalities_and_serializes_back_as_a_map() {
        let from_map: Selector =
            serde_json::from_value(serde_json::json!({"role": "web", "zone": "b"})).unwrap();
        assert_eq!(from_map, Selector::parse("role=web,zone=b").unwrap());
        assert_eq!(
            serde_json::to_value(&from_map).unwrap(),
            serde_json::json!({"role": "web", "zone": "b"})
        );
        let expr: Selector =
            serde_json::from_value(serde_json::json!("role in (web,api)")).unwrap();
        assert_eq!(
            serde_json::to_value(&expr).unwrap(),
            serde_json::json!("role in (web,api)")
        );
        // Out of key order or repeated keys: not a map.
        let z = Selector::parse("zone=b,role=web").unwrap();
        assert_eq!(
            serde_json::to_value(&z).unwrap(),
            serde_json::json!("zone=b,role=web")
        );
        let e = serde_json::from_value::<Selector>(serde_json::json!("role in")).unwrap_err();
        assert!(e.to_string().contains("at byte 7"), "{e}");
        let e = serde_json::from_value::<Selector>(serde_json::json!(3)).unwrap_err();
        assert!(e.to_string().contains("expression string"), "{e}");
        assert!(serde_json::from_value::<Selector>(serde_json::json!({"bad key": "x"})).is_err());
    }

    #[test]
    fn stored_records_with_map_selectors_read_and_write_back_unchanged() {
        use crate::model::{Job, Pending};
        let pending = r#"{"priority":3,"selector":{"role":"web","zone":"b"}}"#;
        let p: Pending = serde_json::from_str(pending).unwrap();
        assert_eq!(p.selector, Selector::parse("role=web,zone=b").unwrap());
        assert_eq!(serde_json::to_string(&p).unwrap(), pending);
        let job = serde_json::json!({
            "job_id": "j-1", "tenant": "t", "command": {"shell": "true"},
            "timeout_secs": 60, "max_attempts": 1, "selector": {"gpu": "yes"},
            "status": "queued", "created_at": 0, "updated_at": 0, "attempts": 0,
            "submitted_by": "a",
        });
        let j: Job = serde_json::from_value(job.clone()).unwrap();
        assert_eq!(j.selector, Selector::labels([("gpu", "yes")]));
        assert_eq!(
            serde_json::to_value(&j).unwrap()["selector"],
            job["selector"]
        );
    }

    // ---- properties

    fn label_key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("role".to_string()),
            Just("zone".to_string()),
            Just("in".to_string()),
            "[a-z][a-z0-9._-]{0,6}".prop_filter("fact. names facts", |k| !k.starts_with("fact.")),
        ]
    }

    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("web".to_string()),
            Just("db".to_string()),
            Just(String::new()),
            "[ -~]{0,8}",
            "\\PC{0,4}",
        ]
    }

    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..20, any::<u64>()]
    }

    fn requirement() -> impl Strategy<Value = Requirement> {
        let label = (
            label_key(),
            0..6usize,
            proptest::collection::vec(label_value(), 1..4),
        )
            .prop_map(|(k, op, vs)| Requirement {
                key: Key::Label(k),
                op: match op {
                    0 => Op::Exists,
                    1 => Op::NotExists,
                    2 => Op::Eq(vs[0].clone()),
                    3 => Op::Ne(vs[0].clone()),
                    4 => Op::In(vs),
                    _ => Op::NotIn(vs),
                },
            });
        let text = (
            prop_oneof![Just("os"), Just("kernel"), Just("ips")],
            0..5usize,
            proptest::collection::vec(label_value(), 1..4),
        )
            .prop_map(|(n, op, vs)| Requirement {
                key: Key::Fact(n.to_string()),
                op: match op {
                    0 => Op::Exists,
                    1 => Op::Eq(vs[0].clone()),
                    2 => Op::Ne(vs[0].clone()),
                    3 => Op::In(vs),
                    _ => Op::NotIn(vs),
                },
            });
        let num = (
            prop_oneof![Just("cpus"), Just("memory_mb")],
            0..8usize,
            proptest::collection::vec(number(), 1..4),
        )
            .prop_map(|(n, op, ns)| Requirement {
                key: Key::Fact(n.to_string()),
                op: match op {
                    0 => Op::Eq(ns[0].to_string()),
                    1 => Op::Ne(ns[0].to_string()),
                    2 => Op::In(ns.iter().map(u64::to_string).collect()),
                    3 => Op::Lt(ns[0]),
                    4 => Op::Le(ns[0]),
                    5 => Op::Gt(ns[0]),
                    6 => Op::Ge(ns[0]),
                    _ => Op::NotIn(ns.iter().map(u64::to_string).collect()),
                },
            });
        prop_oneof![label, text, num]
    }

    fn selector() -> impl Strategy<Value = Selector> {
        proptest::collection::vec(requirement(), 0..6).prop_map(|reqs| Selector { reqs })
    }

    fn subject() -> impl Strategy<Value = S> {
        (
            proptest::collection::btree_map(label_key(), label_value(), 0..4),
            proptest::option::of(label_value()),
            proptest::option::of(0u64..20),
            proptest::collection::vec(label_value(), 0..3),
        )
            .prop_map(|(labels, os, cpus, ips)| S {
                labels,
                facts: Facts {
                    os,
                    cpus,
                    ips,
                    ..Facts::default()
                },
            })
    }

    /// The matcher written again, as plainly as possible, from the module doc's table.
    fn naive(sel: &Selector, s: &S) -> bool {
        for r in &sel.reqs {
            let ok = match &r.key {
                Key::Label(k) => {
                    let v = s.labels.get(k);
                    match &r.op {
                        Op::Exists => v.is_some(),
                        Op::NotExists => v.is_none(),
                        Op::Eq(w) => v == Some(w),
                        Op::Ne(w) => v != Some(w),
                        Op::In(ws) => v.is_some() && ws.contains(v.unwrap()),
                        Op::NotIn(ws) => v.is_none() || !ws.contains(v.unwrap()),
                        _ => false,
                    }
                }
                Key::Fact(n) => {
                    let values: Option<Vec<String>> = match n.as_str() {
                        "os" => s.facts.os.clone().map(|o| vec![o]),
                        "kernel" => None,
                        "ips" => (!s.facts.ips.is_empty()).then(|| s.facts.ips.clone()),
                        "cpus" => s.facts.cpus.map(|c| vec![c.to_string()]),
                        "memory_mb" => None,
                        _ => unreachable!(),
                    };
                    match values {
                        None => false,
                        Some(vals) => {
                            let num = || vals[0].parse::<u64>().unwrap();
                            match &r.op {
                                Op::Exists => true,
                                Op::NotExists => false,
                                Op::Eq(w) => vals.contains(w),
                                Op::Ne(w) => !vals.contains(w),
                                Op::In(ws) => ws.iter().any(|w| vals.contains(w)),
                                Op::NotIn(ws) => !ws.iter().any(|w| vals.contains(w)),
                                Op::Lt(x) => num() < *x,
                                Op::Le(x) => num() <= *x,
                                Op::Gt(x) => num() > *x,
                                Op::Ge(x) => num() >= *x,
                            }
                        }
                    }
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn printing_then_parsing_gives_the_same_selector(sel in selector()) {
            let printed = sel.to_string();
            let back = Selector::parse(&printed);
            prop_assert_eq!(back.as_ref(), Ok(&sel), "printed as {}", printed);
            let json = serde_json::to_string(&sel).unwrap();
            let from_json: Selector = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(from_json, sel);
        }

        #[test]
        fn the_parser_never_panics(input in "\\PC{0,40}|[a-z!=<>(), .\"\\\\]{0,40}") {
            if let Err(e) = Selector::parse(&input) {
                prop_assert!(e.pos <= input.len());
                prop_assert!(input.is_char_boundary(e.pos));
            }
        }

        #[test]
        fn the_matcher_agrees_with_a_naive_model(sel in selector(), s in subject()) {
            prop_assert_eq!(sel.matches(&s), naive(&sel, &s), "{}", sel);
        }
    }
}
