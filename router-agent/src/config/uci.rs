//! UCI, OpenWrt's configuration format: `/etc/config/mpbond` parsed as libuci parses it,
//! then mapped into the same [`RawConfig`] that TOML and JSON fill.
//!
//! # Layout
//!
//! ```text
//! Lexer            text -> statements (words per line; quotes, escapes, comments, `;`)
//! parse()          statements -> Package (ordered sections, options and lists)
//! parse_uci()      Package -> RawConfig, through the GLOBALS and WAN mapping tables
//! load_uci()       RawConfig -> validated Config, errors renamed back to UCI paths
//! ```
//!
//! # The format, as libuci reads it
//!
//! * `package NAME`, `config TYPE ['NAME']`, `option NAME 'value'`, `list NAME 'value'`; the
//!   commands may be shortened to `p`, `c`, `o` and `l`, and `;` separates commands.
//! * A word is any mix of unquoted text, `'single'` and `"double"` quoted parts:
//!   `'it'\''s'` is `it's`. Quoted parts may span lines (the newline is kept).
//! * A backslash outside single quotes takes the next character literally (`\n` is `n`, as
//!   in libuci, which decodes nothing); a backslash at the end of a line joins the next
//!   line. Inside single quotes a backslash is just a backslash.
//! * `#` outside quotes starts a comment that runs to the end of the line.
//! * `option NAME ''` deletes the option (libuci's `uci_set` with an empty value). A `list`
//!   after an `option` of the same name turns the value into a list; a later `option`
//!   replaces a list. A second `config` with the same name continues that section.
//! * Section and option names are `[A-Za-z0-9_]`; a type is printable ASCII.
//!
//! Parsing never panics. Syntax errors carry the line of the statement, and mapping errors
//! name the option as `uci show` does: `mpbond.globals.port: expected a number`, or
//! `mpbond.@wan[1].mode` for an anonymous section.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::raw::RawConfig;
use crate::config::{Config, ConfigError, FieldError};

mod map;

pub use map::{parse_uci, Kind, Mapping, MAPPINGS};

/// A parsed UCI file: its sections in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    /// From a `package NAME` statement, if any.
    pub name: Option<String>,
    pub sections: Vec<Section>,
}

/// One `config TYPE ['NAME']` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section type (`globals`, `wan`).
    pub kind: String,
    /// `None` for an anonymous section.
    pub name: Option<String>,
    /// The line of its (first) `config` statement.
    pub line: usize,
    /// Options and lists in the order they first appeared.
    pub options: Vec<UciOption>,
}

/// One option or list of a section.
#[derive(Clone, PartialEq, Eq)]
pub struct UciOption {
    pub name: String,
    pub value: Value,
    /// The line of the statement that last set it.
    pub line: usize,
}

/// An option's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `option NAME 'value'`
    Single(String),
    /// One or more `list NAME 'value'`
    List(Vec<String>),
}

impl fmt::Debug for UciOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("UciOption");
        s.field("name", &self.name);
        if self.name == "key" {
            s.field("value", &"***");
        } else {
            s.field("value", &self.value);
        }
        s.field("line", &self.line).finish()
    }
}

impl Package {
    /// The path `uci show` prints for section `index`: `mpbond.globals` for a named
    /// section, `mpbond.@wan[1]` for the second anonymous (or any) section of type `wan`.
    pub fn section_path(&self, index: usize) -> String {
        let package = self.name.as_deref().unwrap_or("mpbond");
        let Some(section) = self.sections.get(index) else {
            return package.to_owned();
        };
        match &section.name {
            Some(name) => format!("{package}.{name}"),
            None => {
                let nth = self.sections[..index]
                    .iter()
                    .filter(|s| s.kind == section.kind)
                    .count();
                format!("{package}.@{}[{nth}]", section.kind)
            }
        }
    }
}

impl Section {
    /// The option called `name`, if set.
    pub fn get(&self, name: &str) -> Option<&UciOption> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// Why a UCI file could not be used. `Display` is a complete one-line message.
#[derive(Debug, Error)]
pub enum UciError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid UCI.
    #[error("line {line}: {problem}")]
    Syntax { line: usize, problem: SyntaxError },
    /// An option has a bad value, or is unknown or missing. `path` is `mpbond.globals.port`.
    #[error("{path}: {problem}{}", line_suffix(*line))]
    Option {
        path: String,
        /// 0 when the option is missing.
        line: usize,
        problem: OptionError,
    },
    /// A section is unknown, repeated or missing. `path` is `mpbond.globals`.
    #[error("{path}: {problem} (line {line})")]
    Section {
        path: String,
        line: usize,
        problem: SectionError,
    },
    /// The mapped values failed validation (e.g. a key that is not 64 hex characters).
    #[error("{path}: {problem}")]
    Field {
        path: String,
        #[source]
        problem: FieldError,
    },
    /// The mapped values do not fit [`RawConfig`]: a mapping-table bug, not a user error.
    #[error("the UCI config does not map onto the agent's config: {0}")]
    Mapping(#[source] serde_json::Error),
    /// Any other validation failure.
    #[error(transparent)]
    Config(ConfigError),
}

fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" (line {line})")
    }
}

/// What is wrong with the text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyntaxError {
    #[error("unterminated {0} quote")]
    UnterminatedQuote(char),
    #[error("invalid command {0:?} (expected package, config, option or list)")]
    InvalidCommand(String),
    #[error("{0} without a name")]
    MissingName(&'static str),
    #[error("too many arguments to {0}")]
    TooManyArguments(&'static str),
    #[error("invalid character in name {0:?} (allowed: A-Z a-z 0-9 _)")]
    InvalidName(String),
    #[error("invalid character in section type {0:?}")]
    InvalidType(String),
    #[error("option or list before the first config section")]
    OptionBeforeSection,
    #[error("section {name:?} is redefined with type {new:?} (was {old:?})")]
    TypeChanged {
        name: String,
        old: String,
        new: String,
    },
}

/// What is wrong with one option.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OptionError {
    #[error("expected a number, got {0:?}")]
    Number(String),
    #[error("expected a boolean (1/0, yes/no, on/off, true/false), got {0:?}")]
    Bool(String),
    #[error("expected one of {allowed}, got {value:?}")]
    Choice {
        value: String,
        allowed: &'static str,
    },
    #[error("expected a single value, not a list")]
    NotSingle,
    #[error("unknown option")]
    Unknown,
    #[error("required option is missing")]
    Missing,
    #[error(
        "the concentrator is given both here and in concentrator sections: use one form, not both"
    )]
    BothConcentratorForms,
}

/// What is wrong with one section.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SectionError {
    #[error("unknown section type {0:?} (expected globals, concentrator, wan or udp_rule)")]
    UnknownType(String),
    #[error("a second globals section (the first is at line {0})")]
    SecondGlobals(usize),
    #[error("no `config globals 'globals'` section")]
    NoGlobals,
    #[error("two wan sections name the interface {0:?}")]
    DuplicateInterface(String),
}

/// Parse UCI text into its sections. Never panics.
pub fn parse(text: &str) -> Result<Package, UciError> {
    let mut package = Package::default();
    let mut current: Option<usize> = None;
    for statement in Lexer::new(text).statements()? {
        let syntax = |problem| UciError::Syntax {
            line: statement.line,
            problem,
        };
        let mut words = statement.words.iter();
        let command = words.next().map(String::as_str).unwrap_or_default();
        let args: Vec<&str> = words.map(String::as_str).collect();
        match command {
            "package" | "p" => {
                let name = one_name(&args, "package", true).map_err(syntax)?;
                package.name = Some(name.to_owned());
            }
            "config" | "c" => {
                let kind = match args.first() {
                    Some(kind) if !kind.is_empty() => *kind,
                    _ => return Err(syntax(SyntaxError::MissingName("config"))),
                };
                if !kind.bytes().all(|b| (33..=126).contains(&b)) {
                    return Err(syntax(SyntaxError::InvalidType(kind.to_owned())));
                }
                if args.len() > 2 {
                    return Err(syntax(SyntaxError::TooManyArguments("config")));
                }
                let name = args.get(1).copied().filter(|n| !n.is_empty());
                if let Some(name) = name.filter(|n| !valid_name(n, false)) {
                    return Err(syntax(SyntaxError::InvalidName(name.to_owned())));
                }
                current =
                    Some(open_section(&mut package, kind, name, statement.line).map_err(syntax)?);
            }
            "option" | "o" | "list" | "l" => {
                let list = command.starts_with('l');
                let what = if list { "list" } else { "option" };
                let index = current.ok_or_else(|| syntax(SyntaxError::OptionBeforeSection))?;
                let name = match args.first() {
                    Some(name) if !name.is_empty() => *name,
                    _ => return Err(syntax(SyntaxError::MissingName(what))),
                };
                if !valid_name(name, false) {
                    return Err(syntax(SyntaxError::InvalidName(name.to_owned())));
                }
                if args.len() > 2 {
                    return Err(syntax(SyntaxError::TooManyArguments(what)));
                }
                let value = args.get(1).copied().unwrap_or_default();
                if let Some(section) = package.sections.get_mut(index) {
                    set_option(section, name, value, list, statement.line);
                }
            }
            other => return Err(syntax(SyntaxError::InvalidCommand(other.to_owned()))),
        }
    }
    Ok(package)
}

/// Read and parse `path`, map it and validate the result.
pub fn load_uci_file(path: &Path) -> Result<Config, UciError> {
    let text = std::fs::read_to_string(path).map_err(|source| UciError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_uci(&text)
}

/// Parse, map and validate UCI text. Validation errors name the UCI option
/// (`mpbond.globals.key: expected 64 hex characters`), not the TOML field.
pub fn load_uci(text: &str) -> Result<Config, UciError> {
    let package = parse(text)?;
    let raw: RawConfig = map::to_raw(&package)?;
    Config::from_raw(raw).map_err(|error| match error {
        ConfigError::Field { field, problem } => UciError::Field {
            path: map::uci_path(&package, &field),
            problem,
        },
        other => UciError::Config(other),
    })
}

/// `globals.enabled` (default on): the init script reads it; the agent only checks it.
pub fn enabled(package: &Package) -> bool {
    package
        .sections
        .iter()
        .filter(|s| s.kind == "globals")
        .filter_map(|s| s.get("enabled"))
        .all(|o| match &o.value {
            Value::Single(v) => parse_bool(v) != Some(false),
            Value::List(_) => true,
        })
}

/// UCI booleans as `uci_get_bool` and `config_get_bool` read them.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "yes" | "on" | "true" | "enabled" => Some(true),
        "0" | "no" | "off" | "false" | "disabled" => Some(false),
        _ => None,
    }
}

fn one_name<'a>(
    args: &[&'a str],
    what: &'static str,
    package: bool,
) -> Result<&'a str, SyntaxError> {
    let name = match args.first() {
        Some(name) if !name.is_empty() => *name,
        _ => return Err(SyntaxError::MissingName(what)),
    };
    if args.len() > 1 {
        return Err(SyntaxError::TooManyArguments(what));
    }
    if !valid_name(name, package) {
        return Err(SyntaxError::InvalidName(name.to_owned()));
    }
    Ok(name)
}

/// libuci's `uci_validate_str` for names: alphanumerics and `_`, plus `-` in package names.
fn valid_name(name: &str, package: bool) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || (package && b == b'-'))
}

fn open_section(
    package: &mut Package,
    kind: &str,
    name: Option<&str>,
    line: usize,
) -> Result<usize, SyntaxError> {
    if let Some(name) = name {
        let found = package
            .sections
            .iter()
            .position(|s| s.name.as_deref() == Some(name));
        if let Some(index) = found {
            let old = &package.sections[index].kind;
            if old != kind {
                return Err(SyntaxError::TypeChanged {
                    name: name.to_owned(),
                    old: old.clone(),
                    new: kind.to_owned(),
                });
            }
            return Ok(index);
        }
    }
    package.sections.push(Section {
        kind: kind.to_owned(),
        name: name.map(str::to_owned),
        line,
        options: Vec::new(),
    });
    Ok(package.sections.len() - 1)
}

fn set_option(section: &mut Section, name: &str, value: &str, list: bool, line: usize) {
    let existing = section.options.iter().position(|o| o.name == name);
    match (existing, list) {
        // uci_set with an empty value deletes the option.
        (Some(i), false) if value.is_empty() => {
            section.options.remove(i);
        }
        (None, false) if value.is_empty() => {}
        (Some(i), false) => {
            section.options[i].value = Value::Single(value.to_owned());
            section.options[i].line = line;
        }
        (Some(i), true) => {
            let option = &mut section.options[i];
            option.line = line;
            match &mut option.value {
                Value::List(values) => values.push(value.to_owned()),
                Value::Single(old) => {
                    option.value = Value::List(vec![std::mem::take(old), value.to_owned()])
                }
            }
        }
        (None, list) => section.options.push(UciOption {
            name: name.to_owned(),
            value: if list {
                Value::List(vec![value.to_owned()])
            } else {
                Value::Single(value.to_owned())
            },
            line,
        }),
    }
}

/// The words of one command, and the line it starts on.
#[derive(Debug)]
struct Statement {
    line: usize,
    words: Vec<String>,
}

/// Splits text into statements: words separated by blanks, commands by newlines and `;`.
struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    start: usize,
    word: Option<String>,
    words: Vec<String>,
    out: Vec<Statement>,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            start: 1,
            word: None,
            words: Vec::new(),
            out: Vec::new(),
        }
    }

    fn statements(mut self) -> Result<Vec<Statement>, UciError> {
        while let Some(c) = self.chars.next() {
            match c {
                '\n' => {
                    self.end_statement();
                    self.line += 1;
                }
                ';' => self.end_statement(),
                '#' => {
                    self.end_statement();
                    while self.chars.next_if(|&c| c != '\n').is_some() {}
                }
                '\'' | '"' => self.quoted(c)?,
                '\\' => {
                    self.backslash();
                }
                ' ' | '\t' | '\r' | '\x0b' | '\x0c' => self.end_word(),
                c => self.word().push(c),
            }
        }
        self.end_statement();
        Ok(self.out)
    }

    /// The word being built, started if need be.
    fn word(&mut self) -> &mut String {
        if self.word.is_none() && self.words.is_empty() {
            self.start = self.line;
        }
        self.word.get_or_insert_with(String::new)
    }

    fn end_word(&mut self) {
        if let Some(word) = self.word.take() {
            self.words.push(word);
        }
    }

    fn end_statement(&mut self) {
        self.end_word();
        if !self.words.is_empty() {
            self.out.push(Statement {
                line: self.start,
                words: std::mem::take(&mut self.words),
            });
        }
    }

    /// After a backslash: join the next line, or take the next character literally.
    /// Returns false at the end of the text.
    fn backslash(&mut self) -> bool {
        match self.chars.peek().copied() {
            None => false,
            Some('\n') => {
                self.chars.next();
                self.line += 1;
                true
            }
            Some('\r') if self.chars.clone().nth(1) == Some('\n') => {
                self.chars.next();
                self.chars.next();
                self.line += 1;
                true
            }
            Some(c) => {
                self.chars.next();
                self.word().push(c);
                true
            }
        }
    }

    fn quoted(&mut self, quote: char) -> Result<(), UciError> {
        let opened = self.line;
        self.word();
        let unterminated = || UciError::Syntax {
            line: opened,
            problem: SyntaxError::UnterminatedQuote(quote),
        };
        loop {
            match self.chars.next() {
                None => return Err(unterminated()),
                Some(c) if c == quote => return Ok(()),
                Some('\\') if quote == '"' => {
                    if !self.backslash() {
                        return Err(unterminated());
                    }
                }
                Some(c) => {
                    if c == '\n' {
                        self.line += 1;
                    }
                    self.word().push(c);
                }
            }
        }
    }
}
