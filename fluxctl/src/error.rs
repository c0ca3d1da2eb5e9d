//! A command's failure and the exit code it carries. Most errors exit 1; `diff` and `chaos`
//! errors exit 2 (they keep 1 for "changes found" and "an invariant was violated"); `job run
//! --wait` and `job wait` exit with the remote job's code. A [`CliError`] without an error is a
//! plain exit code with nothing to print (a diff with changes, a failed job, a failed
//! benchmark). Usage errors never get here: clap prints them and exits 2.

use std::process::ExitCode;

use flux_core::client::ClientError;
use serde_json::json;

use crate::output::{Output, print_json};

pub type CliResult = Result<(), CliError>;

#[derive(Debug)]
pub struct CliError {
    /// What to print; none when the exit code says it all.
    pub error: Option<anyhow::Error>,
    pub exit_code: u8,
}

impl CliError {
    pub fn new(error: anyhow::Error, exit_code: u8) -> CliError {
        CliError {
            error: Some(error),
            exit_code,
        }
    }

    /// Exit with `exit_code` and print nothing.
    pub fn code(exit_code: u8) -> CliError {
        CliError {
            error: None,
            exit_code,
        }
    }

    /// Prints the error (on stderr, and with `-o json` also as `{"error": {"code", "message"}}`
    /// on stdout) and gives the exit code.
    pub fn report(self, out: Output) -> ExitCode {
        if let Some(e) = &self.error {
            let (code, message) = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Api {
                    status,
                    code,
                    message,
                    ..
                }) => (code.clone(), format!("{status}: {message}")),
                Some(other) => ("client".to_string(), other.to_string()),
                None => ("error".to_string(), format!("{e:#}")),
            };
            if out.is_json() {
                let _ = print_json(&json!({"error": {"code": code, "message": message}}));
            }
            eprintln!("fluxctl: {message}");
        }
        ExitCode::from(self.exit_code)
    }
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError::new(e.into(), 1)
    }
}

/// Exit 0 when `code` is 0, else exit with `code` and print nothing.
pub fn exit_with(code: u8) -> CliResult {
    match code {
        0 => Ok(()),
        c => Err(CliError::code(c)),
    }
}

/// Exit 0 when `ok`, else exit 1 and print nothing.
pub fn ok_or_1(ok: bool) -> CliResult {
    exit_with(if ok { 0 } else { 1 })
}
