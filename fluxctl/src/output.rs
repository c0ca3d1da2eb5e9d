//! How results are printed: a table (or a few lines of text) for people, pretty JSON for
//! scripts (`-o json`). [`emit`] is the one place that chooses between the two; a command hands
//! it a value that is both [`Serialize`] (the JSON document) and [`Render`] (the text), so no
//! command has its own table-or-JSON branch. The table helpers (`table`, `age`, `short`) are
//! shared by every command's [`Render`].

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use flux_core::model::now_ms;
use serde::{Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    /// A table with more columns where a command has them (`agents list -o wide`).
    Wide,
    Json,
}

impl Output {
    pub fn is_json(self) -> bool {
        self == Output::Json
    }
}

/// The text form of a result, written to stdout as it is (trailing newline included).
pub trait Render {
    fn render(&self) -> String;
    /// The text of `-o wide`: the same as the table unless a command has more to show.
    fn render_wide(&self) -> String {
        self.render()
    }
}

/// Prints `v`: as pretty JSON with `-o json`, else as its [`Render`] text.
pub fn emit<T: Serialize + Render + ?Sized>(out: Output, v: &T) -> Result<()> {
    match out {
        Output::Json => print_json(v),
        Output::Table => {
            print!("{}", v.render());
            Ok(())
        }
        Output::Wide => {
            print!("{}", v.render_wide());
            Ok(())
        }
    }
}

/// Prints `v` as pretty JSON with `-o json`; in a table, `note(v)` goes to stderr instead (for
/// results whose stdout may be data, like `backup create`).
pub fn emit_note<T: Serialize + ?Sized>(
    out: Output,
    v: &T,
    note: impl FnOnce(&T) -> String,
) -> Result<()> {
    match out {
        Output::Json => print_json(v),
        Output::Table | Output::Wide => {
            eprintln!("{}", note(v));
            Ok(())
        }
    }
}

pub fn print_json<T: Serialize + ?Sized>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// A value serialized as it is and rendered by a function: for results whose text depends on
/// the command (`job get` shows a table, `job wait` one line) rather than on the type.
pub struct View<'a, T: ?Sized, F> {
    value: &'a T,
    text: F,
}

pub fn view<T: ?Sized, F: Fn(&T) -> String>(value: &T, text: F) -> View<'_, T, F> {
    View { value, text }
}

impl<T: Serialize + ?Sized, F> Serialize for View<'_, T, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: ?Sized, F: Fn(&T) -> String> Render for View<'_, T, F> {
    fn render(&self) -> String {
        (self.text)(self.value)
    }
}

/// Serializes through [`serde_json::Value`], which keeps object keys sorted (at every depth):
/// the JSON that fluxctl printed when it read these replies untyped, kept byte for byte now
/// that they are decoded into structs.
pub struct SortedKeys<'a, T: ?Sized>(pub &'a T);

impl<T: Serialize + ?Sized> Serialize for SortedKeys<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_value(self.0)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl<T: Render + ?Sized> Render for SortedKeys<'_, T> {
    fn render(&self) -> String {
        self.0.render()
    }
}

/// A value as JSON text (`null` for none): how fields of untyped replies used to be shown.
pub fn json_text<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `WHAT ID STATUS`, then `: WHY` when there is one (a job's error, a rollout's halt reason).
pub fn status_line(what: &str, id: &str, status: &str, why: Option<&str>) -> String {
    let why = why.map(|w| format!(": {w}")).unwrap_or_default();
    format!("{what} {id} {status}{why}")
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

pub fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner {
        z: u32,
        a: Option<u32>,
    }

    #[derive(Serialize)]
    struct Outer {
        token: &'static str,
        claims: Inner,
    }

    /// SortedKeys prints what printing the reply as an untyped `Value` printed.
    #[test]
    fn sorted_keys_match_untyped_json_at_every_depth() {
        let v = Outer {
            token: "t",
            claims: Inner { z: 1, a: None },
        };
        let untyped: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_string_pretty(&SortedKeys(&v)).unwrap(),
            serde_json::to_string_pretty(&untyped).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&SortedKeys(&v)).unwrap(),
            r#"{"claims":{"a":null,"z":1},"token":"t"}"#
        );
    }

    /// Fields of untyped replies were shown as JSON text: `null`, `5.0` for a float.
    #[test]
    fn json_text_is_how_values_were_shown() {
        assert_eq!(json_text(&None::<u64>), "null");
        assert_eq!(json_text(&Some(3u64)), "3");
        assert_eq!(json_text(&5.0f64), "5.0");
        assert_eq!(json_text(&2.5f64), "2.5");
    }

    #[test]
    fn short_cuts_with_an_ellipsis() {
        assert_eq!(short("abc", 3), "abc");
        assert_eq!(short("abcd", 3), "ab…");
    }
}
