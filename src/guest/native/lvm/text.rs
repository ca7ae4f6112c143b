//! A parser for LVM2's metadata text format: nested sections `name { ... }` holding
//! assignments `key = value`, where a value is a string `"..."` (with `\"` and `\\`
//! escapes), an integer, or a list `[ v, v, ... ]` of those; `#` starts a comment
//! running to the end of the line. A trailing NUL (LVM stores one) ends the text.
//!
//! Owns the grammar and its bounds: the text's size is bounded by the caller
//! ([`super::mda::MAX_METADATA_BYTES`]), nesting by [`MAX_DEPTH`], list length by
//! [`MAX_LIST_ITEMS`]; no input makes it panic or recurse without end. Must not:
//! know what the keys mean (see [`super::vg`]).

use super::super::error::{NativeError, Result};

/// Deepest nesting of sections accepted: a VG's segments sit at depth 4
/// (`vg { logical_volumes { lv { segment1 { ... } } } }`).
pub const MAX_DEPTH: usize = 8;
/// Most values in one list (a segment's stripes, a status list).
pub const MAX_LIST_ITEMS: usize = 65_536;

/// A value on the right of `=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
}

/// A section's content, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub items: Vec<(String, Item)>,
}

/// One entry of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Value(Value),
    Section(Section),
}

impl Section {
    /// The value of `key`, when it is an assignment here.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.items.iter().find_map(|(k, item)| match item {
            Item::Value(v) if k == key => Some(v),
            _ => None,
        })
    }

    /// The subsection `key`.
    pub fn section(&self, key: &str) -> Option<&Section> {
        self.items.iter().find_map(|(k, item)| match item {
            Item::Section(s) if k == key => Some(s),
            _ => None,
        })
    }

    /// Every subsection, with its name, in file order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.items.iter().filter_map(|(k, item)| match item {
            Item::Section(s) => Some((k.as_str(), s)),
            Item::Value(_) => None,
        })
    }

    /// The string value of `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer value of `key`, when it is one and not negative.
    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.value(key)? {
            Value::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// The strings of list `key` (`status = ["READ", "WRITE"]`); empty when absent.
    pub fn strings(&self, key: &str) -> Vec<&str> {
        match self.value(key) {
            Some(Value::List(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses a whole metadata text into its top-level section.
pub fn parse(text: &[u8]) -> Result<Section> {
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    let mut parser = Parser {
        text: &text[..end],
        at: 0,
    };
    let top = parser.section_body(0)?;
    match parser.peek() {
        None => Ok(top),
        Some(_) => Err(parser.error("a '}' closes no section")),
    }
}

struct Parser<'t> {
    text: &'t [u8],
    at: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-')
}

impl Parser<'_> {
    fn error(&self, detail: &str) -> NativeError {
        NativeError::malformed("LVM metadata text", self.at as u64, detail)
    }

    /// The next byte that is not blank or in a comment, without taking it.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.text.get(self.at) {
            if b == b'#' {
                while self.text.get(self.at).is_some_and(|&c| c != b'\n') {
                    self.at += 1;
                }
            } else if b.is_ascii_whitespace() {
                self.at += 1;
            } else {
                return Some(b);
            }
        }
        None
    }

    fn expect(&mut self, wanted: u8) -> Result<()> {
        if self.peek() == Some(wanted) {
            self.at += 1;
            return Ok(());
        }
        Err(self.error(&format!("'{}' expected", wanted as char)))
    }

    fn name(&mut self) -> Result<String> {
        let start = self.at;
        while self.text.get(self.at).copied().is_some_and(is_name_byte) {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.error("a name expected"));
        }
        // Only ASCII name bytes were taken.
        Ok(String::from_utf8_lossy(&self.text[start..self.at]).into_owned())
    }

    /// Items up to the `}` closing a section at `depth` (or the end of the text at
    /// depth 0), which is left in place.
    fn section_body(&mut self, depth: usize) -> Result<Section> {
        let mut section = Section::default();
        loop {
            match self.peek() {
                None if depth == 0 => return Ok(section),
                None => return Err(self.error("the text ends inside a section")),
                Some(b'}') => return Ok(section),
                Some(_) => {}
            }
            let key = self.name()?;
            match self.peek() {
                Some(b'{') => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(self.error("sections nest too deep"));
                    }
                    self.at += 1;
                    let inner = self.section_body(depth + 1)?;
                    self.expect(b'}')?;
                    section.items.push((key, Item::Section(inner)));
                }
                Some(b'=') => {
                    self.at += 1;
                    let value = self.value(true)?;
                    section.items.push((key, Item::Value(value)));
                }
                _ => return Err(self.error("'=' or '{' expected after a name")),
            }
        }
    }

    fn value(&mut self, list_allowed: bool) -> Result<Value> {
        match self.peek() {
            Some(b'"') => self.string().map(Value::Str),
            Some(b'[') if list_allowed => self.list(),
            Some(b) if b == b'-' || b.is_ascii_digit() => self.integer(),
            _ => Err(self.error("a string, an integer or a list expected")),
        }
    }

    fn list(&mut self) -> Result<Value> {
        self.at += 1; // '['
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::List(items));
        }
        loop {
            if items.len() >= MAX_LIST_ITEMS {
                return Err(self.error("a list is too long"));
            }
            items.push(self.value(false)?);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.error("',' or ']' expected in a list")),
            }
        }
    }

    fn string(&mut self) -> Result<String> {
        self.at += 1; // '"'
        let mut bytes = Vec::new();
        loop {
            let Some(&b) = self.text.get(self.at) else {
                return Err(self.error("a string is not closed"));
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&escaped) = self.text.get(self.at) else {
                        return Err(self.error("a string is not closed"));
                    };
                    self.at += 1;
                    bytes.push(escaped);
                }
                _ => bytes.push(b),
            }
        }
        String::from_utf8(bytes).map_err(|_| self.error("a string is not UTF-8"))
    }

    fn integer(&mut self) -> Result<Value> {
        let negative = self.text.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        let mut value: i64 = 0;
        while let Some(&b) = self.text.get(self.at).filter(|b| b.is_ascii_digit()) {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(b - b'0')))
                .ok_or_else(|| self.error("an integer overflows"))?;
            self.at += 1;
        }
        if start == self.at {
            return Err(self.error("digits expected"));
        }
        if self.text.get(self.at).copied().is_some_and(is_name_byte) {
            return Err(self.error("a number runs into other characters"));
        }
        Ok(Value::Int(if negative { -value } else { value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# Generated by LVM2
vg-1 {
id = "Gvp5hr-dCko-O3FP-fAoY-XqCH-E4Fs-YnrxQU"
seqno = 4
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192	# 4 Megabytes
logical_volumes {
root {
segment1 {
stripes = [
"pv0", 0
]
}
}
}
}
description = "Created \"after\" executing 'lvcreate'\\"
creation_time = 1714557600	# Wed May  1 10:00:00 2024
"#;

    #[test]
    fn a_metadata_text_parses() {
        let mut text = SAMPLE.as_bytes().to_vec();
        text.push(0);
        text.extend_from_slice(b"garbage after the NUL {{{");
        let top = parse(&text).unwrap();
        let vg = top.section("vg-1").unwrap();
        assert_eq!(vg.u64("seqno"), Some(4));
        assert_eq!(vg.strings("status"), ["RESIZEABLE", "READ", "WRITE"]);
        assert_eq!(vg.value("flags"), Some(&Value::List(vec![])));
        let segment = vg
            .section("logical_volumes")
            .and_then(|l| l.section("root"))
            .and_then(|r| r.section("segment1"))
            .unwrap();
        assert_eq!(
            segment.value("stripes"),
            Some(&Value::List(vec![Value::Str("pv0".into()), Value::Int(0)]))
        );
        assert_eq!(
            top.str("description"),
            Some("Created \"after\" executing 'lvcreate'\\")
        );
        assert_eq!(top.u64("creation_time"), Some(1_714_557_600));
    }

    #[test]
    fn bad_texts_are_refused_without_panicking() {
        let deep = "a {".repeat(100_000);
        for bad in [
            "a {",
            "a }",
            "}",
            "a = ",
            "a = [1, [2]]",
            "a = \"open",
            "a = 99999999999999999999",
            "a = 12ab",
            "a = -",
            "= 1",
            "a = [1 2]",
            "a = \"\\",
            deep.as_str(),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse(&[b'a', b'=', b'"', 0xff, b'"']).is_err());
        assert_eq!(parse(b"").unwrap(), Section::default());
        assert_eq!(parse(b"a = -5").unwrap().value("a"), Some(&Value::Int(-5)));
    }
}
