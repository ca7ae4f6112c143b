//! Shell-style matching of ONE path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`
//! and `\` escapes, as glob(3) does for each component.
//!
//! Owns the matcher only. Must not: touch a guest (walking directories for a whole
//! pattern is [`super::confine`]'s job) or treat `/` specially (components never hold
//! one).

/// Whether `component` has any glob meta character (else it is matched literally).
pub fn has_magic(component: &str) -> bool {
    component.contains(['*', '?', '['])
}

/// Whether `name` matches `pattern`. Like glob(3) without `GLOB_PERIOD`, a leading `.`
/// in `name` must be matched by a literal `.` in `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(&c) => {
                if let Some((matched, next)) = single(&pattern, p, c, name[n]) {
                    if matched {
                        p = next;
                        n += 1;
                        continue;
                    }
                }
            }
            None => {}
        }
        // Mismatch: let the last `*` swallow one more character, or fail.
        match star {
            Some((after, start)) => {
                p = after;
                n = start + 1;
                star = Some((after, start + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Matches one non-`*` pattern element at `p` (whose first char is `c`) against `ch`:
/// `Some((matched, index after the element))`, `None` when the element is malformed
/// (an unterminated `[`, which then matches as a literal `[`).
fn single(pattern: &[char], p: usize, c: char, ch: char) -> Option<(bool, usize)> {
    match c {
        '?' => Some((true, p + 1)),
        '\\' => match pattern.get(p + 1) {
            Some(&escaped) => Some((escaped == ch, p + 2)),
            None => Some((ch == '\\', p + 1)),
        },
        '[' => Some(bracket(pattern, p, ch).unwrap_or((ch == '[', p + 1))),
        literal => Some((literal == ch, p + 1)),
    }
}

/// A bracket expression starting at `pattern[p] == '['`: `(matched, index after ']')`,
/// or `None` when there is no closing `]`.
fn bracket(pattern: &[char], p: usize, ch: char) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = matches!(pattern.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let c = *pattern.get(i)?;
        if c == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let low = if c == '\\' {
            i += 1;
            *pattern.get(i)?
        } else {
            c
        };
        if pattern.get(i + 1) == Some(&'-') && pattern.get(i + 2).is_some_and(|&e| e != ']') {
            let high = *pattern.get(i + 2)?;
            matched |= low <= ch && ch <= high;
            i += 3;
        } else {
            matched |= low == ch;
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_questions() {
        assert!(matches("*_host_*", "ssh_host_rsa_key"));
        assert!(matches("*_host_*", "backup_host_keys"));
        assert!(!matches("*_host_*", "sshd_config"));
        assert!(matches("*.log*", "boot.log"));
        assert!(matches("*.log*", "yum.log.1"));
        assert!(!matches("*.log*", "logfile"));
        assert!(matches("ifcfg-*", "ifcfg-eth0"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*", "x"));
        assert!(matches("**x", "abx"));
        assert!(!matches("*x", "abxy"));
        assert!(matches("*_log-*", "error_log-20240501"));
    }

    #[test]
    fn dot_files_need_a_literal_dot() {
        assert!(!matches("*", ".bash_history"));
        assert!(matches(".*", ".bash_history"));
        assert!(matches(".bash_history", ".bash_history"));
        assert!(!matches("?bash_history", ".bash_history"));
    }

    #[test]
    fn brackets_and_escapes() {
        assert!(matches("vd[a-z]", "vdb"));
        assert!(!matches("vd[a-z]", "vd1"));
        assert!(matches("vd[!a-z]", "vd1"));
        assert!(matches("[]]", "]"));
        assert!(matches("x[", "x["));
        assert!(matches("a\\*", "a*"));
        assert!(!matches("a\\*", "ab"));
        assert!(matches("__db.*", "__db.001"));
    }

    #[test]
    fn magic() {
        assert!(has_magic("*.log"));
        assert!(has_magic("[ab]"));
        assert!(!has_magic("machine-id"));
    }
}
