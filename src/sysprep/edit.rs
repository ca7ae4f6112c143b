//! Line-level editing of guest configuration files, recording exactly which lines
//! go and which come, so a dry run can show them.
//!
//! Owns: [`edit_lines`] and [`LineEdit`]. Must not: know any file format beyond
//! "lines" (formats live in the operations). Bytes that are not UTF-8 are kept as they
//! are: such lines are never matched, never changed.

/// What to do with one line (its text without the line terminator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineAction {
    Keep,
    Drop,
    /// Replace the text, keeping the original terminator.
    Replace(String),
}

/// The result of an edit that changed something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEdit {
    pub content: Vec<u8>,
    pub removed: Vec<String>,
    pub added: Vec<String>,
}

/// Applies `decide` to every line of `content`; `None` when nothing changed.
pub fn edit_lines(content: &[u8], mut decide: impl FnMut(&str) -> LineAction) -> Option<LineEdit> {
    let mut edit = LineEdit {
        content: Vec::with_capacity(content.len()),
        removed: Vec::new(),
        added: Vec::new(),
    };
    for raw in content.split_inclusive(|&b| b == b'\n') {
        let (body, end) = match raw.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (raw, &b""[..]),
        };
        let (body, end) = match body.strip_suffix(b"\r") {
            Some(inner) if !end.is_empty() => (inner, &b"\r\n"[..]),
            _ => (body, end),
        };
        let action = match std::str::from_utf8(body) {
            Ok(text) => decide(text),
            Err(_) => LineAction::Keep,
        };
        match action {
            LineAction::Keep => edit.content.extend_from_slice(raw),
            LineAction::Drop => edit
                .removed
                .push(String::from_utf8_lossy(body).into_owned()),
            LineAction::Replace(text) => {
                edit.removed
                    .push(String::from_utf8_lossy(body).into_owned());
                edit.content.extend_from_slice(text.as_bytes());
                edit.content.extend_from_slice(end);
                edit.added.push(text);
            }
        }
    }
    (edit.content != content).then_some(edit)
}

/// Every line of `content` as text (for showing a whole file that is replaced).
pub fn lines_of(content: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(content)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `line` with leading blanks removed, if it assigns `key` (`KEY=...`).
pub fn assigns<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.trim_start()
        .strip_prefix(key)
        .and_then(|rest| rest.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_and_replaces_keeping_terminators() {
        let text = b"A=1\r\nHWADDR=x\nB=2\n# HWADDR=y\nC=3";
        let edit = edit_lines(text, |line| {
            if assigns(line, "HWADDR").is_some() {
                LineAction::Drop
            } else if line == "C=3" {
                LineAction::Replace("C=4".to_owned())
            } else {
                LineAction::Keep
            }
        })
        .unwrap();
        assert_eq!(edit.content, b"A=1\r\nB=2\n# HWADDR=y\nC=4");
        assert_eq!(edit.removed, ["HWADDR=x", "C=3"]);
        assert_eq!(edit.added, ["C=4"]);
    }

    #[test]
    fn unchanged_is_none_and_binary_lines_are_kept() {
        assert!(edit_lines(b"a\n\xff\xfe\n", |_| LineAction::Keep).is_none());
        let edit = edit_lines(b"\xff\nx\n", |_| LineAction::Drop).unwrap();
        assert_eq!(edit.content, b"\xff\n");
    }

    #[test]
    fn assignment() {
        assert_eq!(assigns("  HWADDR=\"AA\"", "HWADDR"), Some("\"AA\""));
        assert_eq!(assigns("HWADDRX=1", "HWADDR"), None);
        assert_eq!(assigns("# HWADDR=1", "HWADDR"), None);
    }
}
