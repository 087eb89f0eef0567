//! The UCI file-format parser: quoting, escapes, comments, lists, merging, errors with line
//! numbers, and a randomised never-panics check.

use mpbond_agent::config::uci::{parse, Package, SyntaxError, UciError, Value};
use mpbond_testkit::Xorshift;

fn parsed(text: &str) -> Package {
    parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// The value of option `name` in the first section.
fn value(text: &str, name: &str) -> Value {
    let package = parsed(text);
    let section = package.sections.first().expect("a section");
    section
        .get(name)
        .unwrap_or_else(|| panic!("{text:?}: no option {name}"))
        .value
        .clone()
}

fn single(text: &str) -> String {
    match value(text, "x") {
        Value::Single(v) => v,
        other => panic!("{text:?}: {other:?}"),
    }
}

fn syntax_error(text: &str) -> (usize, SyntaxError) {
    match parse(text) {
        Err(UciError::Syntax { line, problem }) => (line, problem),
        other => panic!("{text:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn sections_and_options_in_order() {
    let package = parsed(
        "package mpbond\n\nconfig globals 'globals'\n\toption host '192.0.2.1'\n\
         config wan 'wan'\n\toption mode on\nconfig wan\n\toption interface wanc\n",
    );
    assert_eq!(package.name.as_deref(), Some("mpbond"));
    let kinds: Vec<_> = package.sections.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["globals", "wan", "wan"]);
    let names: Vec<_> = package.sections.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(names, [Some("globals"), Some("wan"), None]);
    let lines: Vec<_> = package.sections.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 5, 7]);
    assert_eq!(package.section_path(0), "mpbond.globals");
    assert_eq!(package.section_path(2), "mpbond.@wan[1]");
    assert_eq!(
        package.sections[2].get("interface").map(|o| o.line),
        Some(8)
    );
}

#[test]
fn quoting_styles() {
    assert_eq!(
        single("config a\noption x 'single quoted'"),
        "single quoted"
    );
    assert_eq!(
        single("config a\noption x \"double quoted\""),
        "double quoted"
    );
    assert_eq!(single("config a\noption x bare"), "bare");
    assert_eq!(
        single("config a\noption x 'one'\"two\"three"),
        "onetwothree"
    );
    // The way `uci export` writes a single quote.
    assert_eq!(single("config a\noption x 'it'\\''s'"), "it's");
    assert_eq!(
        single("config a\noption x \"say \\\"hi\\\"\""),
        "say \"hi\""
    );
    assert_eq!(single("config a\noption x 'a \"b\" c'"), "a \"b\" c");
    assert_eq!(single("config a\noption x \"a 'b' c\""), "a 'b' c");
    assert_eq!(
        single("config a\noption x '#not a comment'"),
        "#not a comment"
    );
    assert_eq!(single("config a\noption x 'semi;colon'"), "semi;colon");
    assert_eq!(single("config a\n\t option   x\t\t'tabs'  \t"), "tabs");
    assert_eq!(single("config a\r\noption x 'crlf'\r\n"), "crlf");
    assert_eq!(single("config a\noption x 'grüße ✓'"), "grüße ✓");
}

#[test]
fn backslash_escapes_as_libuci() {
    // Outside quotes and in double quotes, a backslash takes the next character as is.
    assert_eq!(single("config a\noption x a\\ b"), "a b");
    assert_eq!(single("config a\noption x \"a\\\\b\""), "a\\b");
    assert_eq!(single("config a\noption x \"\\n\""), "n");
    assert_eq!(single("config a\noption x a\\'b"), "a'b");
    assert_eq!(single("config a\noption x a\\#b"), "a#b");
    // In single quotes it is just a backslash.
    assert_eq!(single("config a\noption x 'a\\nb'"), "a\\nb");
    // At the end of a line it joins the next one, in and out of double quotes.
    assert_eq!(single("config a\noption x foo\\\nbar"), "foobar");
    assert_eq!(single("config a\noption x \"foo\\\nbar\""), "foobar");
    assert_eq!(single("config a\noption x foo\\\r\nbar"), "foobar");
    let package = parsed("config a\noption x foo\\\nbar\noption y z");
    assert_eq!(package.sections[0].get("y").map(|o| o.line), Some(4));
}

#[test]
fn quoted_values_may_span_lines() {
    assert_eq!(single("config a\noption x 'one\ntwo'"), "one\ntwo");
    let package = parsed("config a\noption x \"one\ntwo\"\noption y 'z'");
    assert_eq!(package.sections[0].get("y").map(|o| o.line), Some(4));
}

#[test]
fn comments_and_blank_lines() {
    let package = parsed(
        "# leading comment\n\n   \n\t# indented\nconfig a 'b' # trailing\n\
         \toption x 'v' # after a value\n\toption y v#glued comment\n#option z 'no'\n",
    );
    let section = &package.sections[0];
    assert_eq!(section.name.as_deref(), Some("b"));
    assert_eq!(
        section.get("x").map(|o| &o.value),
        Some(&Value::Single("v".into()))
    );
    assert_eq!(
        section.get("y").map(|o| &o.value),
        Some(&Value::Single("v".into()))
    );
    assert!(section.get("z").is_none());
    assert!(parsed("").sections.is_empty());
    assert!(parsed("# only a comment").sections.is_empty());
}

#[test]
fn lists_and_option_list_interplay() {
    let list = |text| value(text, "x");
    let l = |v: &[&str]| Value::List(v.iter().map(|s| s.to_string()).collect());
    assert_eq!(
        list("config a\nlist x 'one'\nlist x \"two\"\nlist x three"),
        l(&["one", "two", "three"])
    );
    // A list after an option keeps the option's value as its first element (uci_add_list).
    assert_eq!(
        list("config a\noption x one\nlist x two"),
        l(&["one", "two"])
    );
    // An option after a list replaces it.
    assert_eq!(
        list("config a\nlist x one\nlist x two\noption x three"),
        Value::Single("three".into())
    );
    // Empty list entries are kept; an empty option deletes the option.
    assert_eq!(list("config a\nlist x ''"), l(&[""]));
    let package = parsed("config a\noption x one\noption x ''");
    assert!(package.sections[0].get("x").is_none());
    // Option without value: nothing set.
    assert!(parsed("config a\noption x").sections[0].get("x").is_none());
}

#[test]
fn short_commands_and_semicolons() {
    let package = parsed("c globals g; o host h; l lan a\nl lan b;;o port 1");
    let section = &package.sections[0];
    assert_eq!(section.kind, "globals");
    assert_eq!(
        section.get("host").map(|o| &o.value),
        Some(&Value::Single("h".into()))
    );
    assert_eq!(
        section.get("lan").map(|o| &o.value),
        Some(&Value::List(vec!["a".into(), "b".into()]))
    );
    assert_eq!(section.get("port").map(|o| o.line), Some(2));
}

#[test]
fn named_sections_merge() {
    let package = parsed("config wan 'a'\noption x 1\nconfig wan 'b'\nconfig wan 'a'\noption y 2");
    assert_eq!(package.sections.len(), 2);
    assert!(package.sections[0].get("x").is_some() && package.sections[0].get("y").is_some());
    assert_eq!(
        syntax_error("config wan 'a'\nconfig globals 'a'"),
        (
            2,
            SyntaxError::TypeChanged {
                name: "a".into(),
                old: "wan".into(),
                new: "globals".into()
            }
        )
    );
}

#[test]
fn syntax_errors_carry_the_line() {
    assert_eq!(
        syntax_error("config a\n\noption x 'open\n\n"),
        (3, SyntaxError::UnterminatedQuote('\''))
    );
    assert_eq!(
        syntax_error("config a\noption x \"open"),
        (2, SyntaxError::UnterminatedQuote('"'))
    );
    assert_eq!(
        syntax_error("config a\noption x \"open\\"),
        (2, SyntaxError::UnterminatedQuote('"'))
    );
    assert_eq!(
        syntax_error("\n\noption x y"),
        (3, SyntaxError::OptionBeforeSection)
    );
    assert_eq!(
        syntax_error("config a\nopt x y"),
        (2, SyntaxError::InvalidCommand("opt".into()))
    );
    assert_eq!(
        syntax_error("config a\n'option' x y\nfoo"),
        (3, SyntaxError::InvalidCommand("foo".into()))
    );
    assert_eq!(
        syntax_error("config"),
        (1, SyntaxError::MissingName("config"))
    );
    assert_eq!(
        syntax_error("config a b c"),
        (1, SyntaxError::TooManyArguments("config"))
    );
    assert_eq!(
        syntax_error("config a\noption x y z"),
        (2, SyntaxError::TooManyArguments("option"))
    );
    assert_eq!(
        syntax_error("config a\nlist"),
        (2, SyntaxError::MissingName("list"))
    );
    assert_eq!(
        syntax_error("config a 'bad-name'"),
        (1, SyntaxError::InvalidName("bad-name".into()))
    );
    assert_eq!(
        syntax_error("config a\noption 'x.y' v"),
        (2, SyntaxError::InvalidName("x.y".into()))
    );
    assert_eq!(
        syntax_error("config 'a b'"),
        (1, SyntaxError::InvalidType("a b".into()))
    );
    assert_eq!(
        syntax_error("package"),
        (1, SyntaxError::MissingName("package"))
    );
    assert!(
        parse("package my-pkg").is_ok(),
        "package names may hold '-'"
    );
    let message = parse("config a\noption x 'open").unwrap_err().to_string();
    assert_eq!(message, "line 2: unterminated ' quote");
}

#[test]
fn the_key_never_prints_in_debug() {
    let package = parsed("config globals\noption key 'abababab'\noption host h");
    let debug = format!("{package:?}");
    assert!(!debug.contains("abababab"), "{debug}");
    assert!(debug.contains("***"), "{debug}");
}

/// The tests' seeded generator, so a failure names a reproducible case.
struct Rng(Xorshift);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.0.below(items.len() as u64) as usize]
    }
}

/// Random texts made of UCI's own pieces (and some noise) never panic the parser or the
/// mapping, and a successful parse is stable under re-parsing of the same text.
#[test]
fn random_input_never_panics() {
    const PIECES: &[&str] = &[
        "config", "option", "list", "package", "c", "o", "l", "p", "globals", "wan", "'", "\"",
        "\\", "\\\n", "#", ";", " ", "\t", "\n", "\r\n", "\r", "host", "port", "key", "mode", "on",
        "'x'", "\"y\"", "1", "0x", "-", "_", "é", "\u{0}", "\u{b}", "[", "]", "@", "",
    ];
    let mut rng = Rng(Xorshift::new(0x9e37_79b9_7f4a_7c15));
    for case in 0..20_000 {
        let len = (rng.next() % 40) as usize;
        let mut text = String::new();
        for _ in 0..len {
            if rng.next() % 10 == 0 {
                // A random char, including controls and multi-byte ones.
                let c = char::from_u32((rng.next() % 0x3000) as u32).unwrap_or('?');
                text.push(c);
            } else {
                text.push_str(rng.pick(PIECES));
            }
        }
        let first = std::panic::catch_unwind(|| parse(&text).map(|p| p.sections.len()));
        let first = first.unwrap_or_else(|_| panic!("case {case}: parse panicked on {text:?}"));
        let again = parse(&text).map(|p| p.sections.len());
        assert_eq!(first.is_ok(), again.is_ok(), "case {case}: {text:?}");
        let mapped =
            std::panic::catch_unwind(|| mpbond_agent::config::uci::parse_uci(&text).is_ok());
        assert!(
            mapped.is_ok(),
            "case {case}: parse_uci panicked on {text:?}"
        );
    }
}
