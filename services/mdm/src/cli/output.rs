//! Printing answers: aligned text for people, JSON for scripts.

use std::io::Write;

use clap::ValueEnum;
use serde::Serialize;

use super::client::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text.
    Human,
    /// The API's JSON, one document per command.
    Json,
}

/// Where a command writes its result.
pub struct Out {
    pub format: Format,
}

impl Out {
    /// Prints `value` as JSON, or as `human` renders it.
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        let mut buffer = Vec::new();
        match self.format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut buffer, value)
                    .map_err(|e| CliError::Failed(e.to_string()))?;
                buffer.push(b'\n');
            }
            Format::Human => human(&mut buffer).map_err(|e| CliError::Failed(e.to_string()))?,
        }
        std::io::stdout()
            .write_all(&buffer)
            .map_err(|e| CliError::Failed(e.to_string()))
    }
}

/// Writes rows as columns, each as wide as its widest cell.
pub fn table(out: &mut Vec<u8>, headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |out: &mut Vec<u8>, cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        let text: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end())
    };
    line(out, &mut headers.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// `key: value` lines, keys aligned.
pub fn fields(out: &mut Vec<u8>, pairs: &[(&str, String)]) -> std::io::Result<()> {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in pairs {
        writeln!(out, "{key:<width$}  {value}")?;
    }
    Ok(())
}

/// An optional value as text (`-` when absent).
pub fn or_dash<T: std::fmt::Display>(value: &Option<T>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["ID", "NAME"],
            &[
                vec!["1".into(), "first".into()],
                vec!["22".into(), "x".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  NAME\n1   first\n22  x\n"
        );
        let mut out = Vec::new();
        fields(&mut out, &[("id", "1".into()), ("state", "managed".into())]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id     1\nstate  managed\n"
        );
    }
}
