//! Diagnostics: every problem found in the input, with where it is and what to do about it.
//!
//! A user's mistake is never a panic and never a silent drop: each stage of the pipeline pushes
//! `Diagnostic`s into a list that `check` prints and `serve` logs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How bad a diagnostic is. `Error` means something was left out of the route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// A place in the input: a file relative to the watched directory, with a 1-based line and
/// column (0 when unknown, as for a file that cannot be read at all).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl Location {
    pub fn new(file: impl Into<String>, line: u64, column: u64) -> Self {
        Location {
            file: file.into(),
            line,
            column,
        }
    }

    /// Where a diagnostic about the whole input (not one file) points: the directory itself.
    pub fn directory() -> Self {
        Location::new(".", 0, 0)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}", self.file),
            (l, 0) => write!(f, "{}:{l}", self.file),
            (l, c) => write!(f, "{}:{l}:{c}", self.file),
        }
    }
}

/// One problem (or remark) about the input, in the shape `check --format json` prints (and
/// `diff` reads back from a server's `/api/routes`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The Mapping's name, when the problem belongs to one.
    pub mapping: Option<String>,
    /// The field at fault (`weight`, `spec.prefix`...), when there is one.
    pub field: Option<String>,
    pub message: String,
    /// Whether it says that something keeps serving at its last good state instead of what is
    /// on disk (a broken or emptied file, an unreadable or emptied directory): what the admin
    /// API and page list as held back. Not part of `check`'s JSON.
    #[serde(skip)]
    pub held_back: bool,
}

impl Diagnostic {
    pub fn new(severity: Severity, at: &Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: at.file.clone(),
            line: at.line,
            column: at.column,
            mapping: None,
            field: None,
            message: message.into(),
            held_back: false,
        }
    }

    pub fn error(at: &Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, at, message)
    }

    pub fn warning(at: &Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, at, message)
    }

    pub fn info(at: &Location, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, at, message)
    }

    pub fn mapping(mut self, name: impl Into<String>) -> Self {
        self.mapping = Some(name.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// Marks it as saying that something is held back at its last good state.
    pub fn held_back(mut self) -> Self {
        self.held_back = true;
        self
    }

    pub fn location(&self) -> Location {
        Location::new(self.file.clone(), self.line, self.column)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity, self.location())?;
        if let Some(m) = &self.mapping {
            write!(f, ": Mapping {m}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Counts of diagnostics by severity, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
}

impl Counts {
    pub fn of(diagnostics: &[Diagnostic]) -> Self {
        let mut c = Counts::default();
        for d in diagnostics {
            match d.severity {
                Severity::Error => c.errors += 1,
                Severity::Warning => c.warnings += 1,
                Severity::Info => c.infos += 1,
            }
        }
        c
    }
}
