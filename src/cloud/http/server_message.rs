//! The human-readable message inside an OpenStack error response.
//!
//! Owns the shapes error bodies come in: Keystone's `{"error": {"message"}}`, API-SIG
//! `{"errors": [{"detail"}]}`, Nova-style `{"itemNotFound": {"message"}}`, and the HTML
//! pages Glance (webob) sends. The body is untrusted: the result is stripped of control
//! characters and capped in length. It must not read from the network itself.

/// Longest server message quoted in an error.
const MAX_SERVER_MESSAGE_CHARS: usize = 400;

/// The message in an error body, if there is one.
pub(super) fn message_from_body(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
        return json_message(&value)
            .map(|m| clean(&m))
            .filter(|m| !m.is_empty());
    }
    let body = if text.starts_with('<') {
        // Glance/webob pages repeat the status in <title> and <h1>; the message follows.
        let after_heading = text
            .find("</h1>")
            .map_or(text, |at| &text[at + "</h1>".len()..]);
        strip_tags(after_heading)
    } else {
        text.to_owned()
    };
    Some(clean(&body)).filter(|m| !m.is_empty())
}

fn json_message(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    match value {
        Value::Object(map) => {
            if let Some(message) = text(map.get("message")) {
                return Some(message);
            }
            match map.get("error") {
                Some(Value::String(message)) => return Some(message.clone()),
                Some(Value::Object(inner)) => {
                    if let Some(message) = text(inner.get("message")).or(text(inner.get("title"))) {
                        return Some(message);
                    }
                }
                _ => {}
            }
            if let Some(Value::Array(errors)) = map.get("errors") {
                let first = errors.first()?;
                return text(first.get("detail")).or(text(first.get("title")));
            }
            // Nova-style `{"itemNotFound": {"message": ..}}`: one object with a message.
            map.values().find_map(|v| text(v.get("message")))
        }
        _ => None,
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Collapses whitespace and control characters and caps the length.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_SERVER_MESSAGE_CHARS {
            let cut: String = out.chars().take(MAX_SERVER_MESSAGE_CHARS).collect();
            return format!("{cut}...");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystone_json_errors_give_their_message() {
        let body = br#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#;
        assert_eq!(
            message_from_body(body).as_deref(),
            Some("The request you have made requires authentication.")
        );
        assert_eq!(
            message_from_body(br#"{"errors":[{"title":"T","detail":"D"}]}"#).as_deref(),
            Some("D")
        );
        assert_eq!(
            message_from_body(br#"{"itemNotFound":{"message":"M","code":404}}"#).as_deref(),
            Some("M")
        );
        assert_eq!(message_from_body(b"  "), None);
    }

    #[test]
    fn glance_html_errors_give_the_text_after_the_heading() {
        let body = b"<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID abc<br /><br />\n\n\n\n </body>\n</html>";
        assert_eq!(
            message_from_body(body).as_deref(),
            Some("No image found with ID abc")
        );
    }

    #[test]
    fn messages_are_cleaned_and_capped() {
        let long = format!("a\u{1b}[31mb {}", "x".repeat(1000));
        let message = message_from_body(long.as_bytes()).unwrap();
        assert!(!message.contains('\u{1b}'));
        assert!(message.chars().count() <= MAX_SERVER_MESSAGE_CHARS + 3);
    }
}
