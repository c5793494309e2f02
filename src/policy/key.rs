//! Object key validation: a requested key can never leave its access point's prefix.

/// S3's maximum key length, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key must not be empty")]
    Empty,
    #[error("full key (prefix + key) is {len} bytes; S3 allows at most {MAX_KEY_BYTES}")]
    TooLong { len: usize },
    #[error("key contains a control character (U+{code:04X})")]
    ControlChar { code: u32 },
    #[error("key contains an invisible Unicode formatting character (U+{code:04X})")]
    FormatChar { code: u32 },
    #[error("key must not start with '/'")]
    LeadingSlash,
    #[error("key must not contain an empty path segment ('//')")]
    EmptySegment,
    #[error("key must not contain a '.' or '..' path segment")]
    DotSegment,
    #[error("key must not contain a backslash")]
    Backslash,
    #[error("key must not contain a percent-encoded '.', '/' or '\\' (%2e, %2f, %5c)")]
    EncodedSeparator,
}

/// Checks `key` (relative to `prefix`) and returns the full S3 key, `prefix + key`.
///
/// The segment rules are applied to the full key, so a key cannot combine with the end of the
/// prefix into a `.`/`..` segment either.
pub fn validate_key(prefix: &str, key: &str) -> Result<String, KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    let full = format!("{prefix}{key}");
    check_path(&full)?;
    Ok(full)
}

/// The character and segment rules shared by keys and prefixes (`full` is non-empty).
pub(crate) fn check_path(full: &str) -> Result<(), KeyError> {
    if full.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong { len: full.len() });
    }
    for c in full.chars() {
        if c.is_control() {
            return Err(KeyError::ControlChar { code: u32::from(c) });
        }
        if is_invisible_format(c) {
            return Err(KeyError::FormatChar { code: u32::from(c) });
        }
        if c == '\\' {
            return Err(KeyError::Backslash);
        }
    }
    if full.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    let segments: Vec<&str> = full.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            // A single trailing '/' (a "folder" marker such as `photos/`) is fine.
            "" if i == last => {}
            "" => return Err(KeyError::EmptySegment),
            "." | ".." => return Err(KeyError::DotSegment),
            _ => {}
        }
    }
    if has_encoded_separator(full) {
        return Err(KeyError::EncodedSeparator);
    }
    Ok(())
}

/// Zero-width and bidirectional controls: they make a key display differently from what it
/// is (Trojan Source, CVE-2021-42574), which matters in audit logs and admin UIs.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}'                  // Arabic letter mark (bidi)
        | '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
        | '\u{2028}' | '\u{2029}'   // line/paragraph separators
        | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
        | '\u{2066}'..='\u{2069}'   // bidi isolates
        | '\u{FEFF}'                // zero-width no-break space (BOM)
    )
}

/// `%2e`, `%2f`, `%5c` in any case, also double-encoded (`%252e`), since a proxy, CDN or
/// tool that decodes the key once (or twice) would turn it into `.`, `/` or `\`.
fn has_encoded_separator(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let mut j = i + 1;
            while b.get(j..j + 2) == Some(b"25") {
                j += 2;
            }
            if let Some(hex) = b.get(j..j + 2) {
                let hex = hex.to_ascii_lowercase();
                if hex == b"2e" || hex == b"2f" || hex == b"5c" {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys_and_prepends_the_prefix() {
        assert_eq!(
            validate_key("avatars/", "alice/me.png"),
            Ok("avatars/alice/me.png".into())
        );
        assert_eq!(validate_key("", "a"), Ok("a".into()));
        assert_eq!(validate_key("p/", "photos/"), Ok("p/photos/".into()));
        assert_eq!(
            validate_key("p/", "a..b/.hidden/x."),
            Ok("p/a..b/.hidden/x.".into())
        );
        assert_eq!(
            validate_key("p/", "100%25 off/%41"),
            Ok("p/100%25 off/%41".into())
        );
        assert_eq!(
            validate_key("p/", "résumé 履歴書.pdf"),
            Ok("p/résumé 履歴書.pdf".into())
        );
    }

    #[test]
    fn look_alikes_are_literal_and_stay_under_the_prefix() {
        // Fullwidth full stops and the division slash are not '.' and '/' to S3.
        for key in [
            "\u{ff0e}\u{ff0e}/x",
            "\u{2215}etc\u{2215}passwd",
            "\u{2024}\u{2024}/x",
        ] {
            let full = validate_key("users/alice/", key).expect(key);
            assert!(full.starts_with("users/alice/"));
            assert_eq!(full, format!("users/alice/{key}"));
        }
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(validate_key("p/", ""), Err(KeyError::Empty));
    }

    #[test]
    fn rejects_dot_segments() {
        for key in [
            "..",
            ".",
            "./",
            "../x",
            "a/./b",
            "a/../b",
            "a/..",
            "a/.",
            "x/../../etc",
        ] {
            assert_eq!(validate_key("p/", key), Err(KeyError::DotSegment), "{key}");
        }
    }

    #[test]
    fn rejects_dot_segment_formed_with_the_prefix() {
        // The segment rules see the full key: prefix "p/" + "." is the segment ".".
        assert_eq!(validate_key("p/", "."), Err(KeyError::DotSegment));
        assert_eq!(validate_key("p/", "../secret"), Err(KeyError::DotSegment));
    }

    #[test]
    fn rejects_empty_segments_and_leading_slash() {
        assert_eq!(validate_key("p/", "a//b"), Err(KeyError::EmptySegment));
        assert_eq!(validate_key("p/", "a//"), Err(KeyError::EmptySegment));
        assert_eq!(
            validate_key("p/", "/etc/passwd"),
            Err(KeyError::LeadingSlash)
        );
        assert_eq!(validate_key("", "/x"), Err(KeyError::LeadingSlash));
        assert_eq!(validate_key("p/", "/"), Err(KeyError::LeadingSlash));
    }

    #[test]
    fn rejects_control_characters() {
        for (key, code) in [
            ("a\0b", 0),
            ("a\u{7f}", 0x7f),
            ("a\nb", 0x0a),
            ("\u{85}x", 0x85),
            ("x\u{9b}", 0x9b),
        ] {
            assert_eq!(
                validate_key("p/", key),
                Err(KeyError::ControlChar { code }),
                "{key:?}"
            );
        }
    }

    #[test]
    fn rejects_bidi_and_zero_width_characters() {
        for c in [
            '\u{202e}', '\u{200b}', '\u{200f}', '\u{2066}', '\u{2069}', '\u{feff}', '\u{202a}',
        ] {
            let key = format!("invoice{c}fdp.exe");
            assert_eq!(
                validate_key("p/", &key),
                Err(KeyError::FormatChar { code: u32::from(c) }),
                "{key:?}"
            );
        }
    }

    #[test]
    fn rejects_backslash() {
        assert_eq!(validate_key("p/", "..\\x"), Err(KeyError::Backslash));
        assert_eq!(validate_key("p/", "a\\b"), Err(KeyError::Backslash));
    }

    #[test]
    fn rejects_percent_encoded_separators() {
        for key in [
            "%2e%2e/x",
            "%2E%2E/x",
            "a%2Fb",
            "a%2fb",
            "a%5cb",
            "a%5Cb",
            ".%2e/x",
            "a%252e%252e",
            "a%25252F",
        ] {
            assert_eq!(
                validate_key("p/", key),
                Err(KeyError::EncodedSeparator),
                "{key}"
            );
        }
    }

    #[test]
    fn length_counts_the_prefix() {
        let prefix = "p".repeat(24) + "/";
        let ok = "k".repeat(MAX_KEY_BYTES - prefix.len());
        assert!(validate_key(&prefix, &ok).is_ok());
        let long = format!("{ok}k");
        assert_eq!(
            validate_key(&prefix, &long),
            Err(KeyError::TooLong { len: 1025 })
        );
        // Multi-byte characters count in bytes, not chars.
        let euro = "€".repeat(342); // 1026 bytes
        assert_eq!(
            validate_key("", &euro),
            Err(KeyError::TooLong { len: 1026 })
        );
    }

    #[test]
    fn errors_read_clearly() {
        assert_eq!(
            KeyError::DotSegment.to_string(),
            "key must not contain a '.' or '..' path segment"
        );
        assert_eq!(
            KeyError::ControlChar { code: 0x7f }.to_string(),
            "key contains a control character (U+007F)"
        );
    }
}
